"""The overview's time windows and the bars of its charts (coordinates only: the
templates write the SVG markup, escaped like everything else)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

__all__ = ["SINCE", "WINDOWS", "Window", "chart", "slice_label"]


@dataclass(frozen=True, slots=True)
class Window:
    """A period the overview can show, cut into slices for its charts."""

    delta: dt.timedelta
    buckets: int
    label_format: str


WINDOWS = {
    "1h": Window(dt.timedelta(hours=1), 12, "%H:%M"),
    "24h": Window(dt.timedelta(hours=24), 24, "%H:%M"),
    "7d": Window(dt.timedelta(days=7), 28, "%m-%d %H:%M"),
}
#: The "active since" choices of the runs page.
SINCE = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7)}


def chart(values: list[int], labels: list[str], *, width: int = 560, height: int = 120) -> Any:
    """Bars for an SVG chart, one per value, scaled to the largest."""
    top = max(values, default=0)
    n = max(len(values), 1)
    slot = width / n
    bars = []
    for i, value in enumerate(values):
        h = 0.0 if top == 0 else (height - 4) * value / top
        bars.append(
            {
                "x": round(i * slot + 1, 2),
                "y": round(height - h, 2),
                "w": round(max(slot - 2, 1), 2),
                "h": round(h, 2),
                "title": f"{labels[i]}: {value}",
            }
        )
    return {"width": width, "height": height, "bars": bars, "top": top}


def slice_label(width: dt.timedelta) -> str:
    """A slice's width in words: ``5 min``, ``1 h``."""
    minutes = width.total_seconds() / 60
    return f"{minutes:g} min" if minutes < 60 else f"{minutes / 60:g} h"
