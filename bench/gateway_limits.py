"""The gateway's request and token limits: their cost, and how accurate they are (issue 19).

- **cost**: ``hostplane ×1 + limits`` runs the gateway bench's loads with a key ``rpm_limit``
  and a tenant ``tokens_per_minute`` both on (too high to refuse anything): what the limits add
  is its p50 beside plain ``hostplane ×1`` at one client.
- **accuracy**: ``hostplane serve --workers 2``, 32 clients in a closed loop against a tenant
  with a small quota in short windows (``HOSTPLANE_LIMIT_WINDOW_SECONDS``): the tokens
  (prompt + completion, as answered) admitted in each window, over the quota. Each answer's
  window is told by its ``x-ratelimit-reset-tokens`` (windows end on multiples of their
  length, on the clock the client shares with the server).
"""

from __future__ import annotations

import math
import re
import threading
import time
from typing import Any

import httpx

ACCURACY_WINDOW = 5  # seconds
ACCURACY_QUOTA = 10_000  # tokens per window: a few hundred requests of the bench's body
ACCURACY_WINDOWS = 6  # measured, after a first one to start
ACCURACY_CLIENTS = 32
HIGH = 1_000_000_000  # limits on, never reached


def seconds(reset: str) -> float:
    """An OpenAI reset header (``6m0s``, ``1.5s``, ``20ms``) in seconds."""
    match = re.fullmatch(r"(?:(\d+)m)?(\d+(?:\.\d+)?)(ms|s)", reset)
    if match is None:
        raise ValueError(f"not a reset duration: {reset!r}")
    minutes, value, unit = match.groups()
    return int(minutes or 0) * 60 + float(value) / (1000 if unit == "ms" else 1)


def admitted_per_window(
    base_url: str, token: str, body: dict[str, Any], window: int, windows: int, clients: int
) -> list[int]:
    """Tokens admitted in each of ``windows`` whole windows, ``clients`` hammering; only the
    windows where some request was refused (the clients asked for more than the quota) and
    where every request's window is certain (one decided between its sending and its answer,
    whatever the machine's stalls)."""
    time.sleep(-time.time() % window + 0.05)  # from a window's start
    stop_at = time.time() + window * (windows + 1.5)
    admitted: dict[int, int] = {}
    refused: set[int] = set()
    unsure: set[int] = set()
    lock = threading.Lock()

    def loop() -> None:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            while time.time() < stop_at:
                sent = time.time()
                r = client.post(base_url + "/chat/completions", json=body)
                if r.status_code not in (200, 429):
                    continue
                reset = seconds(r.headers["x-ratelimit-reset-tokens"])
                end = math.ceil((sent + reset - 0.01) / window)
                last = math.floor((time.time() + reset + 0.01) / window)
                if last > end:
                    with lock:
                        unsure.update(range(end, last + 1))
                if r.status_code == 429:
                    with lock:
                        refused.add(end)
                    time.sleep(0.02)
                    continue
                usage = r.json()["usage"]
                with lock:
                    tokens = usage["prompt_tokens"] + usage["completion_tokens"]
                    admitted[end] = admitted.get(end, 0) + tokens

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    ends = sorted(admitted)[1 : 1 + windows]  # the first window was not whole
    return [admitted[e] for e in ends if e in refused and e not in unsure]
