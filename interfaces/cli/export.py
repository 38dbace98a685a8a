"""``hostplane export`` and ``hostplane reconcile``: the operator's side of replay-based exports."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any
from uuid import UUID

from application.errors import NotFoundError
from domain.base import InvalidValueError
from domain.tenant import Tenant
from interfaces.bootstrap import Container
from interfaces.cli.progress import Progress
from interfaces.http.shown import ExportNotReadyError, ndjson_chunks
from interfaces.settings import Settings
from projections.reports.export import SnapshotBehindError
from projections.reports.reconcile import reconcile_tenant, tenant_ids


@contextmanager
def opened() -> Iterator[Container]:
    container = Container.open(Settings.from_env().for_operator())
    try:
        yield container
    finally:
        container.close()


def parse_tenant(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        print(f"not a tenant id: {value!r}", file=sys.stderr)
        return None


def parse_as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    t = datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def run_export(tenant: str, as_of: str | None, output: str | None) -> int:
    tenant_id = parse_tenant(tenant)
    if tenant_id is None:
        return 2
    try:
        at = parse_as_of(as_of)
    except ValueError:
        print(f"--as-of must be an ISO 8601 time, got {as_of!r}", file=sys.stderr)
        return 2
    with opened() as container:
        container.runner.catch_up("audit")  # no worker runs in this process: bring the index up
        try:
            lines = container.replays.open_export(None, tenant_id, at)
        except (NotFoundError, InvalidValueError, ExportNotReadyError) as e:
            print(str(e), file=sys.stderr)
            return 1
        out = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        try:
            write_with_progress(lines, out)
        finally:
            if output:
                out.close()
    return 0


def write_with_progress(lines: Iterator[dict[str, Any]], out: IO[bytes]) -> None:
    progress: Progress | None = None

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal progress
        for line in lines:
            if line["kind"] == "header":
                progress = Progress("exporting events", line["counts"]["events"], "events")
            elif line["kind"] == "event" and progress is not None:
                progress.advance()
            yield line

    for chunk in ndjson_chunks(counted()):
        out.write(chunk)
    if progress is not None:
        progress.close()


def run_reconcile(tenant: str | None) -> int:
    with opened() as container:
        for name in ("audit", "usage", "costs"):
            container.runner.catch_up(name)
        with container.pool.connection() as conn:
            if tenant is not None:
                one = parse_tenant(tenant)
                if one is None:
                    return 2
                if container.store.find(Tenant, one) is None:
                    print(f"tenant {one} not found", file=sys.stderr)
                    return 1
                tenants = [one]
            else:
                tenants = tenant_ids(conn, container.runner.source)
            differences = []
            now = datetime.now(UTC)
            with Progress("reconciling", len(tenants), "tenants") as progress:
                for tenant_id in tenants:
                    differences += reconcile_with_retry(container, conn, tenant_id, now)
                    progress.advance()
    for difference in differences:
        print(difference)
    print(f"{len(tenants)} tenant(s) reconciled: {len(differences)} difference(s)")
    return 1 if differences else 0


def reconcile_with_retry(container: Container, conn: Any, tenant_id: UUID, now: datetime) -> list:
    """A serving process may be advancing the read models: give the audit index time to follow."""
    for _ in range(50):
        try:
            return reconcile_tenant(conn, container.runner.source, tenant_id, now)
        except SnapshotBehindError:
            container.runner.catch_up("audit")
            time.sleep(0.1)
    raise SnapshotBehindError("the audit read model does not catch up")
