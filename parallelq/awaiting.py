"""aparallel(): parallel() for async code, awaited while the event loop runs on.

The tasks run on the worker threads as parallel()'s do; the event loop's thread
only hands them over and is woken once they are done. It never runs a task, nor
waits for one, nor talks to the database: cancelling a running statement opens a
connection to the server, so that is done from a thread of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

import sqlalchemy as sa

from parallelq.calls import Batch, check_call, collect, make_tasks
from parallelq.cancel import cancel_until_done
from parallelq.exceptions import ParallelQueryError
from parallelq.replicas import Using
from parallelq.routing import Route, open_route
from parallelq.scoping import TEARDOWN_GRACE, Scope, current_scope
from parallelq.task import Task, current_task

T = TypeVar("T")


@overload
async def aparallel(
    *callables: Callable[[], Any],
    timeout: float | None = ...,
    return_exceptions: bool = ...,
    consistent: bool = ...,
    using: Using = ...,
) -> list[Any]: ...
@overload
async def aparallel(
    *,
    timeout: float | None = ...,
    return_exceptions: bool = ...,
    consistent: bool = ...,
    using: Using = ...,
    **named: Callable[[], Any],
) -> dict[str, Any]: ...
# As for parallel(): a dict unpacked into aparallel(**panels) could hold any key.
@overload
async def aparallel(
    *,
    timeout: float | None | Callable[[], Any] = ...,
    return_exceptions: bool | Callable[[], Any] = ...,
    consistent: bool | Callable[[], Any] = ...,
    using: Using | Callable[[], Any] = ...,
    **named: Callable[[], Any],
) -> dict[str, Any]: ...
async def aparallel(  # type: ignore[misc]  # the last one above: see parallel()'s
    *callables: Callable[[], Any],
    timeout: float | None = None,
    return_exceptions: bool = False,
    consistent: bool = False,
    using: Using = "primary",
    **named: Callable[[], Any],
) -> list[Any] | dict[str, Any]:
    """Run each callable in a worker thread with its own Session; await their results.

    Takes parallel()'s arguments, returns what it returns (a list for positional
    callables, a dict for named ones) and raises its errors, but the event loop
    runs on meanwhile: no task runs in its thread. Tasks that find no free worker
    thread wait for one (beyond MAX_WORKERS, in the scope's queue). With
    consistent=True the snapshot is exported, and closed, off the loop too.

    Raises:
        asyncio.CancelledError: the awaiting coroutine was cancelled (a client
            that went away, asyncio.timeout()). Its tasks not started yet are
            not run, and the statements of running ones are cancelled; then
            the call's snapshot is closed.
        Exception: the first exception a task raised, as parallel() does.
        Timeout: the tasks did not all finish within `timeout`.
        ParallelQueryError: awaited inside a parallelq task; or the scope was
            closed while a task waited to start.
        NoScopeError: no request or scope() is active.
        TypeError: the arguments parallel() refuses.
    """
    check_call("aparallel()", callables, named, timeout, return_exceptions, consistent, using)
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
    started = time.monotonic()
    open_it = functools.partial(
        open_route, active, consistent=consistent, using=using, timeout=limit
    )
    # Exporting a snapshot waits for a connection and the server: not on the loop.
    # The scope's bind is read here first: a test's shared one is this thread's.
    exports = consistent and isinstance(active.bind, sa.Engine)
    route = await _off_loop(open_it, cleanup=Route.close) if exports else open_it()
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    tasks: list[Task] = []
    cancel = functools.partial(_cancel, active)
    try:
        batch = Batch(
            len(named or callables),
            fail_fast=not return_exceptions,
            caller_runs=False,
            notify=functools.partial(_wake, loop, done),
        )
        tasks = make_tasks(active, callables, named, batch, route)
        try:
            for task in tasks:
                active.dispatch(task, caller_runs=False)
            left = None if limit is None else max(0.0, limit - (time.monotonic() - started))
            await asyncio.wait([done], timeout=left)  # all done, or (fail-fast) one failed
        except BaseException:  # cancelled, or the scope closed while tasks were handed over
            cancel(tasks)
            raise
        results = collect(
            "aparallel()", tasks, return_exceptions=return_exceptions, limit=limit, cancel=cancel
        )
    except BaseException:
        if route.exported:  # once the tasks collect() or cancel() stopped have returned
            _start(functools.partial(_close_after, route, tasks))
        raise
    finally:
        for task in tasks:
            task.siblings = []  # each refers to the others: let them be freed without the GC
    if route.exported:
        await _off_loop(route.close)  # its connection is back in the pool when the call returns
    return dict(zip(named, results, strict=True)) if named else results


def _wake(loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
    # Called once, by the thread that settled the batch's last task or first failure.
    # A loop that is closed raises RuntimeError: nothing awaits the results any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_set_done, done)


def _set_done(done: asyncio.Future[None]) -> None:
    if not done.done():  # notify is called once, but a Future must be set only once
        done.set_result(None)


async def _off_loop(fn: Callable[[], T], cleanup: Callable[[T], None] | None = None) -> T:
    """Return fn(), run in a thread of its own, which the loop need not wait for.

    A coroutine cancelled meanwhile does not stop fn: it runs to its end, and
    `cleanup`, if given, is then passed what it returned, off the loop too.
    """
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - raised in the awaiting coroutine
            future.set_exception(exc)

    _start(run)
    try:
        # shield(): cancelling the coroutine must not cancel `future`, whose result is needed.
        return await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        if cleanup is not None:
            future.add_done_callback(functools.partial(_clean_up, cleanup))
        raise


def _clean_up(cleanup: Callable[[T], None], future: concurrent.futures.Future[T]) -> None:
    # In fn's thread once it returns, or the loop's if it had already: so in a thread.
    if future.exception() is None:
        _start(functools.partial(cleanup, future.result()))


def _close_after(route: Route, tasks: list[Task]) -> None:
    """Close `route`'s snapshot once `tasks`, cancelled, have returned, or TEARDOWN_GRACE passed."""
    concurrent.futures.wait([task.future for task in tasks], timeout=TEARDOWN_GRACE)
    route.close()


def _start(fn: Callable[[], None]) -> None:
    threading.Thread(target=fn, name="parallelq-snapshot", daemon=True).start()


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
