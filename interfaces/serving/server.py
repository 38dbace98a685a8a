"""The HTTP server of ``hostplane serve``: with ``--workers N``, connections spread evenly.

The first process accepts every connection and hands it, over a Unix socket (SCM_RIGHTS), to
the API process holding the fewest open connections, itself included. Each process serves the
connections it is handed with uvicorn, as if it had accepted them itself.

Before this, every process listened on the port with SO_REUSEPORT and the kernel hashed each
connection to one of them. Clients keep their connections open, so a few of them could all
land on one process while the other idled: three ingestion clients have a one-in-four chance
of that, and one bench run got 28.9k records/s that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import socket
import time
from typing import Any

import uvicorn

log = logging.getLogger("hostplane.serve")

REPORT_SECONDS = 0.1  # how often an API process tells the first one its open connections
READY_SECONDS = 120.0  # the first process accepts once every process is ready, or after this


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """The first process's end and an API process's end of one hand-off channel."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Peer:
    """An API process as the first process sees it."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.sent = 0  # connections handed to it
        self.received = 0  # of those, how many it had received at its last report
        self.open = 0  # its open connections at its last report
        self.ready = False  # it reported once: it serves
        self.gone = False

    def load(self) -> int:
        return self.open + self.sent - self.received


class _Server(uvicorn.Server):
    """uvicorn, serving connections it is given instead of accepting them itself."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.handoffs: set[asyncio.Task[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # no listening socket of uvicorn's own
        self.protocol = functools.partial(
            self.config.http_protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )

    def serve_connection(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(self.protocol, conn))
        self.handoffs.add(task)
        task.add_done_callback(self._handed_off)

    def _handed_off(self, task: asyncio.Task[Any]) -> None:
        self.handoffs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a connection could not be served: %r", task.exception())

    def open_connections(self) -> int:
        return len(self.server_state.connections) + len(self.handoffs)


class FirstServer(_Server):
    """The first process: accepts on the port and spreads the connections."""

    def __init__(
        self, config: uvicorn.Config, listener: socket.socket, channels: list[socket.socket]
    ) -> None:
        super().__init__(config)
        self.listener = listener
        self.peers = [Peer(c) for c in channels]
        self.accepting = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup()
        loop = asyncio.get_running_loop()
        self.listener.setblocking(False)
        for peer in self.peers:
            peer.channel.setblocking(False)
            loop.add_reader(peer.channel, self._read_report, peer)
        deadline = time.monotonic() + READY_SECONDS
        while not all(p.ready or p.gone for p in self.peers) and not self.should_exit:
            if time.monotonic() > deadline:
                log.warning(
                    "an API process is not ready after %.0f s; serving without it", READY_SECONDS
                )
                break
            await asyncio.sleep(0.05)
        loop.add_reader(self.listener, self._accept)
        self.accepting = True
        host, port = self.listener.getsockname()[:2]
        ready = 1 + sum(p.ready for p in self.peers)
        log.info("serving on http://%s:%d with %d API process(es)", host, port, ready)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        if self.accepting:
            loop.remove_reader(self.listener)
        self.listener.close()
        for peer in self.peers:
            if not peer.gone:
                loop.remove_reader(peer.channel)
            peer.channel.close()
        await super().shutdown(sockets)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of file descriptors, say: the client will retry
                log.warning("accept failed: %r", e)
                return
            self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        """To the process with the fewest open connections, counting this one's accepting and
        handing as one more: a tie goes to another process (two clients reach two processes)."""
        target: Peer | None = None
        fewest = self.open_connections() + 1
        for peer in self.peers:
            if peer.ready and not peer.gone and peer.load() < fewest:
                target, fewest = peer, peer.load()
        if target is not None:
            try:
                socket.send_fds(target.channel, [b"c"], [conn.fileno()])
            except OSError as e:  # it died, or can't take more now: serve it here
                log.warning("handing a connection to an API process failed: %r", e)
                self._lost(target)
            else:
                target.sent += 1
                conn.close()
                return
        self.serve_connection(conn)

    def _read_report(self, peer: Peer) -> None:
        while True:
            try:
                message = peer.channel.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message = b""
            if not message:  # the process is gone
                self._lost(peer)
                return
            received, open_ = message.split()
            peer.received, peer.open, peer.ready = int(received), int(open_), True

    def _lost(self, peer: Peer) -> None:
        if not peer.gone:
            peer.gone = True
            asyncio.get_running_loop().remove_reader(peer.channel)


class HandedServer(_Server):
    """Another API process: serves the connections the first process hands it."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel
        self.received = 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup()
        self.channel.setblocking(False)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.channel, self._receive)
        self.reporter = loop.create_task(self._report())

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.reporter.cancel()
        asyncio.get_running_loop().remove_reader(self.channel)
        self.channel.close()
        await super().shutdown(sockets)

    def _receive(self) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, 16, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, fds = b"", []
            if not message:  # the first process is gone; stop_when_orphaned stops this one
                asyncio.get_running_loop().remove_reader(self.channel)
                return
            for fd in fds:
                self.received += 1
                self.serve_connection(socket.socket(fileno=fd))

    async def _report(self) -> None:
        """The first report says this process is ready; later ones, when its count changed."""
        last = None
        while True:
            now = (self.received, self.open_connections())
            if now != last:
                try:
                    self.channel.send(f"{now[0]} {now[1]}".encode())
                except (BlockingIOError, InterruptedError):
                    pass  # the first process is slow to read: sent again at the next tick
                except OSError:
                    return
                else:
                    last = now
            await asyncio.sleep(REPORT_SECONDS)


def run(server: uvicorn.Server) -> None:
    # What start-up built (modules, routes, models, the application) lives as long as the
    # process: frozen, the cyclic collector's full passes no longer walk it. Before, each such
    # pass stopped the first process for ~45 ms, in line with the slowest of reads paced at
    # 1,000/s.
    gc.collect()
    gc.freeze()
    # uvicorn re-raises the SIGINT it shut down on: that is a normal stop here.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


# On SIGTERM or SIGINT, requests still running get this long to finish before they are cut:
# the container, the other API processes and the embedded PostgreSQL must still be stopped
# before an orchestrator's SIGKILL (docker stop waits 10 s by default).
GRACEFUL_SHUTDOWN_SECONDS = 5


def config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="info",
        # Our own line per request instead (interfaces/http/observe.py), and uvicorn's lines
        # through the root logger, in HOSTPLANE_LOG_FORMAT (interfaces/logformat.py).
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
