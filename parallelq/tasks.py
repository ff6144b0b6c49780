"""parallel() and submit(): run callables in worker threads, each with its own Session."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from operator import attrgetter
from typing import Any, ParamSpec, TypeVar, overload

from parallelq import affinity, workers
from parallelq.conf import is_seconds
from parallelq.exceptions import ParallelQueryError, Timeout
from parallelq.scope import STALL, Scope, current_scope, record_batch
from parallelq.task import Batch, Locale, Task, current_task

P = ParamSpec("P")
T = TypeVar("T")


def submit(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """Start ``fn(*args, **kwargs)`` in a worker thread with its own Session.

    Returns:
        A Future for the result. It starts at once if the scope runs fewer than
        MAX_WORKERS tasks, otherwise as soon as one of them ends. Its cancel()
        also cancels the task's running statement on the server.

    Raises:
        NoScopeError: no request or scope() is active.
        TypeError: fn is not callable.
    """
    if not callable(fn):
        raise TypeError(f"submit() needs a callable, not {type(fn).__name__}.")
    task = Task(current_scope("submit()"), fn, args, kwargs)
    _start(task)
    return task.future


def _inline() -> bool:
    return current_task() is not None


def _start(task: Task) -> None:
    nested = _inline()
    if nested or not task.scope.enabled:
        # A task waiting on tasks of its own could take every worker and wait
        # forever, so nested work runs here, in the worker it came from.
        if task.scope.claim(task):
            task.run_inline(counted=not nested)
    else:
        task.scope.start(task)


class _Deadline:
    """Cancel tasks that run in the caller's thread once `seconds` have passed."""

    def __init__(self, scope: Scope, tasks: list[Task], seconds: float) -> None:
        self.expired = False
        self._scope, self._tasks = scope, tasks
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        self._scope.cancel(self._tasks)

    def stop(self) -> None:
        self._timer.cancel()


@overload
def parallel(
    *callables: Callable[[], Any], timeout: float | None = ..., return_exceptions: bool = ...
) -> list[Any]: ...
# A dict unpacked into parallel(**panels) could hold any key, timeout and
# return_exceptions included, so type checkers match it against those too; these
# three let it through with or without either. parallel() checks both at run time.
@overload
def parallel(**named: Callable[[], Any]) -> dict[str, Any]: ...
@overload
def parallel(*, timeout: float | None, **named: Callable[[], Any]) -> dict[str, Any]: ...
@overload
def parallel(*, return_exceptions: bool, **named: Callable[[], Any]) -> dict[str, Any]: ...
@overload
def parallel(
    *, timeout: float | None = ..., return_exceptions: bool = ..., **named: Callable[[], Any]
) -> dict[str, Any]: ...
def parallel(  # type: ignore[misc]  # the three above: see their comment
    *callables: Callable[[], Any],
    timeout: float | None = None,
    return_exceptions: bool = False,
    **named: Callable[[], Any],
) -> list[Any] | dict[str, Any]:
    """Run each callable in its own thread and Session; return their results.

    Args:
        *callables: functions taking no arguments; results come back in order.
        timeout: seconds to wait for all of them; None uses PARALLELQ['TIMEOUT'].
        return_exceptions: put a task's exception in its place in the results
            instead of raising it.
        **named: functions taking no arguments; results come back in a dict.

    Returns:
        A list of results for positional callables, a dict for named ones.

    Raises:
        Exception: the first exception a task raised, as it was raised; tasks
            not started yet are not run, and running statements are cancelled.
        Timeout: the tasks did not all finish within `timeout`.
        ParallelQueryError: the scope was closed from another thread while
            a task waited to start (with return_exceptions, in its place).
        NoScopeError: no request or scope() is active.
        TypeError: an argument is not callable, callables are both
            positional and named, timeout is not a positive number of seconds
            or None, or return_exceptions is not a bool (a task named after
            either lands there).
    """
    if callables and named:
        raise TypeError("parallel() takes callables either positionally or by name, not both.")
    _check_options(timeout, return_exceptions)
    if named:
        _check_named(named)
    else:
        _check_positional(callables)
    if not (named or callables):
        return {} if named else []
    active = current_scope("parallel()")
    limit = active.timeout if timeout is None else timeout
    locale = Locale()
    if named:
        tasks = [Task(active, fn, (), {}, label, locale) for label, fn in named.items()]
    else:
        tasks = [Task(active, fn, (), {}, None, locale, i) for i, fn in enumerate(callables)]
    batch = Batch(len(tasks), fail_fast=not return_exceptions)
    for task in tasks:
        task.batch = batch
        if not return_exceptions:
            task.siblings = tasks
    try:
        results = _run(active, tasks, batch, limit, return_exceptions)
    finally:
        for task in tasks:
            task.siblings = []  # each refers to the others: let them be freed without the GC
            task.batch = None
    return dict(zip(named, results, strict=True)) if named else results


def _run(
    active: Scope, tasks: list[Task], batch: Batch, limit: float | None, return_exceptions: bool
) -> list[Any]:
    """Start `tasks`, run those the caller must, and gather every result in order."""
    nested = _inline()
    if nested or not active.enabled:
        return _start_and_gather(
            active, tasks, batch, limit, return_exceptions, nested, inline=True
        )
    pool = workers.current()
    pool.caller_enters()
    try:
        # Not on SQLite: its queries run in this process, outside the GIL, and one
        # core would run them one at a time.
        pin = active.pin_cpu and pool.quiet() and active.engine.dialect.name != "sqlite"
        with affinity.caller_pinned() if pin else contextlib.nullcontext() as cpu:
            for task in tasks:
                task.cpu = cpu
            return _start_and_gather(
                active,
                tasks,
                batch,
                limit,
                return_exceptions,
                nested,
                inline=False,
                pinned=cpu is not None,
            )
    finally:
        pool.caller_leaves()


