"""CPU used during a load: the gunicorns', the run's PostgreSQL's, wrk's and the machine's.

The machine is shared (other work may run on it), so a load also reads how busy the
whole machine was and how much of that was the run's own processes: the difference is
what disturbed it.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.compare import proc, servers
from tests import pg


@dataclass(frozen=True)
class Counters:
    """CPU seconds so far, and the machine's clock ticks (busy, in all) from /proc/stat."""

    app: float
    db: float
    wrk: float
    busy_ticks: int
    all_ticks: int
    wall: float


@dataclass(frozen=True)
class Used:
    """CPU seconds over a load, and shares of the machine's CPU time."""

    app: float
    db: float
    wrk: float
    machine_busy: float  # share of all cores' time that was not idle
    ours_busy: float  # share of all cores' time used by app, db and wrk


class Clock:
    """Read the counters now; ``read()`` returns what was used since."""

    def __init__(self, loaded: Sequence[Any], database: Sequence[Any] = ()) -> None:
        """Count `loaded` servers' CPU as the app's; `database` processes (Popen) as the db's."""
        self._servers = [s.process for s in loaded]
        self._database = list(database)
        self._start = self._now()

    def read(self) -> Used:
        start, end = self._start, self._now()
        app, db, wrk = end.app - start.app, end.db - start.db, end.wrk - start.wrk
        ticks = end.all_ticks - start.all_ticks
        cores = len(os.sched_getaffinity(0))
        return Used(
            app=app,
            db=db,
            wrk=wrk,
            machine_busy=(end.busy_ticks - start.busy_ticks) / ticks if ticks else float("nan"),
            ours_busy=(app + db + wrk) / ((end.wall - start.wall) * cores),
        )

    def _now(self) -> Counters:
        busy, total = _machine_ticks()
        return Counters(
            app=sum(servers.cpu_seconds(p) for p in self._servers),
            db=postgres_seconds() + sum(servers.cpu_seconds(p) for p in self._database),
            wrk=_children_seconds(),
            busy_ticks=busy,
            all_ticks=total,
            wall=time.monotonic(),
        )


def postgres_seconds() -> float:
    """Return the CPU seconds of the cluster tests.pg started, its backends' (0 if none).

    Read from /proc/PID/schedstat, in nanoseconds: a query's few µs of CPU would take
    thousands of runs to show in /proc/PID/stat's 10 ms clock ticks.
    """
    data = pg._cluster.get("data")
    if data is None:
        return 0.0
    try:
        with open(os.path.join(data, "postmaster.pid")) as f:
            postmaster = f.readline().strip()
    except OSError:
        return 0.0
    nanoseconds = 0
    for pid, _, fields in proc.stats():
        # Backends are the postmaster's children (each in a session of its own).
        if pid != postmaster and fields[1] != postmaster:
            continue
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                nanoseconds += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):  # the process has exited meanwhile
            continue
    return nanoseconds / 1e9


def _children_seconds() -> float:
    # wrk runs are reaped by subprocess.run; the gunicorns only when stopped.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(n) for n in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)
