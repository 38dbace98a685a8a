"""Pausing the cyclic garbage collector while a batch of events is applied."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run a block with the cyclic collector off; it comes back on when the last block ends.

    A batch allocates millions of objects (decoded events, folded rows) that all live until
    its end and hold no cycles; their reference counts free them. With the collector on, each
    of its passes over the growing heap found nothing and cost a third of a rebuild's CPU.
    Blocks may overlap across threads: the collector is restored by the last one out.
    """
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
