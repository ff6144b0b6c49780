"""Lay finished tasks out as a waterfall: one bar per task on a shared time axis.

The bars are plain dicts of str, float and None, so that django-debug-toolbar's
store can keep them as JSON; the template ``parallelq/waterfall.html`` draws them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from parallelq.timeline import TaskRecord

# The narrowest bar, in percent of the axis, so that a trivial task still shows.
MIN_WIDTH = 0.4


def bars(
    records: Iterable[TaskRecord], *, origin: float = 0.0, span: float | None = None
) -> list[dict[str, Any]]:
    """Return a bar per record, by start, on an axis from `origin` over `span` seconds.

    Args:
        records: what to draw, e.g. a scope's timeline.
        origin: seconds from the scope's opening where the axis starts.
        span: the axis's length in seconds; None: up to the last record's end.

    Returns:
        Dicts with name, start_ms and duration_ms (from `origin`), error (the
        exception's repr, or None), x and width (percent of the axis).
    """
    ordered = sorted(records, key=lambda r: r.start)
    if span is None:
        span = max((r.end - origin for r in ordered), default=0.0)
    return [
        {
            "name": record.name,
            "start_ms": (record.start - origin) * 1000,
            "duration_ms": record.duration * 1000,
            "error": None if record.error is None else repr(record.error),
            **place(record.start - origin, record.duration, span),
        }
        for record in ordered
    ]


def place(start: float, duration: float, span: float) -> dict[str, float]:
    """Return x and width, in percent of an axis `span` seconds long, of an interval."""
    if span <= 0:
        return {"x": 0.0, "width": MIN_WIDTH}
    x = min(max(start / span * 100, 0.0), 100 - MIN_WIDTH)
    return {"x": round(x, 3), "width": round(max(duration / span * 100, MIN_WIDTH), 3)}
