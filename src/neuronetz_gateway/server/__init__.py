"""The HTTP server side: uvicorn's protocol with the gateway's transport limits."""
