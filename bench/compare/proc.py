"""CPU time of processes, read from /proc (Linux): what the servers and PostgreSQL spend."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator


def stats() -> Iterator[tuple[str, str, list[str]]]:
    """Yield (pid, command name, fields after the name) of each process's ``/proc/PID/stat``.

    ``fields[1]`` is the parent's pid, ``fields[3]`` the session id; a process that
    exits meanwhile is left out.
    """
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:  # the process has exited meanwhile
            continue
        yield (
            pid,
            stat[stat.index("(") + 1 : stat.rindex(")")],
            stat[stat.rindex(")") + 2 :].split(),
        )


def cpu_seconds(include: Callable[[str, list[str]], bool]) -> float:
    """Return the CPU time (user + system) of every process `include` picks, in seconds.

    Args:
        include: called with a process's command name (``postgres``) and the
            fields of its ``/proc/PID/stat`` after the name (``fields[3]`` is its
            session id). Counted in clock ticks (usually 10 ms): compare over
            runs of seconds.
    """
    ticks = 0
    for _, name, fields in stats():
        if include(name, fields):
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