def _start_and_gather(
    active: Scope,
    tasks: list[Task],
    batch: Batch,
    limit: float | None,
    return_exceptions: bool,
    nested: bool,
    *,
    inline: bool,
    pinned: bool = False,
) -> list[Any]:
    began = time.perf_counter()
    if not inline:
        active.begin_batch(gil_window=not pinned)
        for task in tasks:
            active.offer(task)
    started = time.monotonic()
    deadline: _Deadline | None = None
    try:
        until = None if limit is None else started + limit
        for task in _run_here(active, tasks, batch, inline, until):
            if deadline is None and limit is not None:
                deadline = _Deadline(active, tasks, limit - (time.monotonic() - started))
            if inline:
                if active.claim(task):
                    task.run_inline(counted=not nested)
            else:
                try:
                    task.run_inline(counted=True)
                finally:
                    active.done(task)
            if not return_exceptions and task.error is not None:
                # The tasks not started yet are not run.
                active.cancel([t for t in tasks if t is not task])
                break
    finally:
        if deadline is not None:
            deadline.stop()
    if deadline is not None and deadline.expired:
        cut_short = [t for t in tasks if t.error is not None or t.future.cancelled()]
        if cut_short:
            raise _timeout(limit, cut_short)
    remaining = None if limit is None else max(0.0, limit - (time.monotonic() - started))
    try:
        results = _gather(active, tasks, batch, remaining, return_exceptions, limit)
    finally:
        window = None if inline else active.end_batch()
    if not inline:
        wall = time.perf_counter() - began
        record_batch(sum(t.cpu_seconds for t in tasks), wall, len(tasks), window)
    return results


def _run_here(
    active: Scope, tasks: list[Task], batch: Batch, inline: bool, until: float | None
) -> Iterator[Task]:
    """Yield the tasks the caller runs itself.

    All of them when nested or disabled. Otherwise those that found no free
    worker thread or idle connection (caller-runs), while the scope runs fewer
    than MAX_WORKERS tasks: the caller does their work at serial cost rather
    than wait for another request's tasks to end. While the GIL-bound window
    holds tasks back, the caller waits, and widens it if they stall; it
    stops waiting at `until` (time.monotonic()), for _gather to time out.
    """
    if inline:
        yield from tasks
        return
    if not active.queued:  # every task went to a worker: the common case when idle
        return
    members = set(tasks)
    while True:
        while (task := active.take(members)) is not None:
            yield task
        if not active.holding_back(members):
            return
        left = STALL if until is None else min(STALL, until - time.monotonic())
        if left <= 0:
            return
        batch.changed.wait(left)
        if batch.failed:
            return  # _gather raises it, and cancels the rest
        active.widen_if_stalled()


def _check_options(timeout: Any, return_exceptions: Any) -> None:
    # A task named timeout or return_exceptions, unpacked from a dict, lands in
    # these. Unchecked, the one would fail with an unrelated TypeError later, and
    # the other would be taken as a flag and its task never run.
    if not is_seconds(timeout):
        raise _bad_option("timeout", timeout, "a positive number of seconds or None")
    if not isinstance(return_exceptions, bool):
        raise _bad_option("return_exceptions", return_exceptions, "True or False")


def _bad_option(option: str, value: Any, wanted: str) -> TypeError:
    message = f"parallel() argument {option!r} must be {wanted}, not {value!r}."
    if callable(value):
        message += f" {option!r} is parallel()'s own: give the task another name."
    return TypeError(message)


def _check_named(named: dict[str, Any]) -> None:
    for name, fn in named.items():
        if not callable(fn):
            raise TypeError(
                f"parallel() argument {name!r} must be a callable taking no arguments, "
                f"not {type(fn).__name__}."
            )


def _check_positional(callables: tuple[Any, ...]) -> None:
    for i, fn in enumerate(callables):
        if not callable(fn):
            raise TypeError(
                f"parallel() positional argument {i} must be a callable taking no "
                f"arguments, not {type(fn).__name__}."
            )


def _gather(
    active: Scope,
    tasks: list[Task],
    batch: Batch,
    timeout: float | None,
    return_exceptions: bool,
    limit: float | None,
) -> list[Any]:
    batch.changed.wait(timeout)  # all done, or (fail-fast) one failed
    # Both taken before cancelling: the errors that cancelling causes are not the cause.
    not_done = [t for t in tasks if not t.future.done()]
    failed = [t for t in tasks if t.error is not None and t not in not_done]
    failed.sort(key=attrgetter("failed_at"))
    if not_done:
        active.cancel(not_done)
    if failed and not return_exceptions:
        raise failed[0].future.exception()  # type: ignore[misc]
    if not_done:
        raise _timeout(limit, not_done)
    results = []
    for task in tasks:
        if task.error is not None:
            results.append(task.error)
            continue
        try:
            results.append(task.future.result())
        except CancelledError:  # never started: its scope was closed first
            error = _never_ran(task)
            if not return_exceptions:
                raise error from None
            results.append(error)
    return results


def _never_ran(task: Task) -> ParallelQueryError:
    return ParallelQueryError(
        f"{task} never ran: its scope was closed before the task could start (its request "
        "ended, or scope.close() was called from another thread, while parallel() waited)."
    )


def _timeout(seconds: float | None, unfinished: list[Task]) -> Timeout:
    names = ", ".join(t.name for t in unfinished)
    return Timeout(
        f"parallel() timed out after {seconds} s; unfinished, their statements cancelled: {names}."
    )
