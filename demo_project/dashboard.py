"""Run the dashboard's panels one by one and with parallel(), and time both."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from demo_project.bookstore import PANELS
from parallelq import parallel
from parallelq.timeline import TaskRecord, Timeline


@dataclass
class Run:
    """The panels' results and how long they took, one by one and in parallel.

    `serial` and `parallel` hold a record per panel, each run's start at 0 s.
    """

    panels: dict[str, Any]
    serial_seconds: float
    parallel_seconds: float
    serial: list[TaskRecord]
    parallel: list[TaskRecord]

    @property
    def speedup(self) -> float:
        return self.serial_seconds / self.parallel_seconds


def measure(latency: float, timeline: Timeline) -> Run:
    """Run every panel serially on the caller's Session, then all at once with parallel().

    Args:
        latency: seconds each panel's query waits in the database.
        timeline: the scope's, where parallel() records the panels' tasks.
    """
    serial, serial_records = {}, []
    started = time.perf_counter()
    for name, panel in PANELS.items():
        began = time.perf_counter()
        serial[name] = panel(latency)
        serial_records.append(TaskRecord(name, began - started, time.perf_counter() - began))
    middle = time.perf_counter()
    before = len(timeline)
    panels = parallel(**{name: functools.partial(panel, latency) for name, panel in PANELS.items()})
    ended = time.perf_counter()
    if panels != serial:
        raise AssertionError("parallel() returned other results than the serial run")
    shift = middle - timeline.opened  # from the scope's opening to the parallel run's start
    tasks = [r._replace(start=r.start - shift) for r in timeline[before:]]
    return Run(panels, middle - started, ended - middle, serial_records, tasks)
