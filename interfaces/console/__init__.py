"""The web console at ``/console``: server-rendered pages (Jinja2) over the same use cases and
read models as the /api/v1 routes. ``web`` holds what every page shares (the session, CSRF,
rendering); each page is one module that adds its routes to ``web.router``."""

from interfaces.console import (  # noqa: F401  (their routes)
    audit,
    billing,
    budgets,
    byok,
    export,
    instances,
    keys,
    overview,
    signin,
    usage,
)
from interfaces.console.web import router, static

__all__ = ["router", "static"]
