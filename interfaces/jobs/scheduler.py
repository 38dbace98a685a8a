"""Periodic jobs inside ``hostplane serve`` (APScheduler)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Jobs:
    """What the periodic jobs run, handed over by the bootstrap."""

    evaluate_watched_budgets: Callable[[], object]
    watch_all_budgets: Callable[[], object]
    prune: Callable[[], object]  # past rate-limit windows and ledger rows, idempotency records
    deliver_webhooks: Callable[[], object]
    provision: Callable[[tuple[str, ...]], object]  # one step for the instances in statuses
    provision_interval_seconds: float  # 0: no provisioning jobs
    status_sync_seconds: float


def start_scheduler(
    jobs: Jobs, budgets_only: bool = False, leading: Callable[[], bool] = lambda: True
) -> BackgroundScheduler:
    """Every job; with ``budgets_only``, only the evaluation of budgets whose usage this process
    recorded (the other API processes of ``hostplane serve --workers``).

    The budgets of this process's usage are its own to evaluate, on every node; the other jobs
    work on what the nodes share, and run only while ``leading()`` (this node is the leader):
    once across all nodes.
    """
    scheduler = BackgroundScheduler(timezone="UTC")

    def cluster_wide(job: Callable[..., Any]) -> Callable[..., None]:
        def run(*args: Any) -> None:
            if leading():
                job(*args)

        return run

    def budgets() -> None:
        jobs.evaluate_watched_budgets()

    scheduler.add_job(budgets, "interval", seconds=5, id="budgets", coalesce=True, max_instances=1)
    if budgets_only:
        scheduler.start()
        return scheduler

    # Past rate-limit windows and day-old idempotency records serve no one.
    scheduler.add_job(
        cluster_wide(jobs.prune), "interval", minutes=1, id="prune", coalesce=True, max_instances=1
    )

    def all_budgets() -> None:
        # GPU time accrues without usage events: look at every tenant with budgets now and then.
        jobs.watch_all_budgets()
        jobs.evaluate_watched_budgets()

    scheduler.add_job(
        cluster_wide(all_budgets),
        "interval",
        minutes=1,
        id="all-budgets",
        coalesce=True,
        max_instances=1,
    )

    # Deliveries are due when their event is projected, or when a retry's backoff runs out.
    scheduler.add_job(
        cluster_wide(jobs.deliver_webhooks),
        "interval",
        seconds=1,
        id="webhooks",
        coalesce=True,
        max_instances=1,
    )
    if jobs.provision_interval_seconds > 0:
        # Instances on their way up move on every tick (a restart resumes them from the event
        # store); running ones are checked against their provider less often.
        scheduler.add_job(
            cluster_wide(jobs.provision),
            "interval",
            args=[("pending", "deploying")],
            seconds=jobs.provision_interval_seconds,
            id="provision",
            coalesce=True,
            max_instances=1,
        )
        scheduler.add_job(
            cluster_wide(jobs.provision),
            "interval",
            args=[("running",)],
            seconds=jobs.status_sync_seconds,
            id="status-sync",
            coalesce=True,
            max_instances=1,
        )
    scheduler.start()
    return scheduler


# The only job every process runs for itself; the others run on the leader node alone.
EVERY_PROCESS = frozenset({"budgets"})


@dataclass(frozen=True)
class ScheduledJob:
    """A job as ``hostplane status`` shows it."""

    id: str
    next_run_at: datetime | None  # None: paused
    every_seconds: float | None  # None: not an interval job
    cluster_wide: bool  # runs only while this node leads


def scheduled(scheduler: BackgroundScheduler) -> list[ScheduledJob]:
    """The scheduler's jobs, soonest first."""
    out = []
    for job in scheduler.get_jobs():
        interval = getattr(job.trigger, "interval", None)
        out.append(
            ScheduledJob(
                id=job.id,
                next_run_at=job.next_run_time,
                every_seconds=interval.total_seconds() if interval is not None else None,
                cluster_wide=job.id not in EVERY_PROCESS,
            )
        )
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(out, key=lambda j: (j.next_run_at or far, j.id))
