"""Stats: what the tasks of one scope did, as ``request.parallelq.stats`` shows it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class Stats:
    """What a scope's tasks did.

    Attributes:
        tasks: tasks that ran.
        db_seconds: their run times added up: what running them one by one costs.
        wall_seconds: time during which at least one task was running.
        max_concurrency: the most tasks running at once.
        in_caller: tasks parallel() ran in its caller's thread because no worker
            thread was free or no pooled connection idle: above 0, other
            requests fanned out too, or the process was saturated
            (ENABLED=False and nested tasks are not counted).
    """

    tasks: int = 0
    db_seconds: float = 0.0
    wall_seconds: float = 0.0
    max_concurrency: int = 0
    in_caller: int = 0

    def __post_init__(self) -> None:
        # Not fields: dataclasses.asdict() and == see the figures alone.
        self._lock = threading.Lock()
        self._running = 0
        self._busy_since = 0.0

    def task_started(self) -> None:
        """Count a task that began running."""
        with self._lock:
            self._running += 1
            if self._running == 1:
                self._busy_since = time.perf_counter()
            self.max_concurrency = max(self.max_concurrency, self._running)

    def task_finished(self, seconds: float) -> None:
        """Count a task that ran for `seconds`."""
        with self._lock:
            self.tasks += 1
            self.db_seconds += seconds
            self._running -= 1
            if self._running == 0:
                self.wall_seconds += time.perf_counter() - self._busy_since
