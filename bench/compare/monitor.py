"""Sample pg_stat_activity while a load runs: peak and total backends per application."""

from __future__ import annotations

import collections
import threading
from types import TracebackType
from typing import Any

from bench.compare.database import connect

_QUERY = """
    SELECT application_name, pid, state <> 'idle' FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


class ConnectionPeaks:
    """A thread that looks at the database's backends every `interval` seconds.

    Use as a context manager around the load; then, for each application_name,
    ``open`` holds the most backends seen at once (idle pooled ones included),
    ``busy`` the most seen at once in a transaction or statement, and ``seen``
    how many distinct backends were seen at all (more than ``open``: the
    application closed connections and opened new ones during the load).
    """

    def __init__(self, db: dict[str, Any], interval: float = 0.05) -> None:
        self.open: collections.Counter[str] = collections.Counter()
        self.busy: collections.Counter[str] = collections.Counter()
        self._pids: dict[str, set[int]] = collections.defaultdict(set)
        self._conn = connect(db, app="bench-monitor")
        self._interval = interval
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._sample, name="bench-monitor", daemon=True)

    def seen(self, app: str) -> int:
        """Return how many distinct backends of `app` the samples saw."""
        return len(self._pids.get(app, ()))

    def __enter__(self) -> ConnectionPeaks:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._conn.close()
        if self._error is not None and kind is None:
            raise RuntimeError("sampling pg_stat_activity failed") from self._error

    def _sample(self) -> None:
        try:
            cursor = self._conn.cursor()
            while not self._stop.is_set():
                cursor.execute(_QUERY)
                self._count(cursor.fetchall())
                self._stop.wait(self._interval)
        except Exception as exc:  # reported by __exit__, in the thread that reads the peaks
            self._error = exc

    def _count(self, rows: list[tuple[str, int, bool]]) -> None:
        opened: collections.Counter[str] = collections.Counter()
        busy: collections.Counter[str] = collections.Counter()
        for app, pid, is_busy in rows:
            opened[app] += 1
            busy[app] += bool(is_busy)
            self._pids[app].add(pid)
        for app in opened:
            self.open[app] = max(self.open[app], opened[app])
            self.busy[app] = max(self.busy[app], busy[app])
