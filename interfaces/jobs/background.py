"""What runs beside the API in ``hostplane serve``: projections, leadership, scheduled jobs."""

from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler

from interfaces.jobs.leadership import Leadership
from interfaces.jobs.scheduler import Jobs, ScheduledJob, scheduled, start_scheduler
from interfaces.providers.simulated import SimulatedProvider
from projections.engine.runner import ProjectionRunner


class Background:
    """Starts and stops the background work of one process.

    Of several nodes on one database, one leads (``interfaces.jobs.leadership``): it runs the
    projection worker and the cluster-wide jobs; the others stand by, follow its commits for
    read-your-writes, and take over when it dies.
    """

    def __init__(
        self,
        runner: ProjectionRunner,
        conninfo: str,
        jobs: Jobs,
        provider: SimulatedProvider | None = None,
    ) -> None:
        self.runner = runner
        self.conninfo = conninfo
        self.jobs = jobs
        self.provider = provider
        # Set while running (by ``start`` or ``start_api_process``), for ``stop``.
        self.scheduler: BackgroundScheduler | None = None
        self.leadership: Leadership | None = None

    def start(self) -> None:
        """Projection workers and the scheduler (the first process of ``hostplane serve``)."""
        self.runner.follow()
        if self.provider is not None:
            self.provider.start()
        leadership = Leadership(
            self.conninfo, on_lead=self.runner.start, on_standby=self.runner.stand_by
        )
        self.leadership = leadership
        leadership.start()
        self.scheduler = start_scheduler(self.jobs, leading=lambda: leadership.leading)

    def start_api_process(self) -> None:
        """What an extra API process of ``hostplane serve --workers`` runs in the background:
        no projection worker or scheduled job of its own (the first process runs those), only
        wake-ups for read-your-writes and the evaluation of budgets its usage touched."""
        self.runner.follow()
        self.scheduler = start_scheduler(self.jobs, budgets_only=True)

    @property
    def leading(self) -> bool:
        """Whether this process runs the projection worker and the cluster-wide jobs now."""
        return self.leadership is not None and self.leadership.leading

    def scheduled(self) -> list[ScheduledJob]:
        """This process's scheduled jobs (none before ``start``)."""
        return scheduled(self.scheduler) if self.scheduler is not None else []

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.leadership is not None:
            self.leadership.stop()  # the worker stops first, then another node may lead
        if self.provider is not None:
            self.provider.stop()
        self.runner.stop()
