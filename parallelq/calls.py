"""One parallel() or aparallel() call: its argument checks, its tasks, their results in order."""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError
from operator import attrgetter
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation

from parallelq import replicas
from parallelq.conf import MAX_SECONDS, is_seconds
from parallelq.context import Locale
from parallelq.exceptions import ParallelQueryError, Timeout
from parallelq.routing import PRIMARY, Route, for_task
from parallelq.scoping import Scope
from parallelq.task import Task


def check_call(
    what: str,
    callables: tuple[Any, ...],
    named: dict[str, Any],
    timeout: Any,
    return_exceptions: Any,
    consistent: Any = False,
    using: Any = "primary",
) -> None:
    """Raise TypeError for arguments `what` (parallel() or aparallel()) cannot run."""
    if callables and named:
        raise TypeError(f"{what} takes callables either positionally or by name, not both.")
    _check_options(what, timeout, return_exceptions)
    if not isinstance(consistent, bool):
        raise _bad_option(what, "consistent", consistent, "True or False")
    if not isinstance(using, str) or using not in replicas.USING:
        raise _bad_option(what, "using", using, " or ".join(map(repr, replicas.USING)))
    labelled = [(f"{what} positional argument {i}", fn) for i, fn in enumerate(callables)]
    labelled += [(f"{what} argument {label!r}", fn) for label, fn in named.items()]
    for label, fn in labelled:
        check_callable(fn, label)
        if consistent and replicas.using_of(fn, using) != using:
            raise TypeError(
                f"{label} is marked on_replica(), but consistent=True reads one snapshot, which "
                f"lives on one server: here the primary. Pass using='replica' to run every "
                "task on a replica, or leave on_replica() out."
            )


def check_callable(fn: Any, what: str) -> None:
    """Raise TypeError unless `fn` is a plain callable; `what` names the argument."""
    if not callable(fn):
        raise TypeError(f"{what} must be a callable taking no arguments, not {type(fn).__name__}.")
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{what} is a coroutine function ({getattr(fn, '__qualname__', fn)!r}): "
            "parallel(), aparallel() and submit() run plain functions in threads. Pass a "
            "function that is not async."
        )


def _check_options(what: str, timeout: Any, return_exceptions: Any) -> None:
    # A task named timeout or return_exceptions, unpacked from a dict, lands in
    # these. Unchecked, the one would fail with an unrelated TypeError later, and
    # the other would be taken as a flag and its task never run.
    if not is_seconds(timeout):
        wanted = f"a positive, finite number of seconds (at most {int(MAX_SECONDS)}) or None"
        raise _bad_option(what, "timeout", timeout, wanted)
    if not isinstance(return_exceptions, bool):
        raise _bad_option(what, "return_exceptions", return_exceptions, "True or False")


def _bad_option(what: str, option: str, value: Any, wanted: str) -> TypeError:
    message = f"{what} argument {option!r} must be {wanted}, not {value!r}."
    if callable(value):
        message += f" {option!r} is {what}'s own: give the task another name."
    return TypeError(message)


def on_event_loop() -> bool:
    """Return whether this thread runs an event loop (Django's DJANGO_ALLOW_ASYNC_UNSAFE aside)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")


def refuse_event_loop(what: str) -> None:
    """Raise SynchronousOnlyOperation in a thread that runs an event loop, as Django's ORM does.

    `what` (parallel()) waits for its tasks, and would hold the loop meanwhile.
    """
    if on_event_loop():
        raise SynchronousOnlyOperation(
            f"{what} was called in the thread of a running event loop, which it would "
            "block until its tasks end. In async code, await parallelq.aparallel() with the "
            "same arguments, or run the synchronous code that calls it with sync_to_async()."
        )


class Batch:
    """The tasks of one call, which tell its caller once they are done.

    Done: all settled or cancelled before they started, or, with `fail_fast`,
    one failed. The caller waits on `changed`, at no cost per task, rather
    than registering with every task's Future as concurrent.futures.wait()
    does, which costs the caller more than handing the tasks to workers.
    `notify`, if given, is called once, from the thread that made it done.
    """

    def __init__(
        self,
        size: int,
        *,
        fail_fast: bool,
        caller_runs: bool = True,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self.changed = threading.Event()
        self.failed = False  # only with fail_fast
        self.caller_runs = caller_runs
        self.fail_fast = fail_fast
        self._notify = notify
        self._left = size
        self._lock = threading.Lock()

    def settled(self, ok: bool) -> None:
        """Count a task that settled; `ok`: it returned rather than raised."""
        with self._lock:
            self._left -= 1
            if not ok and self.fail_fast:
                self.failed = True
            if self.changed.is_set() or not (self.failed or self._left == 0):
                return
            self.changed.set()
        if self._notify is not None:
            self._notify()

    def dropped(self) -> None:
        """Count a task cancelled before it started: it never settles."""
        self.settled(ok=True)


def make_tasks(
    active: Scope,
    callables: tuple[Callable[[], Any], ...],
    named: dict[str, Callable[[], Any]],
    batch: Batch,
    route: Route = PRIMARY,
) -> list[Task]:
    """Return a task per callable, routed by `route`; with fail_fast, each cancels the others."""
    locale = Locale()
    if named:
        tasks = [Task(active, fn, name=k, locale=locale, batch=batch) for k, fn in named.items()]
    else:
        tasks = [
            Task(active, fn, index=i, locale=locale, batch=batch) for i, fn in enumerate(callables)
        ]
    for task in tasks:
        task.route = for_task(task.fn, route)
    if batch.fail_fast:
        for task in tasks:
            task.siblings = tasks
    return tasks


def collect(
    what: str,
    tasks: list[Task],
    *,
    return_exceptions: bool,
    limit: float | None,
    cancel: Callable[[list[Task]], None],
) -> list[Any]:
    """Return the results of `tasks` in order, once their Batch is done or the wait timed out.

    Unfinished tasks are cancelled with `cancel` first. Raises the first error a
    task raised (unless return_exceptions), else Timeout if any is unfinished.
    """
    # Both taken before cancelling: the errors that cancelling causes are not the cause.
    not_done = [t for t in tasks if not t.future.done()]
    failed = [t for t in tasks if t.error is not None and t not in not_done]
    failed.sort(key=attrgetter("failed_at"))
    if not_done:
        cancel(not_done)
    if failed and not return_exceptions:
        raise failed[0].future.exception()  # type: ignore[misc]
    if not_done:
        raise timeout_error(what, limit, not_done)
    results = []
    for task in tasks:
        if task.error is not None:
            results.append(task.error)
            continue
        try:
            results.append(task.future.result())
        except CancelledError:  # never started: its scope was closed first
            error = _never_ran(what, task)
            if not return_exceptions:
                raise error from None
            results.append(error)
    return results


def _never_ran(what: str, task: Task) -> ParallelQueryError:
    return ParallelQueryError(
        f"{task} never ran: its scope was closed before the task could start (its request "
        f"ended, or scope.close() was called from another thread, while {what} waited)."
    )


def timeout_error(what: str, seconds: float | None, unfinished: list[Task]) -> Timeout:
    """Return the Timeout `what` raises for `unfinished` tasks after `seconds`."""
    names = ", ".join(t.name for t in unfinished)
    return Timeout(
        f"{what} timed out after {seconds} s; unfinished, their statements cancelled: {names}."
    )
