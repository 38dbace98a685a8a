"""The CLI's plain progress lines (interfaces/cli/progress.py), on a clock the test moves, and
what `hostplane status` prints of a server's answer (interfaces/cli/status.py)."""

from __future__ import annotations

import io

from interfaces.cli.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_say_the_total_at_the_start_then_count_rate_and_eta_every_few_seconds():
    out, clock = io.StringIO(), Clock()
    progress = Progress("exporting events", 1000, "events", out, every_seconds=5, clock=clock)
    for _ in range(4):  # 4 s, 200 done: no line yet
        clock.now += 1
        progress.advance(50)
    clock.now += 1  # 5 s, 400 done: a line
    progress.advance(200)
    clock.now += 5  # 10 s, 1000 done
    progress.advance(600)
    progress.close()
    progress.close()  # once

    assert out.getvalue().splitlines() == [
        "exporting events: 0/1,000 events",
        "exporting events: 400/1,000 events (40%), 80 events/s, ETA 00:07",
        "exporting events: 1,000/1,000 events (100%), 100 events/s, ETA 00:00",
        "exporting events: 1,000/1,000 events in 00:10 (100 events/s)",
    ]


def test_reach_moves_the_total_along_with_the_count_as_a_rebuild_does_while_serving():
    out, clock = io.StringIO(), Clock()
    with Progress("rebuilding keys", 50, "events", out, every_seconds=5, clock=clock) as progress:
        clock.now += 5
        progress.reach(40, 60)
        progress.reach(70, 70)

    lines = out.getvalue().splitlines()
    assert lines[1] == "rebuilding keys: 40/60 events (67%), 8.0 events/s, ETA 00:02"
    assert lines[-1] == "rebuilding keys: 70/70 events in 00:05 (14 events/s)"


def test_a_terminal_gets_a_bar_with_count_rate_and_time_left_and_no_plain_lines():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    with Progress("importing models", 3, "models", out) as progress:
        for _ in range(3):
            progress.advance()

    last = out.getvalue().split("\r")[-1]
    assert last.startswith("importing models: 100%|")
    assert "3/3 [" in last and "models/s]" in last
    assert "importing models: 0/3" not in out.getvalue()


def test_status_marks_a_stalled_read_model_and_a_process_that_does_not_lead(capsys):
    from interfaces.cli.status import print_server_status

    stalled = print_server_status(
        {
            "pid": 42,
            "leader": False,
            "events": {"count": 9, "head": 10},
            "read_models": [
                {"name": "keys", "position": 10, "head": 10, "lag": 0, "stalled_at": None},
                {"name": "usage", "position": 6, "head": 10, "lag": 4, "stalled_at": 7},
            ],
            "jobs": [
                {
                    "id": "budgets",
                    "next_run_at": "2026-12-02T19:00:05.5+01:00",
                    "every_seconds": 5.0,
                    "cluster_wide": False,
                }
            ],
        }
    )

    out = capsys.readouterr().out.splitlines()
    assert stalled is True
    assert "events     9 (log head 10)" in out
    assert any(x.startswith("usage ") and "stalled at event 7" in x for x in out)
    assert not any("stalled" in x for x in out if x.startswith("keys "))
    assert "not leading" in next(x for x in out if x.startswith("jobs of process 42"))
    (job,) = [x for x in out if x.startswith("budgets ")]
    assert job.split() == ["budgets", "2026-12-02T18:00:05Z", "5s", "(in", "every", "process)"]
