"""The worker threads every scope of the process shares.

No thread is started per request. A parallel() call hands a task to a worker
only while one is free (reserve()); when none is, its caller runs the task
itself (scoping.py), so a saturated process does its work at serial cost
instead of queueing it behind other requests'.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from parallelq.conf import get_settings


class Executor:
    """A ThreadPoolExecutor that knows how many of its threads are busy."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="parallelq")
        self._lock = threading.Lock()
        self._busy = 0  # threads running work, or about to
        self._starting = 0  # of those, work handed over but not begun yet

    @property
    def starting(self) -> int:
        """Return how much work was handed over but has not begun: connections about to go."""
        return self._starting

    def reserve(self) -> bool:
        """Claim a free thread for one submit(reserved=True); False if none is."""
        with self._lock:
            if self._busy >= self.threads:
                return False
            self._busy += 1
            self._starting += 1
            return True

    def submit(self, fn: Callable[[], None], *, reserved: bool) -> None:
        """Run `fn` on a thread; a reserve() made room for it if `reserved`.

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
            if self is _executor:
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

    def shutdown(self) -> None:
        """Let the threads end once the work already handed over is done."""
        self._executor.shutdown(wait=False)


_lock = threading.Lock()
_executor: Executor | None = None


def current() -> Executor:
    """Return the process's Executor; a new one when the settings ask for another size."""
    global _executor
    threads = worker_threads()
    executor = _executor
    if executor is not None and executor.threads == threads:
        return executor
    with _lock:
        if _executor is None or _executor.threads != threads:
            old, _executor = _executor, Executor(threads)
            if old is not None:
                old.shutdown()  # work already handed over still runs there
        return _executor


def worker_threads() -> int:
    """Return the number of worker threads the process shares between its scopes.

    It is the Engine pool's capacity (pool_size + max_overflow), or MAX_WORKERS
    if that is larger: more threads than connections would only wait on the pool.
    """
    conf = get_settings()
    return max(conf.MAX_WORKERS, conf.pool_capacity or 0)
