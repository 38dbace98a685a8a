"""Reading ahead in a helper thread: same items in order, errors raised, clean-up when abandoned."""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest

from projections.engine.read_ahead import read_ahead


def pages(n: int, log: list[str]) -> Generator[list[int], None, None]:
    try:
        for i in range(n):
            yield [i, i]
    finally:
        log.append(f"closed in {threading.current_thread().name}")


def test_every_page_comes_in_order_and_the_source_is_closed_in_the_helper():
    log: list[str] = []

    assert list(read_ahead(pages(50, log), depth=2)) == [[i, i] for i in range(50)]
    assert log == ["closed in read-ahead"]


def test_an_error_while_reading_ahead_is_raised_to_the_reader():
    def failing() -> Generator[list[int], None, None]:
        yield [1]
        raise RuntimeError("connection lost")

    reader = read_ahead(failing())

    assert next(reader) == [1]
    with pytest.raises(RuntimeError, match="connection lost"):
        next(reader)


def test_a_reader_that_stops_early_stops_the_helper_and_closes_the_source():
    log: list[str] = []
    reader = read_ahead(pages(10_000, log), depth=2)

    assert next(reader) == [0, 0]
    reader.close()

    assert log == ["closed in read-ahead"]
    assert not any(t.name == "read-ahead" for t in threading.enumerate())
