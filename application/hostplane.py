"""The assembled application: every use case on one event store."""

from __future__ import annotations

from application.usage import UsageCommands


class Hostplane(UsageCommands):
    """hostplane's write side."""

    name = "Hostplane"
