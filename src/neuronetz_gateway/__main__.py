"""`python -m neuronetz_gateway` is the `neuronetz-gateway` command."""

from neuronetz_gateway.cli.main import main

main()
