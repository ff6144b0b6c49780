"""Run the tasks of one parallel() call on the CPU core its caller runs on (Linux).

The tasks of a fan-out are Python under the GIL until each sends its
statement: they run one after another, handing the GIL from thread to thread.
Left to the scheduler, each thread that takes the GIL wakes on whichever core
is idle, most often not the one that ran the thread before it, and finds the
interpreter's objects in the other core's cache. On two cores that doubled
the time from one task's send to the next one's (docs/design.md, *One core per
fan-out*). So for the span of a parallel() call its caller, whose core holds
that work warm, stays on its core, and each worker thread moves there before
its task. Between calls nothing is held: the caller gets its own CPU set back,
and a worker keeps its last core until a task from another core, or one not
held (submit(), or a call made under load), moves it.

Only calls in a quiet process are held (tasks.py, Workers.quiet()): under
steady traffic one core would hold back work the others could run. And only
where the OS has sched_getcpu() and sched_setaffinity(); PIN_CPU=False leaves
every thread where the scheduler puts it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator


def _sched_getcpu() -> Callable[[], int] | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        getcpu = ctypes.CDLL(None, use_errno=True).sched_getcpu
    except (OSError, AttributeError):  # no glibc or musl sched_getcpu() here
        return None
    getcpu.restype = ctypes.c_int
    getcpu.argtypes = []
    return getcpu


_getcpu = _sched_getcpu()
# The process's CPU set, which a worker thread gets back. Not the thread's own:
# a thread started while its starter was pinned (a worker, or one a task started)
# inherits that one core.
_ALLOWED = os.sched_getaffinity(0) if _getcpu is not None else None
_pinned = threading.local()  # .cpu: the core a worker thread was moved to, None: none
_UNKNOWN = -1  # a thread follow() has not moved yet may have inherited a core


def available() -> bool:
    """Return True if threads can be held on one core here: the OS can, and has two to choose."""
    return _ALLOWED is not None and len(_ALLOWED) > 1


@contextlib.contextmanager
def caller_pinned() -> Iterator[int | None]:
    """Keep the calling thread on its current core while open; yield that core.

    Yields None, and moves nothing, where the OS cannot tell or pin the core.
    """
    cpu = _getcpu() if _getcpu is not None else -1
    if cpu < 0:
        yield None
        return
    try:
        own = os.sched_getaffinity(0)
        if own != {cpu}:
            os.sched_setaffinity(0, (cpu,))
    except OSError:  # the core left the CPU set meanwhile
        yield None
        return
    try:
        yield cpu
    finally:
        if own != {cpu}:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, own)


def follow(cpu: int | None) -> None:
    """Move the calling worker thread to core `cpu`; with None, give it the process's CPU set."""
    if cpu == getattr(_pinned, "cpu", _UNKNOWN) or _ALLOWED is None:
        return
    try:
        os.sched_setaffinity(0, _ALLOWED if cpu is None else (cpu,))
    except OSError:  # the core left the CPU set: run wherever the scheduler says
        return
    _pinned.cpu = cpu
