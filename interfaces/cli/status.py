"""``hostplane status``: what the running server says about itself, for an operator's glance.

It asks the server over HTTP rather than reading the database: what it reports (is it up, is
it ready, which jobs it has scheduled) only the server knows, and a server that is down must
say so, not be stood in for by the database.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import httpx

from interfaces.settings import Settings

TIMEOUT = httpx.Timeout(30.0, connect=5.0)  # counting the events takes a while on a big store


def run_status(url: str | None) -> int:
    """Print health, the event log, each read model and the scheduled jobs. Exits 1 when the
    server is unreachable, unhealthy, not ready or has a stalled read model; 2 when the admin
    token is refused."""
    settings = Settings.from_env()
    base = (url or settings.url).rstrip("/")
    token = settings.admin_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=base + "/api/v1", timeout=TIMEOUT, headers=headers) as http:
        try:
            live = http.get("/health")
        except httpx.TransportError as e:
            print(f"hostplane at {base} is down or unreachable: {describe(e)}", file=sys.stderr)
            return 1
        print(f"hostplane at {base}")
        if live.status_code != 200:
            print(f"health     unhealthy: /health answered {live.status_code}")
            return 1
        ready = http.get("/health/ready")
        if ready.status_code == 200:
            print("health     ok, ready")
        else:
            print(f"health     ok, not ready: {message(ready)}")
        if not token:
            print("events, read models and jobs: set HOSTPLANE_ADMIN_TOKEN to see them")
            return 0 if ready.status_code == 200 else 1
        answer = http.get("/status")
    if answer.status_code in (401, 403):
        print(f"the admin token was refused: {message(answer)}", file=sys.stderr)
        return 2
    if answer.status_code != 200:
        print(f"/status answered {answer.status_code}: {message(answer)}")
        return 1
    status = answer.json()
    stalled = print_server_status(status)
    return 0 if ready.status_code == 200 and not stalled else 1


def print_server_status(status: dict[str, Any]) -> bool:
    """The event log, the read models and the jobs; returns whether a read model is stalled."""
    events = status["events"]
    print(f"events     {events['count']} (log head {events['head']})")
    print()
    print(f"{'read model':<18}{'position':>12}{'head':>12}{'lag':>10}")
    stalled = False
    for r in status["read_models"]:
        line = f"{r['name']:<18}{r['position']:>12}{r['head']:>12}{r['lag']:>10}"
        if r["stalled_at"] is not None:
            stalled = True
            line += f"  stalled at event {r['stalled_at']} (hostplane projections status)"
        print(line)
    print()
    role = (
        "the leader: it runs the cluster-wide jobs"
        if status["leader"]
        else "not leading: the cluster-wide jobs run in another process or node"
    )
    print(f"jobs of process {status['pid']} ({role})")
    if not status["jobs"]:
        print("  none scheduled")
        return stalled
    print(f"{'job':<18}{'next run':<24}{'every':>8}")
    for job in status["jobs"]:
        when = job["next_run_at"] or "paused"
        every = f"{job['every_seconds']:g}s" if job["every_seconds"] is not None else "-"
        scope = "" if job["cluster_wide"] else "  (in every process)"
        print(f"{job['id']:<18}{short_time(when):<24}{every:>8}{scope}")
    return stalled


def short_time(value: str) -> str:
    """ISO 8601 to the second, in UTC with ``Z``: what an operator compares with ``date -u``."""
    if value == "paused":
        return value
    when = datetime.fromisoformat(value).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase


def describe(error: httpx.TransportError) -> str:
    cause = error.__cause__ or error.__context__
    return str(cause or error) or type(error).__name__
