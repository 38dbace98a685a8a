"""Reading ahead: the next pages of a stream are fetched by a helper thread meanwhile.

A server-side cursor leaves PostgreSQL idle while its client works on a page, and the client idle
while PostgreSQL produces the next one. With a thread fetching ahead (it waits on the socket
without the GIL) both work at once; a bounded queue keeps memory to ``depth`` pages.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
POLL_SECONDS = 0.05  # how soon a helper blocked on a full queue notices that the reader left


@dataclass
class _End:
    error: BaseException | None = None


def read_ahead(pages: Generator[T, None, None], depth: int = 2) -> Iterator[T]:
    """The items of ``pages``, produced in a helper thread up to ``depth`` ahead of the reader.

    ``pages`` runs entirely in the helper thread, its clean-up included (a cursor is closed
    there); when the reader stops early, the helper stops after its current item and the reader
    waits for that. An error in ``pages`` is raised to the reader.
    """
    box: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        end = _End()
        try:
            for page in pages:
                if not put(page):
                    break
        except BaseException as e:  # handed to the reader, raised there
            end = _End(e)
        finally:
            pages.close()
        put(end)

    helper = threading.Thread(target=produce, name="read-ahead", daemon=True)
    helper.start()
    try:
        while True:
            item = box.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        helper.join()
