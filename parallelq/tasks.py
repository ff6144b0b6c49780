"""parallel() and submit(): run callables in worker threads, each with its own Session."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from typing import Any, ParamSpec, TypeVar, overload

from django import db
from django.utils import timezone, translation
from sqlalchemy import orm

from parallelq import lifecycle
from parallelq.cancel import cancel_statement
from parallelq.exceptions import ParallelQueryError, Timeout
from parallelq.scope import Scope, current_scope

logger = logging.getLogger("parallelq")

P = ParamSpec("P")
T = TypeVar("T")

_task_var: contextvars.ContextVar[Task | None] = contextvars.ContextVar(
    "parallelq.task", default=None
)


class Task:
    """One callable, its Future, the caller's context, and the Session it opens."""

    def __init__(
        self,
        scope: Scope,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None = None,
    ) -> None:
        self.scope = scope
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.name = name or str(getattr(fn, "__qualname__", None) or repr(fn))
        self.future: Future[Any] = Future()
        self.context = contextvars.copy_context()
        # Django keeps these in asgiref Locals, which a new thread does not inherit.
        self.language = translation.get_language()
        self.timezone = timezone.get_current_timezone()
        self.session: orm.Session | None = None
        self._lock = threading.Lock()
        self._dbapi_connection: Any = None
        self._ending = False
        self.cancelled = False
        self.started = False  # handed to a worker, queued, or run inline
        self.siblings: list[Task] = []  # cancelled when this task fails

    def __repr__(self) -> str:
        return f"<parallelq task {self.name}>"

    def get_session(self) -> orm.Session:
        """Return the task's own Session, opening it on first use."""
        if self.session is None:
            self.check_cancelled()
            self.session = lifecycle.new_session(lifecycle.TaskSession, task=self)
            self.scope.add_session(self.session, f"Task {self.name!r}")
        return self.session

    def run(self) -> None:
        """Run the task on a worker thread and settle its Future."""
        if not self.future.set_running_or_notify_cancel():
            self.scope.release(self)
            return
        self.scope.task_started()
        started = time.perf_counter()
        ok, outcome = self.context.run(self._call)
        if not ok and self.siblings:
            # Fail fast from here, before this worker can start a queued sibling.
            self.scope.cancel([t for t in self.siblings if t is not self])
        db.close_old_connections()  # Django connections the task opened in this thread.
        self.scope.task_finished(time.perf_counter() - started)
        self._settle(ok, outcome)
        self.scope.release(self)

    def run_inline(self, *, counted: bool) -> None:
        """Run the task in the calling thread, as nested tasks and ENABLED=False do.

        Args:
            counted: add the task to the scope's stats; a nested task's time
                is already part of the task it runs in.
        """
        if not self.future.set_running_or_notify_cancel():
            return
        if counted:
            self.scope.task_started()
        started = time.perf_counter()
        ok, outcome = contextvars.copy_context().run(self._call)
        if counted:
            self.scope.task_finished(time.perf_counter() - started)
        self._settle(ok, outcome)

    def _call(self) -> tuple[bool, Any]:
        token = _task_var.set(self)
        try:
            with translation.override(self.language), timezone.override(self.timezone):
                return True, self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the Future
            return False, exc
        finally:
            _task_var.reset(token)
            self._end_session()

    def _settle(self, ok: bool, outcome: Any) -> None:
        if ok:
            self.future.set_result(outcome)
        else:
            self.future.set_exception(outcome)

    def _end_session(self) -> None:
        with self._lock:
            self._ending = True
        if self.session is not None:
            try:
                lifecycle.end_session(self.session, f"Task {self.name!r}")
            except Exception:
                # The task's own outcome still reaches the caller.
                logger.exception("Ending the Session of task %r failed", self.name)
            else:
                self.scope.discard_session(self.session)

    def hold_connection(self, dbapi_connection: Any) -> None:
        """Record the DBAPI connection the task's Session holds now (None: none)."""
        with self._lock:
            self._dbapi_connection = dbapi_connection

    def cancel(self) -> None:
        """Cancel the statement the task runs on the server, and refuse it any more."""
        with self._lock:
            self.cancelled = True
            if not self._ending and self._dbapi_connection is not None:
                cancel_statement(self._dbapi_connection)

    def check_cancelled(self) -> None:
        """Raise ParallelQueryError if the task was cancelled.

        Checked before each statement, so that a task cancelled before or
        between statements stops at its next one.
        """
        if self.cancelled:
            raise ParallelQueryError(
                f"Task {self.name!r} was cancelled: a sibling task failed, its timeout "
                "passed, or its request ended."
            )


