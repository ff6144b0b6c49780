"""Task: one callable with the caller's context; it alone settles its Future.

A task is claimed once, by whoever runs it (a worker thread, or the caller),
or cancelled before that, and never both: claim(), run(), cancel().
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm

from parallelq import pool, sessions, signals
from parallelq.cancel import cancel_statement
from parallelq.context import Locale
from parallelq.exceptions import ParallelQueryError
from parallelq.results import checked
from parallelq.routing import PRIMARY, Route

if TYPE_CHECKING:
    from parallelq.scoping import Scope
    from parallelq.timeline import TaskRecord

logger = logging.getLogger("parallelq")

T = TypeVar("T")

_task_var: contextvars.ContextVar[Task | None] = contextvars.ContextVar(
    "parallelq.task", default=None
)


def current_task() -> Task | None:
    """Return the task running in this context, or None in the caller's own."""
    return _task_var.get()


class Batch(Protocol):
    """Who waits for a group of tasks (calls.py): told as each one settles or is dropped.

    `caller_runs`: the caller runs the tasks no worker took (parallel(), not aparallel()).
    """

    caller_runs: bool

    def settled(self, ok: bool) -> None: ...

    def dropped(self) -> None: ...


class TaskFuture(Future[T]):
    """A Future whose cancel() also stops the task's running statements on the server."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self._task: Task | None = task  # dropped once settled, see Task._settle

    def cancel(self) -> bool:
        """Cancel the task: True if it had not started (it never will).

        A running task cannot be un-run, so this returns False for it, as
        Future.cancel() does; but its statements are cancelled on the server
        and it may run no other, so the Future soon holds that error.
        """
        task = self._task
        if task is None:
            return super().cancel()
        return task.cancel()


class Task:
    """One callable, its Future, the caller's context, and the Session it opens."""

    def __init__(
        self,
        scope: Scope,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        index: int | None = None,
        locale: Locale | None = None,
        batch: Batch | None = None,
    ) -> None:
        self.scope = scope
        self.fn, self.args, self.kwargs = fn, args, kwargs or {}
        self._name, self._index = name, index  # see name
        self.future: TaskFuture[Any] = TaskFuture(self)
        self.context: contextvars.Context | None = contextvars.copy_context()
        self.locale = locale or Locale()  # parallel() reads it once for all its tasks
        self.batch = batch  # told when the task settles
        self.route: Route = PRIMARY  # where its Session goes: see calls.make_tasks()
        self.siblings: list[Task] = []  # cancelled when this task fails
        self.session: orm.Session | None = None
        self.error: BaseException | None = None  # what it raised, once settled
        self.failed_at = 0.0  # time.monotonic() when it raised: the first error wins
        self.record: TaskRecord | None = None  # its timeline record, once it ran
        self.started = False  # claimed to run, or cancelled before it was
        self.cancelled = False
        self.wake: Callable[[], None] | None = None  # see pool.Borrower
        self._lock = threading.Lock()
        self._connections: list[Any] = []  # DBAPI connections it holds
        self._ended = False  # its callable returned: it opens no Session any more

    @property
    def name(self) -> str:
        """Return what messages call the task: its label, or its callable's name."""
        if self._name is None:
            qualname = getattr(self.fn, "__qualname__", None)
            if self._index is not None:  # parallel()'s positional callables
                self._name = f"#{self._index} {qualname or ''}".rstrip()
            else:
                self._name = str(qualname or repr(self.fn))
        return self._name

    def __repr__(self) -> str:
        return f"<parallelq task {self.name}>"

    def __str__(self) -> str:
        return f"Task {self.name!r}"

    def get_session(self) -> orm.Session:
        """Return the task's own Session, opening it on first use.

        Raises:
            NoScopeError: the task's scope is closed (a copy of its context
                outlived it).
            ParallelQueryError: the task was cancelled, or has ended.
        """
        if self.session is None:
            if self._ended:
                self.scope.check_open("parallelq.session")
                raise ParallelQueryError(
                    f"{self} has ended, and its Session with it: a copy of its context "
                    "(a thread or executor it started) outlived it. Finish that work "
                    "inside the task."
                )
            self.check_cancelled()
            session = self.route.new_session(self.scope.bind, self)
            self.scope.add_session(session, self)  # NoScopeError once the scope is closed
            self.session = session
        return self.session

    def claim(self) -> bool:
        """Mark the task started; False if it was, or was cancelled first.

        Whoever claims the task runs it, and so settles its Future.
        """
        with self._lock:
            if self.started:
                return False
            self.started = True
        return self.future.set_running_or_notify_cancel()

    def run(self, *, on_worker: bool) -> None:
        """Run the claimed task in this thread and settle its Future.

        Args:
            on_worker: on a worker thread, in the context copied when the task
                was made; otherwise in a copy of the calling thread's own.
        """
        context, self.context = self.context, None  # run once; see _end_session on cycles
        if not on_worker:
            context = contextvars.copy_context()
        assert context is not None
        # A nested task's time is already part of the task it runs in.
        counted = on_worker or _task_var.get() is None
        if counted:
            self.scope.stats.task_started()
        started = time.perf_counter()
        ok, outcome = context.run(self._call, on_worker)
        seconds = time.perf_counter() - started
        if counted:
            self.scope.stats.task_finished(seconds)
        error = None if ok else outcome
        try:
            self.record = self.scope.timeline.add(self.name, started, seconds, error)
            # In the task's context, so that a receiver's span or log record joins its request's.
            context.run(signals.announce, self.scope, self.record)
        finally:
            self._settle(ok, outcome)
        if not ok and self.siblings:
            # Fail fast from here, before this thread can start a queued sibling,
            # and after settling, so that this error is known to come first.
            self.scope.cancel([t for t in self.siblings if t is not self])

    def _call(self, on_worker: bool) -> tuple[bool, Any]:
        _task_var.set(self)  # in the task's own context, which ends with it
        sessions.current.set(self.get_session)
        pool.borrower.set(self)
        try:
            if on_worker and not self.locale.defaults:  # see Locale.applied()
                with self.locale.applied():
                    return True, checked(self, self.fn(*self.args, **self.kwargs))
            return True, checked(self, self.fn(*self.args, **self.kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the Future
            self.failed_at = time.monotonic()
            if isinstance(exc, sa.exc.TimeoutError):
                pool.explain_timeout(exc, self.name)
            return False, exc
        finally:
            self._end_session()

    def _settle(self, ok: bool, outcome: Any) -> None:
        self.future._task = None  # a settled Future has nothing left to cancel
        if ok:
            self.future.set_result(outcome)
        else:
            self.error = outcome  # before the Future: whoever sees it done sees this
            self.future.set_exception(outcome)
        if self.batch is not None:
            self.batch.settled(ok)

    def _end_session(self) -> None:
        with self._lock:
            self._ended = True  # no cancel reaches its connection from here on
        if self.session is not None:
            try:
                sessions.end_session(self.session, self)
            except Exception:
                # The task's own outcome still reaches the caller.
                logger.exception("Ending the Session of task %r failed", self.name)
            finally:
                self.scope.discard_session(self.session)  # closed either way
                # The Session and the task refer to each other: dropping both ends
                # lets reference counting free them, with no wait for the cyclic GC.
                self.session = None

    def lent(self, dbapi_connection: Any) -> None:
        """Note that the task holds `dbapi_connection` (pool.Borrower)."""
        with self._lock:
            self._connections.append(dbapi_connection)

    def returned(self, dbapi_connection: Any) -> None:
        """Note that `dbapi_connection` went back to the pool (pool.Borrower)."""
        with self._lock:
            if dbapi_connection in self._connections:
                self._connections.remove(dbapi_connection)

    def cancel(self) -> bool:
        """Cancel the task: True if it never started, and never will.

        A running task's statements are cancelled on the server and it may
        run no other: a wait for a connection ends, and its next statement
        raises.
        """
        with self._lock:
            self.cancelled = True
            unstarted = not self.started
            self.started = True
            if not unstarted and not self._ended:
                for dbapi_connection in self._connections:
                    cancel_statement(dbapi_connection)
        if unstarted:
            self._dropped()
            return True
        wake = self.wake  # read after `cancelled` is set: a later wait sees that instead
        if wake is not None:
            wake()
        return False

    def drop(self) -> bool:
        """Cancel the task if it has not started (it never will); False if it has.

        Unlike cancel(), this sends nothing to the server, so an event loop may call it.
        """
        with self._lock:
            if self.started:
                return False
            self.cancelled = self.started = True
        self._dropped()
        return True

    def _dropped(self) -> None:
        self.future._task = None
        Future.cancel(self.future)
        self.future.set_running_or_notify_cancel()
        if self.batch is not None:
            self.batch.dropped()

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
