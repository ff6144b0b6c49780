"""Run the dashboard's panels one by one and with parallel(), and time both."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from demo_project.bookstore import PANELS
from parallelq import parallel


@dataclass
class Run:
    """The panels' results and how long they took, one by one and in parallel."""

    panels: dict[str, Any]
    serial_seconds: float
    parallel_seconds: float

    @property
    def speedup(self) -> float:
        return self.serial_seconds / self.parallel_seconds


def measure(latency: float) -> Run:
    """Run every panel serially on the caller's Session, then all at once with parallel()."""
    started = time.perf_counter()
    serial = {name: panel(latency) for name, panel in PANELS.items()}
    middle = time.perf_counter()
    panels = parallel(**{name: functools.partial(panel, latency) for name, panel in PANELS.items()})
    ended = time.perf_counter()
    if panels != serial:
        raise AssertionError("parallel() returned other results than the serial run")
    return Run(panels, middle - started, ended - middle)
