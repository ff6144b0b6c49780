"""parallel() and submit(): argument checks, starting tasks, gathering results, timeouts."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from operator import attrgetter
from typing import Any, ParamSpec, TypeVar, overload

from parallelq.conf import MAX_SECONDS, is_seconds
from parallelq.context import Locale
from parallelq.exceptions import ParallelQueryError, Timeout
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
    _check_callable(fn, "submit() argument 'fn'")
    active = current_scope("submit()")
    task = Task(active, fn, args, kwargs)
    if current_task() is not None or not active.enabled:
        # A task waiting on tasks of its own could take every worker and wait
        # forever, so nested work runs here, in the thread it came from.
        active.check_open("submit()")
        if task.claim():
            task.run(on_worker=False)
    else:
        active.dispatch(task, caller_runs=False)
    return task.future


class _Batch:
    """The tasks of one parallel() call, which wake its caller once they are done.

    Done: all settled or cancelled before they started, or, with `fail_fast`,
    one failed. The caller waits on `changed`, at no cost per task, rather
    than registering with every task's Future as concurrent.futures.wait()
    does, which costs the caller more than handing the tasks to workers.
    """

    def __init__(self, size: int, *, fail_fast: bool) -> None:
        self.changed = threading.Event()
        self.failed = False  # only with fail_fast
        self._fail_fast = fail_fast
        self._left = size
        self._lock = threading.Lock()

    def settled(self, ok: bool) -> None:
        """Count a task that settled; `ok`: it returned rather than raised."""
        with self._lock:
            self._left -= 1
            if not ok and self._fail_fast:
                self.failed = True
            if self.failed or self._left == 0:
                self.changed.set()

    def dropped(self) -> None:
        """Count a task cancelled before it started: it never settles."""
        self.settled(ok=True)


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
        TypeError: an argument is not callable or is a coroutine function,
            callables are both positional and named, timeout is not a positive
            number of seconds or None, or return_exceptions is not a bool (a
            task named after either lands there).
    """
    if callables and named:
        raise TypeError("parallel() takes callables either positionally or by name, not both.")
    _check_options(timeout, return_exceptions)
    for i, fn in enumerate(callables):
        _check_callable(fn, f"parallel() positional argument {i}")
    for label, fn in named.items():
        _check_callable(fn, f"parallel() argument {label!r}")
    if not (named or callables):
        return {} if named else []
    active = current_scope("parallel()")
    active.check_open("parallel()")
    limit = active.timeout if timeout is None else timeout
    batch = _Batch(len(named or callables), fail_fast=not return_exceptions)
    locale = Locale()
    if named:
        tasks = [Task(active, fn, name=k, locale=locale, batch=batch) for k, fn in named.items()]
    else:
        tasks = [
            Task(active, fn, index=i, locale=locale, batch=batch) for i, fn in enumerate(callables)
        ]
    if not return_exceptions:
        for task in tasks:
            task.siblings = tasks
    try:
        results = _run(active, tasks, batch, limit, return_exceptions)
    finally:
        for task in tasks:
            task.siblings = []  # each refers to the others: let them be freed without the GC
    return dict(zip(named, results, strict=True)) if named else results


def _run(
    active: Scope, tasks: list[Task], batch: _Batch, limit: float | None, return_exceptions: bool
) -> list[Any]:
    """Start `tasks`, run those the caller must, and gather every result in order."""
    inline = current_task() is not None or not active.enabled
    if not inline:
        for task in tasks:
            active.dispatch(task, caller_runs=True)
    started = time.monotonic()
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
            raise _timeout(limit, cut_short)
    remaining = None if limit is None else max(0.0, limit - (time.monotonic() - started))
    return _gather(active, tasks, batch, remaining, return_exceptions, limit)


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


def _check_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} must be a callable taking no arguments, not {type(fn).__name__}.")
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{what} is a coroutine function ({getattr(fn, '__qualname__', fn)!r}): "
            "parallel() and submit() run plain functions in threads. Pass a function "
            "that is not async."
        )


def _check_options(timeout: Any, return_exceptions: Any) -> None:
    # A task named timeout or return_exceptions, unpacked from a dict, lands in
    # these. Unchecked, the one would fail with an unrelated TypeError later, and
    # the other would be taken as a flag and its task never run.
    if not is_seconds(timeout):
        wanted = f"a positive, finite number of seconds (at most {int(MAX_SECONDS)}) or None"
        raise _bad_option("timeout", timeout, wanted)
    if not isinstance(return_exceptions, bool):
        raise _bad_option("return_exceptions", return_exceptions, "True or False")


def _bad_option(option: str, value: Any, wanted: str) -> TypeError:
    message = f"parallel() argument {option!r} must be {wanted}, not {value!r}."
    if callable(value):
        message += f" {option!r} is parallel()'s own: give the task another name."
    return TypeError(message)


def _gather(
    active: Scope,
    tasks: list[Task],
    batch: _Batch,
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
