"""The worker threads every scope of the process shares."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from parallelq.conf import get_settings

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def submit(fn: Callable[[], None]) -> None:
    """Run `fn` on a worker thread, starting the executor on first use."""
    while True:
        executor = _executor or _start()
        try:
            executor.submit(fn)
            return
        except RuntimeError:
            # A settings change shut this executor down meanwhile; the next is new.
            if executor is _executor:
                raise


def _start() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=worker_threads(), thread_name_prefix="parallelq"
            )
        return _executor


def worker_threads() -> int:
    """Return the number of worker threads the process shares between its scopes.

    It is the Engine pool's capacity (pool_size + max_overflow), or MAX_WORKERS
    if that is larger: more threads than connections would only wait on the pool.
    """
    conf = get_settings()
    return max(conf.MAX_WORKERS, conf.pool_capacity or 0)


# A test that changes PARALLELQ may need more threads; queued work still runs
# on the old executor's threads.
@receiver(setting_changed)
def _reset_executor(*, setting: str, **kwargs: Any) -> None:
    global _executor
    if setting == "PARALLELQ":
        with _lock:
            old, _executor = _executor, None
        if old is not None:
            old.shutdown(wait=False)
