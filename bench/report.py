"""Figures, the printed table and the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured figure beside its target and the baseline measured in the same run.

    ``higher_is_better`` decides how ``target`` is compared; ``ratio`` is measured / baseline.
    """

    name: str  # the --only group it belongs to
    label: str
    measured: float | None
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    baseline: float | None = None
    baseline_label: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.measured is None or not self.baseline:
            return None
        return self.measured / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None or self.measured is None:
            return None
        if self.higher_is_better:
            return self.measured >= self.target
        return self.measured <= self.target

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("ms", "s", "MB"):
        text = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    else:
        text = f"{value:,.2f}"
    return f"{text} {unit}"


def target_text(f: Figure) -> str:
    if f.target is None:
        return "—"
    return ("≥ " if f.higher_is_better else "≤ ") + fmt(f.target, f.unit)


def baseline_text(f: Figure) -> str:
    if f.baseline is None:
        return f.baseline_label or "—"
    return f"{fmt(f.baseline, f.unit)} ({f.baseline_label})"


def table(figures: Sequence[Figure]) -> str:
    """The figures as a Markdown table: figure | measured | target | baseline | ratio | met."""
    header = ["figure", "measured", "target", "baseline", "ratio", "met"]
    rows = [
        [
            f.label,
            fmt(f.measured, f.unit),
            target_text(f),
            baseline_text(f),
            "—" if f.ratio is None else f"{f.ratio:.2f}×",
            {True: "yes", False: "NO", None: "—"}[f.met],
        ]
        for f in figures
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    notes = [f"- {f.label}: {f.notes}" for f in figures if f.notes]
    return "\n".join(out + ([""] + notes if notes else []))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def write_json(path: Path, figures: Sequence[Figure], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**meta, "figures": [f.as_dict() for f in figures]}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
