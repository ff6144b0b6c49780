"""The worker threads every scope of the process shares.

parallel() hands a task to a worker only while one is free (reserve()); when
none is, the caller runs the task itself, so a saturated process does its work
at serial cost instead of queueing it behind other requests'. The threads in
parallel() count against the worker threads too: each runs tasks itself once
it finds no free worker, and every thread more that takes turns at the GIL
makes each of them slower.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from parallelq.conf import get_settings

# How long the process must have run no task and no parallel() call before a
# call counts as quiet (quiet()).
QUIET_FOR = 0.05


class Workers:
    """A ThreadPoolExecutor that knows how many of its threads are busy, and who else runs tasks."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="parallelq")
        self._lock = threading.Lock()
        self._busy = 0  # threads running work, or about to
        self._starting = 0  # of those, work handed over but not begun yet
        self._callers = 0  # threads inside parallel(), see caller_enters()
        self._idle_since = float("-inf")  # time.monotonic() when the last of those ended

    @property
    def starting(self) -> int:
        """Return how much reserved work has not begun running yet."""
        return self._starting

    def caller_enters(self) -> None:
        """Count a thread that entered parallel(), until its caller_leaves().

        Such a thread runs tasks itself whenever it finds no free worker, so
        busy workers and callers together are kept within the thread count
        (reserve(), crowded()). Under load that moves tasks from workers to
        the callers, who would otherwise only wait.
        """
        with self._lock:
            self._callers += 1

    def caller_leaves(self) -> None:
        """Stop counting a thread that caller_enters() counted."""
        with self._lock:
            self._callers -= 1
            if self._callers == 0 and self._busy == 0:
                self._idle_since = time.monotonic()

    def quiet(self) -> bool:
        """Return True if the one caller in parallel() is all the process has done for a while.

        That is: no worker is busy, no other thread is in parallel(), and none
        was for QUIET_FOR seconds before. Called after caller_enters().
        """
        return (
            self._busy == 0
            and self._callers <= 1
            and time.monotonic() - self._idle_since >= QUIET_FOR
        )

    def crowded(self) -> bool:
        """Return True if busy threads and callers together outnumber the threads."""
        return self._busy + self._callers > self.threads

    def reserve(self) -> bool:
        """Claim a free thread for one submit(); False if none is.

        A thread is free when it is idle and the busy ones and the callers in
        parallel() together are fewer than the threads.
        """
        with self._lock:
            if self._busy + self._callers >= self.threads:
                return False
            self._busy += 1
            self._starting += 1
            return True

    def submit(self, fn: Callable[[], None], *, reserved: bool) -> None:
        """Run `fn` on a thread; one reserve() made room for it if `reserved`.

        Unreserved work waits in the executor's queue when every thread is busy.
        """
        if not reserved:
            with self._lock:
                self._busy += 1
                self._starting += 1
        try:
            self._executor.submit(self._run, fn)
        except RuntimeError:
            self._done(started=False)
            if self is _workers:
                raise
            # A settings change shut these threads down meanwhile; the new ones run it.
            current().submit(fn, reserved=False)

    def _run(self, fn: Callable[[], None]) -> None:
        with self._lock:
            self._starting -= 1
        try:
            fn()
        finally:
            self._done(started=True)

    def _done(self, *, started: bool) -> None:
        with self._lock:
            self._busy -= 1
            if not started:
                self._starting -= 1
            if self._busy == 0 and self._callers == 0:
                self._idle_since = time.monotonic()

    def shutdown(self) -> None:
        """Let the threads end once the work already handed over is done."""
        self._executor.shutdown(wait=False)


_lock = threading.Lock()
_workers: Workers | None = None


def current() -> Workers:
    """Return the process's Workers, starting them on first use."""
    global _workers
    workers = _workers
    if workers is not None:
        return workers
    with _lock:
        if _workers is None:
            _workers = Workers(worker_threads())
        return _workers


def worker_threads() -> int:
    """Return the number of worker threads the process shares between its scopes.

    It is the Engine pool's capacity (pool_size + max_overflow), or MAX_WORKERS
    if that is larger: more threads than connections would only wait on the pool.
    """
    conf = get_settings()
    return max(conf.MAX_WORKERS, conf.pool_capacity or 0)


# A test that changes PARALLELQ may need more threads; work already handed over
# still runs on the old threads.
@receiver(setting_changed)
def _reset_workers(*, setting: str, **kwargs: Any) -> None:
    global _workers
    if setting == "PARALLELQ":
        with _lock:
            old, _workers = _workers, None
        if old is not None:
            old.shutdown()
