"""parallel() and submit(): argument checks, starting tasks, gathering results, timeouts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar, overload

from parallelq import routing
from parallelq.calls import (
    Batch,
    check_call,
    check_callable,
    collect,
    make_tasks,
    on_event_loop,
    refuse_event_loop,
    timeout_error,
)
from parallelq.replicas import Using
from parallelq.scoping import Scope, current_scope
from parallelq.task import Task, current_task

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
        TypeError: fn is not callable, or is a coroutine function.
    """
    check_callable(fn, "submit() argument 'fn'")
    active = current_scope("submit()")
    task = Task(active, fn, args, kwargs)
    task.route = routing.for_task(fn, routing.PRIMARY)  # on a replica if on_replica() marked fn
    # On an event loop's thread the task goes to a worker even with ENABLED=False
    # (one at a time, see Scope.max_workers): run here, it would hold the loop.
    if (current_task() is not None or not active.enabled) and not on_event_loop():
        # A task waiting on tasks of its own could take every worker and wait
        # forever, so nested work runs here, in the thread it came from.
        active.check_open("submit()")
        if task.claim():
            task.run(on_worker=False)
    else:
        active.dispatch(task, caller_runs=False)
    return task.future


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
    *callables: Callable[[], Any],
    timeout: float | None = ...,
    return_exceptions: bool = ...,
    consistent: bool = ...,
    using: Using = ...,
) -> list[Any]: ...
@overload
def parallel(
    *,
    timeout: float | None = ...,
    return_exceptions: bool = ...,
    consistent: bool = ...,
    using: Using = ...,
    **named: Callable[[], Any],
) -> dict[str, Any]: ...
# A dict unpacked into parallel(**panels) could hold any key, the options'
# included, so type checkers match its values against every option not given
# by name too. This lets it through, whichever options are given; parallel()
# checks them at run time, with a message saying that a task took an option's name.
@overload
def parallel(
    *,
    timeout: float | None | Callable[[], Any] = ...,
    return_exceptions: bool | Callable[[], Any] = ...,
    consistent: bool | Callable[[], Any] = ...,
    using: Using | Callable[[], Any] = ...,
    **named: Callable[[], Any],
) -> dict[str, Any]: ...
def parallel(  # type: ignore[misc]  # the last one above: see its comment
    *callables: Callable[[], Any],
    timeout: float | None = None,
    return_exceptions: bool = False,
    consistent: bool = False,
    using: Using = "primary",
    **named: Callable[[], Any],
) -> list[Any] | dict[str, Any]:
    """Run each callable in its own thread and Session; return their results.

    Args:
        *callables: functions taking no arguments; results come back in order.
        timeout: seconds to wait for all of them; None uses PARALLELQ['TIMEOUT'].
        return_exceptions: put a task's exception in its place in the results
            instead of raising it.
        consistent: every task reads the same committed state, one snapshot
            exported before any task starts (PostgreSQL).
        using: "replica" runs the tasks' Sessions on a read replica (round
            robin; the primary, read-only, when none answers).
        **named: functions taking no arguments; results come back in a dict.

    Returns:
        A list of results for positional callables, a dict for named ones.

    Raises:
        Exception: the first exception a task raised, as it was raised; tasks
            not started yet are not run, and running statements are cancelled.
        Timeout: the tasks did not all finish within `timeout`.
        ParallelQueryError: the scope was closed from another thread while
            a task waited to start (with return_exceptions, in its place); or
            consistent=True on a database that cannot export a snapshot.
        NoScopeError: no request or scope() is active.
        SynchronousOnlyOperation: called in a thread that runs an event loop,
            which it would block: use aparallel() there.
        TypeError: an argument is not callable or is a coroutine function,
            callables are both positional and named, timeout is not a positive
            number of seconds or None, return_exceptions or consistent is not
            a bool, using is neither "primary" nor "replica" (a task named
            after an option lands there), or consistent=True on the primary
            is given a callable marked on_replica().
    """
    refuse_event_loop("parallel()")
    check_call("parallel()", callables, named, timeout, return_exceptions, consistent, using)
    if not (named or callables):
        return {} if named else []
    active = current_scope("parallel()")
    active.check_open("parallel()")
    limit = active.timeout if timeout is None else timeout
    started = time.monotonic()
    outer = current_task()
    route = routing.open_route(
        active,
        consistent=consistent,
        using=using,
        timeout=limit,
        outer=None if outer is None else outer.route,
    )
    tasks: list[Task] = []
    try:
        batch = Batch(len(named or callables), fail_fast=not return_exceptions)
        tasks = make_tasks(active, callables, named, batch, route)
        results = _run(active, tasks, batch, limit, started, return_exceptions)
    finally:
        for task in tasks:
            task.siblings = []  # each refers to the others: let them be freed without the GC
        route.close()  # its snapshot, if it exported one; the tasks left have been cancelled
    return dict(zip(named, results, strict=True)) if named else results


def _run(
    active: Scope,
    tasks: list[Task],
    batch: Batch,
    limit: float | None,
    started: float,
    return_exceptions: bool,
) -> list[Any]:
    """Start `tasks`, run those the caller must, and gather every result in order.

    `limit` counts from `started`, the call's start.
    """
    inline = current_task() is not None or not active.enabled
    if not inline:
        for task in tasks:
            active.dispatch(task, caller_runs=True)
    deadline: _Deadline | None = None
    try:
        for task in _run_here(active, tasks, inline):
            if deadline is None and limit is not None:
                deadline = _Deadline(active, tasks, limit - (time.monotonic() - started))
            try:
                if task.claim():
                    task.run(on_worker=False)
            finally:
                if not inline:
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
            raise timeout_error("parallel()", limit, cut_short)
    remaining = None if limit is None else max(0.0, limit - (time.monotonic() - started))
    batch.changed.wait(remaining)  # all done, or (fail-fast) one failed
    return collect(
        "parallel()", tasks, return_exceptions=return_exceptions, limit=limit, cancel=active.cancel
    )


def _run_here(active: Scope, tasks: list[Task], inline: bool) -> Iterator[Task]:
    """Yield the tasks the caller runs itself.

    All of them when nested or disabled. Otherwise those that found no free
    worker thread or idle connection (caller-runs), while the scope runs fewer
    than MAX_WORKERS tasks: the caller does their work at serial cost rather
    than wait for another request's tasks to end.
    """
    if inline:
        yield from tasks
        return
    while (task := active.take(tasks)) is not None:
        yield task