def current_task() -> Task | None:
    """Return the task running in this context, or None in the caller's own."""
    return _task_var.get()


def submit(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """Start ``fn(*args, **kwargs)`` in a worker thread with its own Session.

    Returns:
        A Future for the result. It starts at once if the scope runs fewer than
        MAX_WORKERS tasks, otherwise as soon as one of them ends.

    Raises:
        NoScopeError: no request or scope() is active.
        TypeError: fn is not callable.
    """
    if not callable(fn):
        raise TypeError(f"submit() needs a callable, not {type(fn).__name__}.")
    task = Task(current_scope("submit()"), fn, args, kwargs)
    _start(task)
    return task.future


def _start(task: Task) -> None:
    nested = current_task() is not None
    if nested or not task.scope.enabled:
        # A task waiting on tasks of its own could take every worker and wait
        # forever, so nested work runs here, in the worker it came from.
        task.started = True
        task.run_inline(counted=not nested)
    else:
        task.scope.start(task)


@overload
def parallel(
    *callables: Callable[[], Any], timeout: float | None = ..., return_exceptions: bool = ...
) -> list[Any]: ...
@overload
def parallel(
    *, timeout: float | None = ..., return_exceptions: bool = ..., **named: Callable[[], Any]
) -> dict[str, Any]: ...
def parallel(
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
        NoScopeError: no request or scope() is active.
        TypeError: an argument is not callable, or callables are both
            positional and named.
    """
    if callables and named:
        raise TypeError("parallel() takes callables either positionally or by name, not both.")
    labelled = _label(named) if named else _number(callables)
    if not labelled:
        return {} if named else []
    active = current_scope("parallel()")
    tasks = [Task(active, fn, (), {}, name=label) for label, fn in labelled.items()]
    if not return_exceptions:
        for task in tasks:
            task.siblings = tasks
    for i, task in enumerate(tasks):
        _start(task)
        if not return_exceptions and _failed(task.future):
            # Only inline tasks are done this soon: the rest are not run.
            active.cancel(tasks[i + 1 :])
            break
    results = _gather(
        active, tasks, active.timeout if timeout is None else timeout, return_exceptions
    )
    return dict(zip(labelled, results, strict=True)) if named else results


def _label(named: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    for name, fn in named.items():
        if not callable(fn):
            raise TypeError(
                f"parallel() argument {name!r} must be a callable taking no arguments, "
                f"not {type(fn).__name__}."
            )
    return named


def _number(callables: tuple[Any, ...]) -> dict[str, Callable[[], Any]]:
    for i, fn in enumerate(callables):
        if not callable(fn):
            raise TypeError(
                f"parallel() positional argument {i} must be a callable taking no "
                f"arguments, not {type(fn).__name__}."
            )
    return {
        f"#{i} {getattr(fn, '__qualname__', '')}".rstrip(): fn for i, fn in enumerate(callables)
    }


def _failed(future: Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is not None


def _gather(
    active: Scope, tasks: list[Task], timeout: float | None, return_exceptions: bool
) -> list[Any]:
    futures = [t.future for t in tasks]
    when = "ALL_COMPLETED" if return_exceptions else FIRST_EXCEPTION
    done, not_done = wait(futures, timeout=timeout, return_when=when)
    if not_done:
        active.cancel([t for t in tasks if t.future in not_done])
    failures = [f.exception() for f in futures if _failed(f)]
    if failures and not return_exceptions:
        raise failures[0]  # type: ignore[misc]
    if not_done:
        unfinished = ", ".join(t.name for t in tasks if t.future in not_done)
        raise Timeout(f"parallel() timed out after {timeout} s; unfinished: {unfinished}.")
    return [f.exception() if _failed(f) else f.result() for f in futures]
