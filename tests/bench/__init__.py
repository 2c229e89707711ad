"""Tests of the benchmark harness (the benchmark itself is `uv run just bench`)."""
