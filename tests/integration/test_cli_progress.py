"""The long CLI commands' progress, run as an operator runs them: plain lines when standard error
is a pipe (a log, a CI job), a bar with rate and ETA when it is a terminal (a pty here)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from eventsourcing.utils import get_topic

from domain.tenant import Tenant
from tests.conftest import ADMIN_TOKEN, MASTER_KEY
from tests.integration.test_cli import HOSTPLANE, hostplane

# The last plain line: "<label>: <done>/<total> <unit> in <elapsed> (<rate> <unit>/s)".
FINAL = re.compile(r"^(?P<label>.+): (?P<done>[\d,]+)/(?P<total>[\d,]+) (?P<unit>\w+) in [\d:]+ \(")


def final_line(stderr: str, label: str) -> tuple[int, int, str]:
    """The done and total counts and the unit of the last line for ``label``."""
    found = [m for m in map(FINAL.match, stderr.splitlines()) if m and m["label"] == label]
    assert found, stderr
    m = found[-1]
    return int(m["done"].replace(",", "")), int(m["total"].replace(",", "")), m["unit"]


def events_in_store(container: Any) -> tuple[int, int]:
    """The events in the store and its head, asked of PostgreSQL directly."""
    with container.pool.connection() as conn:
        row = conn.execute(
            f"SELECT count(*) AS n, max(notification_id) AS head FROM {container.runner.source.table}"
        ).fetchone()
    return row["n"], row["head"] or 0


def on_a_terminal(*args: str, database: str, data_dir: Path) -> tuple[int, str, bytes]:
    """Run ``hostplane`` with standard error on a pty 120 columns wide; standard output is a
    pipe. Returns the exit code, what the terminal showed and what standard output got."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTPLANE_")}
    env.update(
        HOSTPLANE_DATABASE_URL=database,
        HOSTPLANE_MASTER_KEY=MASTER_KEY,
        HOSTPLANE_DATA_DIR=str(data_dir),
        HOSTPLANE_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    out = data_dir / f"stdout-{uuid.uuid4().hex}"
    with out.open("wb") as stdout:
        process = subprocess.Popen([HOSTPLANE, *args], env=env, stdout=stdout, stderr=slave)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            shown += chunk
        else:
            process.kill()
    finally:
        os.close(master)
    code = process.wait(timeout=120)
    return code, shown.decode(errors="replace"), out.read_bytes()


def test_rebuild_prints_plain_progress_up_to_the_log_head_when_not_on_a_terminal(
    database_conninfo, tmp_path, admin, container
):
    admin.new_tenant()
    _, head_before = events_in_store(container)

    result = hostplane(
        "projections", "rebuild", "keys", database=database_conninfo, data_dir=tmp_path
    )

    assert result.returncode == 0, result.stderr
    _, head_after = events_in_store(container)
    assert "\r" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("rebuilding keys: 0/"), result.stderr
    done, total, unit = final_line(result.stderr, "rebuilding keys")
    assert (unit, done) == ("events", total)
    assert head_before <= done <= head_after
    assert result.stderr.splitlines()[-1] == "rebuilding keys: building indexes, then swapping in"


def test_export_prints_plain_progress_ending_at_the_exports_event_count(
    database_conninfo, tmp_path, admin, tenant
):
    for _ in range(3):
        tenant.api.new_key(tenant.id)

    result = hostplane("export", tenant.id, database=database_conninfo, data_dir=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = [orjson.loads(x) for x in result.stdout.splitlines()]
    exported = sum(1 for x in lines if x["kind"] == "event")
    assert exported >= 4  # registered, its first key, three more keys
    assert final_line(result.stderr, "exporting events") == (exported, exported, "events")


def test_reconcile_prints_plain_progress_ending_at_the_tenants_it_reconciled(
    database_conninfo, tmp_path, admin, tenant, container
):
    result = hostplane("reconcile", database=database_conninfo, data_dir=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    reconciled = int(re.search(r"^(\d+) tenant\(s\) reconciled", result.stdout, re.M)[1])
    with container.pool.connection() as conn:
        registered = conn.execute(
            f"SELECT count(*) AS n FROM {container.runner.source.table} WHERE topic = %s",
            (get_topic(Tenant.Registered),),
        ).fetchone()["n"]
    assert reconciled == registered >= 1
    assert final_line(result.stderr, "reconciling") == (reconciled, reconciled, "tenants")


def test_catalog_import_prints_plain_progress_ending_at_the_models_in_the_list(
    database_conninfo, tmp_path, admin
):
    prefix = f"progress-{uuid.uuid4().hex[:8]}"
    models = {
        f"{prefix}-{i}": {
            "max_input_tokens": 32768,
            "input_cost_per_token": 0.000001,
            "output_cost_per_token": 0.000002,
            "litellm_provider": "openai",
            "mode": "chat",
        }
        for i in range(40)
    }
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(models))

    result = hostplane(
        "catalog", "import", str(path), "--eur-per-usd", "0.92",
        database=database_conninfo, data_dir=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "added: 40" in result.stdout
    assert final_line(result.stderr, "importing models") == (40, 40, "models")


def test_export_on_a_terminal_draws_a_bar_with_rate_and_eta(
    database_conninfo, tmp_path, admin, tenant
):
    tenant.api.new_key(tenant.id)

    code, shown, stdout = on_a_terminal(
        "export", tenant.id, database=database_conninfo, data_dir=tmp_path
    )

    assert code == 0, shown
    exported = sum(1 for x in stdout.splitlines() if orjson.loads(x)["kind"] == "event")
    # tqdm redraws the line with carriage returns; the last drawing is the finished bar.
    last = shown.replace("\r\n", "\n").split("\r")[-1].strip()
    assert last.startswith("exporting events: 100%|"), shown
    assert f"{exported}/{exported} [" in last
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, *[\d.]+ events/s\]$", last), last
    assert "exporting events: 0/" not in shown  # no plain lines on a terminal


def test_rebuild_on_a_terminal_draws_a_bar_up_to_the_log_head(database_conninfo, tmp_path, admin):
    admin.new_tenant()

    code, shown, stdout = on_a_terminal(
        "projections", "rebuild", "tenants", database=database_conninfo, data_dir=tmp_path
    )

    assert code == 0, shown
    assert b"rebuilt tenants" in stdout
    bar, after = shown.replace("\r\n", "\n").split("\r")[-1].strip().split("\n")
    assert after == "rebuilding tenants: building indexes, then swapping in"
    last = bar.strip()
    done, total = re.search(r"\| ([\d.]+k?)/([\d.]+k?) \[", last).groups()
    assert last.startswith("rebuilding tenants: 100%|") and done == total, shown
    assert re.search(r"<\d\d:\d\d, *[\d.]+ events/s\]$", last), last
