"""The HTTP server of `hostplane serve` (uvicorn; connections spread over `--workers` processes)."""
