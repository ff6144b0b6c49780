"""CPU time of processes, read from /proc (Linux): what the servers and PostgreSQL spend."""

from __future__ import annotations

import os
from collections.abc import Callable


def cpu_seconds(include: Callable[[str, list[str]], bool]) -> float:
    """Return the CPU time (user + system) of every process `include` picks, in seconds.

    Args:
        include: called with a process's command name (``postgres``) and the
            fields of its ``/proc/PID/stat`` after the name (``fields[3]`` is its
            session id). Counted in clock ticks (usually 10 ms): compare over
            runs of seconds.
    """
    ticks = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:  # the process has exited meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if include(name, fields):
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")
