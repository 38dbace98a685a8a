"""The assembled application: every use case on one event store."""

from __future__ import annotations

from application.usage import UsageCommands
from application.webhooks import WebhookCommands


class Hostplane(UsageCommands, WebhookCommands):
    """hostplane's write side."""

    name = "Hostplane"
