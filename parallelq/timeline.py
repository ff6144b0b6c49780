"""Timeline: when each finished task of a scope started and how long it ran."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple, overload


class TaskRecord(NamedTuple):
    """One finished task, as ``request.parallelq.timeline`` lists it.

    Attributes:
        name: the task's keyword for parallel(name=...), otherwise its Task name
            ("#0 qualname" for positional callables, the callable's qualname for
            submit()).
        start: seconds from the scope's opening to the task's start.
        duration: seconds the task ran, its Session's end included.
        error: what the task raised, or None if it returned.
    """

    name: str
    start: float
    duration: float
    error: BaseException | None = None

    @property
    def end(self) -> float:
        """Return seconds from the scope's opening to the task's end."""
        return self.start + self.duration


# The most records a Timeline keeps: a scope() around a long job may run
# millions of tasks, and each record holds its task's name and exception.
MAX_RECORDS = 10_000


class Timeline(Sequence[TaskRecord]):
    """The records of a scope's finished tasks, in the order they finished.

    Tasks of every thread add to it; reading it gives the records so far. It
    keeps the first MAX_RECORDS; `dropped` counts the tasks past them.
    """

    def __init__(self) -> None:
        self.opened = time.perf_counter()  # the scope's opening: records' start is from here
        self.dropped = 0
        self._records: list[TaskRecord] = []
        self._lock = threading.Lock()

    def add(
        self, name: str, started: float, duration: float, error: BaseException | None
    ) -> TaskRecord:
        """Record a task that began at perf_counter() `started` and ran `duration` seconds."""
        record = TaskRecord(name, started - self.opened, duration, error)
        with self._lock:
            if len(self._records) < MAX_RECORDS:
                self._records.append(record)
            else:
                self.dropped += 1
        return record

    @overload
    def __getitem__(self, index: int) -> TaskRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[TaskRecord]: ...
    def __getitem__(self, index: int | slice) -> TaskRecord | list[TaskRecord]:
        return self._records[index]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[TaskRecord]:
        with self._lock:
            return iter(self._records.copy())  # a snapshot: tasks may finish meanwhile

    def __repr__(self) -> str:
        dropped = f", {self.dropped} more dropped" if self.dropped else ""
        return f"<parallelq.Timeline of {len(self)} tasks{dropped}>"
