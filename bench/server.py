"""A ``hostplane serve`` subprocess on a throw-away data directory, for the bench to measure."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

API = "/api/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hostplane_bin() -> str:
    """The ``hostplane`` script beside this interpreter (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).with_name("hostplane")
    return str(candidate) if candidate.exists() else "hostplane"


SERVE_CHILDREN = {"--api-process", "--background-process"}


class Server:
    """Starts hostplane with an embedded PostgreSQL (or a fresh database on ``database_url``).

    ``conninfo`` reaches the same database directly, for SQL baselines.
    """

    def __init__(self, database_url: str | None = None, workers: int = 1) -> None:
        self.workers = workers
        self.data_dir = Path(tempfile.mkdtemp(prefix="hostplane-bench-"))
        self.port = free_port()
        self.token = "hp_bench_" + secrets.token_urlsafe(24)
        self.base_url = f"http://127.0.0.1:{self.port}{API}"
        self.env = {
            **os.environ,
            "HOSTPLANE_DATA_DIR": str(self.data_dir),
            "HOSTPLANE_ADMIN_TOKEN": self.token,
            "HOSTPLANE_RATE_LIMIT_PER_MINUTE": "100000000",
            "HOSTPLANE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
        self.env.pop("HOSTPLANE_DATABASE_URL", None)
        self.server_url = database_url
        self.dbname: str | None = None
        if database_url:
            self.dbname = "hostplane_bench_" + uuid.uuid4().hex[:8]
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname)))
            self.env["HOSTPLANE_DATABASE_URL"] = make_conninfo(database_url, dbname=self.dbname)
            self.conninfo = self.env["HOSTPLANE_DATABASE_URL"]
        else:
            self.conninfo = f"host={self.data_dir / 'pg'} dbname=hostplane user=postgres"
        self.log_path = self.data_dir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_bytes: int | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [hostplane_bin(), "serve", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hostplane serve exited early; see {self.log_path}")
            try:
                # serve accepts connections once every API process is ready
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"hostplane serve not healthy after {timeout}s; see {self.log_path}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, keep: bool = False) -> None:
        """SIGINT, as an operator would; the embedded PostgreSQL stops with it."""
        if self.proc is not None and self.proc.poll() is None:
            self.peak_rss_bytes = self.read_peak_rss()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.dbname and self.server_url:
            with psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.dbname)
                    )
                )
        if not keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- measuring ------------------------------------------------------------------------

    def read_peak_rss(self) -> int | None:
        """Peak resident set size so far of the server's processes, summed (Linux VmHWM;
        else psutil's current RSS)."""
        try:
            pids = [self.pid, *self.api_processes()]
            return sum(vm_hwm(pid) for pid in pids)
        except OSError:
            pass
        try:
            import psutil

            process = psutil.Process(self.pid)
            others = [p for p in process.children() if SERVE_CHILDREN & set(p.cmdline())]
            return sum(int(p.memory_info().rss) for p in [process, *others])
        except Exception:
            return None

    def api_processes(self) -> list[int]:
        """The other processes of ``serve`` (children of the first): the extra API processes of
        ``--workers`` and the one that runs the projections and the jobs."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
            if int(ppid) == self.pid and SERVE_CHILDREN & set(cmdline.decode().split("\0")):
                found.append(int(entry.name))
        return found

    # -- talking to it --------------------------------------------------------------------

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=timeout,
        )

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo, autocommit=True)

    def cli(self, *args: str) -> tuple[float, str]:
        """Run ``hostplane <args>`` on the same database; returns (wall seconds, output)."""
        t0 = time.perf_counter()
        done = subprocess.run(
            [hostplane_bin(), *args], env=self.env, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"hostplane {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return seconds, done.stdout


def vm_hwm(pid: int) -> int:
    """The peak resident set of this process image (ru_maxrss would also count, after an
    exec, the memory of the process that forked it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmHWM for {pid}")
