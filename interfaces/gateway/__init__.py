"""The inference gateway: OpenAI-compatible ``/v1/...`` (and ``/api/v1/...``) in front of
FastAPI, routing to a tenant's GPU instances and BYOK upstreams (DESIGN.md "The gateway").

The package itself imports nothing: serve's projections process uses its ledger without
loading the request path (``routes``, ``handler``) and its HTTP client.
"""
