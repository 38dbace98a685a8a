"""The gateway limits' window arithmetic and OpenAI's reset-header format."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from limits import RateLimitItemPerSecond

from interfaces.gateway.limits import duration, lease_size, window_of


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (0.0001, "1ms"), (0, "0ms"), (1, "1s"), (1.5, "1.5s"), (59.999, "59.999s"),
     (60, "1m0s"), (360, "6m0s"), (90.25, "1m30.25s")],
)  # fmt: skip
def test_a_reset_is_written_as_openai_writes_it(seconds, text):
    assert duration(seconds) == text


def test_every_process_places_a_moment_in_the_same_window_aligned_on_the_clock():
    now = datetime(2026, 12, 2, 14, 3, 59, 999_000, tzinfo=UTC).timestamp()
    window = window_of(RateLimitItemPerSecond(100, 60), now)
    assert window.start == datetime(2026, 12, 2, 14, 3, tzinfo=UTC)
    assert window.end == datetime(2026, 12, 2, 14, 4, tzinfo=UTC)
    assert window_of(RateLimitItemPerSecond(100, 60), window.end.timestamp()).start == window.end


def test_a_window_of_a_few_seconds_starts_on_a_multiple_of_its_length():
    now = datetime(2026, 12, 2, 14, 3, 7, tzinfo=UTC).timestamp()
    window = window_of(RateLimitItemPerSecond(100, 4), now)
    assert (window.start.second, window.end.second) == (4, 8)


def test_a_lease_is_a_64th_of_the_limit_and_at_least_one():
    assert [lease_size(n) for n in (1, 63, 64, 60_000)] == [1, 1, 1, 937]
