"""Task: one callable run with the caller's context and a Session of its own."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from django.conf import settings
from django.utils import timezone, translation
from sqlalchemy import orm

from parallelq import affinity, lifecycle
from parallelq.cancel import cancel_statement
from parallelq.exceptions import ParallelQueryError

if TYPE_CHECKING:
    from parallelq.scope import Scope

logger = logging.getLogger("parallelq")

T = TypeVar("T")

_task_var: contextvars.ContextVar[Task | None] = contextvars.ContextVar(
    "parallelq.task", default=None
)

# What a task may not return: each would use the task's Session or connection
# after the task has ended the one and given back the other.
_BOUND_TO_SESSION = {
    orm.Session: "its Session, which ends with the task. Return what it loaded instead",
    orm.Query: "a Query, which would run on the task's ended Session. Return query.all()",
    sa.engine.result.FilterResult: "a {type}, which would read rows from a connection the "
    "task has given back. Return its rows: .all(), .first() or .one()",
}
# Every type _check_result() looks at, to let anything else through in one check.
_CHECKED = (sa.engine.Result, *_BOUND_TO_SESSION)


def current_task() -> Task | None:
    """Return the task running in this context, or None in the caller's own."""
    return _task_var.get()


class TaskFuture(Future[T]):
    """A Future whose cancel() also stops the task's running statement on the server."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self._task: Task | None = task  # dropped once settled, see Task._settle

    def cancel(self) -> bool:
        """Cancel the task: True if it had not started (it never will).

        A running task cannot be un-run, so this returns False for it, as
        Future.cancel() does; but its statement is cancelled on the server and
        it may run no other, so the Future soon holds that error.
        """
        if super().cancel():
            task = self._task
            if task is not None and task.batch is not None:
                task.batch.dropped(task)
            return True
        task = self._task
        if task is not None and not self.done():
            task.cancel()
        return False


class Locale:
    """The caller's active language and timezone, which Django keeps per thread.

    Django keeps them in asgiref Locals, which a new thread does not inherit:
    a task on a worker thread applies them where they differ from the thread's
    own. A task run in its caller's thread needs nothing: it runs in a copy of
    the caller's context, where asgiref (3.9.1 and later) keeps them, and what
    a sibling run there before it changed stayed in that sibling's copy.
    """

    def __init__(self) -> None:
        self.language = translation.get_language()
        self.timezone = timezone.get_current_timezone()
        self.defaults = (
            self.language == settings.LANGUAGE_CODE
            and self.timezone == timezone.get_default_timezone()
        )

    def applied(self) -> contextlib.AbstractContextManager[Any]:
        """Return a context manager that makes them a worker thread's while it is open.

        The task runs in its copy of the caller's context, but the asgiref
        Locals in that copy belong to the caller's thread: asgiref 3.13 hides
        them from any other thread, so the task starts from Django's defaults,
        and earlier releases show the caller's own values. Either way there is
        nothing to apply when the caller's are the defaults: callers check
        `defaults` first, since reading them (two asgiref lookups) would cost
        more than the rest of a task's setup.
        """
        overrides: list[contextlib.AbstractContextManager[Any]] = []
        if translation.get_language() != self.language:
            overrides.append(translation.override(self.language))
        if timezone.get_current_timezone() != self.timezone:
            overrides.append(timezone.override(self.timezone))
        if not overrides:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        for override in overrides:
            stack.enter_context(override)
        return stack


class Batch:
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
        self._dropped: set[Task] = set()  # a cancelled Future's cancel() says True again
        self._lock = threading.Lock()

    def settled(self, ok: bool) -> None:
        """Count a task that settled; `ok`: it returned rather than raised."""
        with self._lock:
            self._left -= 1
            if not ok and self._fail_fast:
                self.failed = True
            if self.failed or self._left == 0:
                self.changed.set()

    def dropped(self, task: Task) -> None:
        """Count `task`, whose Future was cancelled before it started: it never settles."""
        with self._lock:
            if task in self._dropped:
                return
            self._dropped.add(task)
            self._left -= 1
            if self._left == 0:
                self.changed.set()


class Task:
    """One callable, its Future, the caller's context, and the Session it opens."""

    def __init__(
        self,
        scope: Scope,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None = None,
        locale: Locale | None = None,
        index: int | None = None,
    ) -> None:
        self.scope = scope
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self._name, self._index = name, index  # see name
        self.future: TaskFuture[Any] = TaskFuture(self)
        self.context: contextvars.Context | None = contextvars.copy_context()
        self.locale = locale or Locale()  # parallel() reads it once for all its tasks
        self.session: orm.Session | None = None
        self.started = False  # handed to a worker, queued, or run inline; see Scope.claim
        self.cancelled = False
        self.siblings: list[Task] = []  # cancelled when this task fails
        self.batch: Batch | None = None  # told when the task settles
        self.error: BaseException | None = None  # what it raised, once settled
        self.failed_at = 0.0  # time.monotonic() when it raised: the first error wins
        self.cpu_seconds = 0.0  # CPU time of its thread while it ran
        self.cpu: int | None = None  # the core a worker runs it on, see affinity.py
        self._lock = threading.Lock()
        self._dbapi_connection: Any = None
        self._ending = False
        self.waiting_in: Any = None  # the pool's queue while it waits for a connection (pool.py)

    @property
    def name(self) -> str:
        """Return what messages call the task: its label, or its callable's name.

        Made on first use, which is rare: only messages and logs use it.
        """
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
        """Return the task's own Session, opening it on first use."""
        if self.session is None:
            self.check_cancelled()
            engine = self.scope.engine
            self.session = lifecycle.new_session(lifecycle.TaskSession, engine, task=self)
            self.scope.add_session(self.session, self)
        return self.session

    def run(self) -> None:
        """Run the task on a worker thread and settle its Future."""
        if not self.future.set_running_or_notify_cancel():
            return
        affinity.follow(self.cpu)
        self.scope.task_started()
        started, cpu = time.perf_counter(), time.thread_time()
        context, self.context = self.context, None  # run once; see _end_session on cycles
        assert context is not None
        ok, outcome = context.run(self._call, True)
        self.cpu_seconds = time.thread_time() - cpu
        self.scope.task_finished(time.perf_counter() - started)
        self._settle(ok, outcome)
        if not ok and self.siblings:
            # Fail fast from here, before this worker can start a queued sibling,
            # and after settling, so that this error is known to come first.
            self.scope.cancel([t for t in self.siblings if t is not self])

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
        started, cpu = time.perf_counter(), time.thread_time()
        ok, outcome = contextvars.copy_context().run(self._call)
        self.cpu_seconds = time.thread_time() - cpu
        if counted:
            self.scope.task_finished(time.perf_counter() - started)
        self._settle(ok, outcome)

    def _call(self, on_worker: bool = False) -> tuple[bool, Any]:
        token = _task_var.set(self)
        try:
            if on_worker and not self.locale.defaults:  # see Locale.applied()
                with self.locale.applied():
                    return True, self._check_result(self.fn(*self.args, **self.kwargs))
            return True, self._check_result(self.fn(*self.args, **self.kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the Future
            self.failed_at = time.monotonic()
            if isinstance(exc, sa.exc.TimeoutError):
                _explain_pool_timeout(exc, self.name)
            return False, exc
        finally:
            _task_var.reset(token)
            self._end_session()

    def _check_result(self, result: Any) -> Any:
        if not isinstance(result, _CHECKED):
            return result
        if isinstance(result, sa.engine.Result) and getattr(result, "returns_rows", True):
            # Read every row now, while the task still holds the connection; the
            # caller gets a Result of its own over them.
            return result.freeze()()
        for kind, why in _BOUND_TO_SESSION.items():
            if isinstance(result, kind):
                raise ParallelQueryError(
                    f"Task {self.name!r} returned {why.format(type=type(result).__name__)}."
                )
        return result

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
            self._ending = True
        if self.session is not None:
            try:
                lifecycle.end_session(self.session, self)
            except Exception:
                # The task's own outcome still reaches the caller.
                logger.exception("Ending the Session of task %r failed", self.name)
            finally:
                self.scope.discard_session(self.session)  # closed either way
                # The Session and the task refer to each other: dropping both ends
                # lets reference counting free them, with no wait for the cyclic GC.
                self.session = None

    def hold_connection(self, dbapi_connection: Any) -> None:
        """Record the DBAPI connection the task's Session holds now (None: none)."""
        with self._lock:
            self._dbapi_connection = dbapi_connection

    def cancel(self) -> None:
        """Cancel the statement the task runs on the server, and refuse it any more.

        A task waiting for a connection stops waiting, and raises as it would
        before its next statement.
        """
        with self._lock:
            self.cancelled = True
            if not self._ending and self._dbapi_connection is not None:
                cancel_statement(self._dbapi_connection)
        # Read after `cancelled` is set: a wait that begins later sees that instead.
        waiting_in = self.waiting_in
        if waiting_in is not None:
            waiting_in.wake()

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


def _explain_pool_timeout(exc: sa.exc.TimeoutError, name: str) -> None:
    # Python 3.11+: the note is printed with the traceback; the type stays SQLAlchemy's.
    if hasattr(exc, "add_note"):
        exc.add_note(
            f"parallelq: task {name!r} found no free connection in the pool within "
            "pool_timeout. Every request's own Session and every running task holds one; "
            "raise ENGINE_OPTIONS pool_size, or lower MAX_WORKERS (see check parallelq.W002)."
        )
