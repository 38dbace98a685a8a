"""Periodic jobs inside ``hostplane serve`` (APScheduler)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler

if TYPE_CHECKING:
    from interfaces.bootstrap import Container

log = logging.getLogger(__name__)


def start_scheduler(container: Container) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")

    def prune() -> None:
        container.rate_limiter.prune()
        container.idempotency.prune()

    # Past rate-limit windows and day-old idempotency records serve no one.
    scheduler.add_job(prune, "interval", minutes=1, id="prune", coalesce=True, max_instances=1)
    scheduler.start()
    return scheduler
