"""aparallel(): parallel() for async code, awaited while the event loop runs on.

The tasks run on the worker threads as parallel()'s do; the event loop's thread
only hands them over and is woken once they are done. It never runs a task, nor
waits for one, nor talks to the database: cancelling a running statement opens a
connection to the server, so that is done from a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any, overload

from parallelq.calls import Batch, check_call, collect, make_tasks
from parallelq.cancel import cancel_until_done
from parallelq.exceptions import ParallelQueryError
from parallelq.scoping import TEARDOWN_GRACE, Scope, current_scope
from parallelq.task import Task, current_task


@overload
async def aparallel(
    *callables: Callable[[], Any], timeout: float | None = ..., return_exceptions: bool = ...
) -> list[Any]: ...
# As for parallel(): a dict unpacked into aparallel(**panels) could hold any key.
@overload
async def aparallel(**named: Callable[[], Any]) -> dict[str, Any]: ...
@overload
async def aparallel(*, timeout: float | None, **named: Callable[[], Any]) -> dict[str, Any]: ...
@overload
async def aparallel(*, return_exceptions: bool, **named: Callable[[], Any]) -> dict[str, Any]: ...
@overload
async def aparallel(
    *, timeout: float | None = ..., return_exceptions: bool = ..., **named: Callable[[], Any]
) -> dict[str, Any]: ...
async def aparallel(  # type: ignore[misc]  # the three above: see parallel()'s
    *callables: Callable[[], Any],
    timeout: float | None = None,
    return_exceptions: bool = False,
    **named: Callable[[], Any],
) -> list[Any] | dict[str, Any]:
    """Run each callable in a worker thread with its own Session; await their results.

    Takes parallel()'s arguments, returns what it returns (a list for positional
    callables, a dict for named ones) and raises its errors, but the event loop
    runs on meanwhile: no task runs in its thread. Tasks that find no free worker
    thread wait for one (beyond MAX_WORKERS, in the scope's queue).

    Raises:
        asyncio.CancelledError: the awaiting coroutine was cancelled (a client
            that went away, asyncio.timeout()). Its tasks not started yet are
            not run, and the statements of running ones are cancelled.
        Exception: the first exception a task raised, as parallel() does.
        Timeout: the tasks did not all finish within `timeout`.
        ParallelQueryError: awaited inside a parallelq task; or the scope was
            closed while a task waited to start.
        NoScopeError: no request or scope() is active.
        TypeError: the arguments parallel() refuses.
    """
    check_call("aparallel()", callables, named, timeout, return_exceptions)
    if not (named or callables):
        return {} if named else []
    active = current_scope("aparallel()")
    active.check_open("aparallel()")
    if current_task() is not None:
        raise ParallelQueryError(
            "aparallel() was awaited inside a parallelq task, whose tasks would wait for "
            "worker threads it may hold. Call parallel() there: it runs them in the task's thread."
        )
    limit = active.timeout if timeout is None else timeout
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    batch = Batch(
        len(named or callables),
        fail_fast=not return_exceptions,
        caller_runs=False,
        notify=functools.partial(_wake, loop, done),
    )
    tasks = make_tasks(active, callables, named, batch)
    cancel = functools.partial(_cancel, active)
    try:
        try:
            for task in tasks:
                active.dispatch(task, caller_runs=False)
            await asyncio.wait([done], timeout=limit)  # all done, or (fail-fast) one failed
        except BaseException:  # cancelled, or the scope closed while tasks were handed over
            cancel(tasks)
            raise
        results = collect(
            "aparallel()", tasks, return_exceptions=return_exceptions, limit=limit, cancel=cancel
        )
    finally:
        for task in tasks:
            task.siblings = []  # each refers to the others: let them be freed without the GC
    return dict(zip(named, results, strict=True)) if named else results


def _wake(loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    # Called once, by the thread that settled the batch's last task or first failure.
    # A loop that is closed raises RuntimeError: nothing awaits the results any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_set_done, done)


def _set_done(done: asyncio.Future[None]) -> None:
    if not done.done():  # notify is called once, but a Future must be set only once
        done.set_result(None)


def _cancel(active: Scope, tasks: list[Task]) -> None:
    """Cancel `tasks` without blocking the event loop.

    Those not started are dropped here, so they never run. The statements of
    running ones are cancelled from a thread of its own, again and again until
    the tasks return (Scope.close() does the same): psycopg2's cancel() opens a
    connection to the server, which the loop must not wait for, and a thread of
    its own is never busy with other work, so every task soon gives its
    connection back, whether or not the request's teardown ever comes.
    """
    active.cancel([task for task in tasks if task.drop()])  # sends nothing: they never ran
    running = [task for task in tasks if not task.future.done()]
    if running:
        stop = functools.partial(cancel_until_done, running, TEARDOWN_GRACE, "they were cancelled")
        threading.Thread(target=stop, name="parallelq-cancel", daemon=True).start()
