"""Scope: one request's (or one scope() block's) Sessions, task queue, cancel and close."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections import deque
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

import sqlalchemy as sa
from django import db
from sqlalchemy import orm

from parallelq import executor, sessions, timeline
from parallelq.cancel import cancel_until_done
from parallelq.conf import get_settings
from parallelq.engine import get_bind, has_idle_connection, shares_connection
from parallelq.exceptions import NoScopeError
from parallelq.stats import Stats

if TYPE_CHECKING:
    from parallelq.snapshot import Snapshot
    from parallelq.task import Task

# How long teardown waits for tasks still running after their statements were
# cancelled; a task stuck in Python code past it ends its Session itself.
TEARDOWN_GRACE = 5.0

_scope_var: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "parallelq.scope", default=None
)


class Scope:
    """The Sessions and tasks of one request or one ``scope()`` block.

    At most MAX_WORKERS of its tasks run at a time, its caller's included; the
    rest wait in its own queue, and the thread that ends a task starts the next.
    """

    def __init__(self, *, from_request: bool = False) -> None:
        conf = get_settings()
        self.from_request = from_request
        # ENABLED=False: tasks that may not run in their caller's thread (aparallel()'s,
        # submit()'s on an event loop's thread) run on workers, one at a time.
        self.max_workers = conf.MAX_WORKERS if conf.ENABLED else 1
        self.pool_capacity = conf.pool_capacity
        self.enabled = conf.ENABLED and not shares_connection()  # its tasks run in its thread
        self.timeout = conf.TIMEOUT
        self.stats = Stats()
        self.timeline = timeline.Timeline()  # opened now: its records' start is from here
        self.closed = False
        self._lock = threading.Lock()
        self._main: orm.Session | None = None
        self._bind: sa.Engine | sa.Connection | None = None
        self._sessions = sessions.Registry()
        self._pending: deque[Task] = deque()
        self._running: set[Task] = set()
        self._snapshots: set[Snapshot] = set()  # of calls still running: see hold()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._running)} running"
        return f"<parallelq.Scope {state}, {self.stats.tasks} tasks>"

    @property
    def bind(self) -> sa.Engine | sa.Connection:
        """Return what the scope's Sessions bind to: get_bind()'s when first asked."""
        if self._bind is None:
            self._bind = get_bind()
        return self._bind

    def get_session(self) -> orm.Session:
        """Return the scope's own Session, used by the thread that opened the scope."""
        if self._main is None:
            self.check_open("parallelq.session")
            main = sessions.new_session(sessions.RequestSession, self.bind)
            self.add_session(main, f"the {'request' if self.from_request else 'scope'}'s session")
            self._main = main
        return self._main

    session = property(get_session)

    @property
    def open_sessions(self) -> int:
        """Return how many Sessions the scope holds: its own, and those of running tasks."""
        return len(self._sessions)

    def check_open(self, what: str) -> None:
        """Raise NoScopeError if the scope has been torn down; `what` names who asked."""
        if self.closed:
            raise NoScopeError(
                f"{what} was used after its parallelq scope was torn down. "
                "Finish the work inside the request or the `with parallelq.scope():` block."
            )

    def add_session(self, session: orm.Session, owner: object) -> None:
        """Register `session` to be ended at teardown; logs call it str(owner).

        Raises:
            NoScopeError: the scope is closed; `session` is closed here.
        """
        with self._lock:
            if not self.closed:
                self._sessions.add(session, owner)
                return
        session.close()
        self.check_open("parallelq.session")

    def discard_session(self, session: orm.Session) -> None:
        """Forget `session`, which its task has ended itself."""
        self._sessions.discard(session)

    def hold(self, snapshot: Snapshot) -> None:
        """Close `snapshot` at teardown unless release() hands it back; NoScopeError if closed."""
        with self._lock:
            if not self.closed:
                self._snapshots.add(snapshot)
                return
        snapshot.close()
        self.check_open("consistent=True")

    def release(self, snapshot: Snapshot) -> bool:
        """Forget `snapshot`: True if the caller is to close it, False if teardown has."""
        with self._lock:
            held, self._snapshots = snapshot in self._snapshots, self._snapshots - {snapshot}
        return held

    def dispatch(self, task: Task, *, caller_runs: bool) -> None:
        """Run `task` on a worker thread, or queue it behind MAX_WORKERS running ones.

        With `caller_runs` (parallel()), a task that finds no free worker thread or
        idle connection is queued for its caller to take(); otherwise (submit()) it
        waits in the executor for a worker thread.
        """
        workers = executor.current()
        with self._lock:
            self.check_open("parallel()" if caller_runs else "submit()")
            full = len(self._running) >= self.max_workers
            if full or (caller_runs and not self._room_locked(workers)):
                self._pending.append(task)
                return
            self._running.add(task)
        workers.submit(functools.partial(self._work, task), reserved=caller_runs)

    def _room_locked(self, workers: executor.Executor) -> bool:
        # Called with self._lock held; reserves a worker thread if it returns True.
        idle = has_idle_connection(self.bind, self.pool_capacity, workers.starting)
        return idle and workers.reserve()

    def take(self, batch: Collection[Task]) -> Task | None:
        """Return a queued task of `batch` for the caller to run now, then to give back: done().

        Queued tasks of `batch` go to free worker threads first; the caller gets the
        first of the rest. None while MAX_WORKERS tasks run: their threads start the
        queued ones as they finish.
        """
        if not self._pending:  # every task went to a worker: the common case when idle
            return None
        workers = executor.current()
        handed: list[Task] = []
        chosen = None
        with self._lock:
            for task in [t for t in self._pending if t in batch]:
                if self.closed or len(self._running) >= self.max_workers:
                    break
                if task.started:  # cancelled while it waited
                    self._pending.remove(task)
                    continue
                if self._room_locked(workers):
                    handed.append(task)
                elif chosen is None:
                    chosen = task
                else:
                    continue
                self._pending.remove(task)
                self._running.add(task)
            if chosen is not None:
                self.stats.in_caller += 1
        for task in handed:
            workers.submit(functools.partial(self._work, task), reserved=True)
        return chosen

    def done(self, task: Task) -> None:
        """Forget `task`, which take() lent the caller; start one queued that no caller takes."""
        with self._lock:
            self._running.discard(task)
            submitted = [t for t in self._pending if t.batch is None or not t.batch.caller_runs]
            following = self._next_pending(submitted[0]) if submitted else None
        if following is not None:
            executor.current().submit(functools.partial(self._work, following), reserved=False)

    def _work(self, task: Task | None) -> None:
        # A worker runs the scope's queued tasks after its own, with no hand-off.
        try:
            while task is not None:
                if task.claim():
                    task.run(on_worker=True)
                with self._lock:
                    self._running.discard(task)
                    task = self._next_pending()
        finally:
            db.close_old_connections()  # Django connections the tasks opened in this thread

    def _next_pending(self, task: Task | None = None) -> Task | None:
        # Called with self._lock held: take `task`, or the first queued, to run.
        if self.closed or not self._pending:
            return None
        if task is None:
            task = self._pending[0]
        self._pending.remove(task)
        self._running.add(task)
        return task

    def cancel(self, tasks: list[Task]) -> None:
        """Drop `tasks` that have not started, and cancel the statements of running ones."""
        with self._lock:
            for task in tasks:
                if task in self._pending:
                    self._pending.remove(task)
        for task in tasks:
            task.cancel()

    def close(self) -> None:
        """Cancel what is still running, then roll back and close every Session.

        Each step runs even if one before it failed, as scoped_session.remove()
        ends a Session whatever happened to it.
        """
        with self._lock:
            if self.closed:
                return
            self.closed = True
            pending, running = list(self._pending), list(self._running)
            self._pending.clear()
        try:
            for task in pending:
                task.cancel()
            cancel_until_done(running, TEARDOWN_GRACE, "their scope ended")
        finally:
            with self._lock:
                busy = {task.session for task in self._running}
                snapshots, self._snapshots = self._snapshots, set()
            self._main = None
            try:
                self._sessions.end_all(but=busy)
            finally:
                for snapshot in snapshots:  # once their tasks have stopped
                    snapshot.close()


def current_scope(what: str = "parallelq") -> Scope:
    """Return the active scope.

    Raises:
        NoScopeError: no request or scope() is active in this context.
    """
    active = _scope_var.get()
    if active is None:
        raise NoScopeError(sessions.NO_SCOPE.format(what=what))
    return active


@contextlib.contextmanager
def scope() -> Iterator[Scope]:
    """Open a scope for code outside a request: commands, scripts, jobs, the shell.

    Yields:
        The Scope; it is torn down on exit like a request's.
    """
    opened = Scope()
    token = _scope_var.set(opened)
    session_token = sessions.current.set(opened.get_session)
    try:
        yield opened
    finally:
        sessions.current.reset(session_token)
        _scope_var.reset(token)
        opened.close()


def open_request_scope() -> Scope:
    """Open the scope of a request; close_request_scope() tears it down."""
    stale = _scope_var.get()
    if stale is not None and stale.from_request:
        # request_finished never reached the last request of this context.
        stale.close()
    opened = Scope(from_request=True)
    _scope_var.set(opened)
    sessions.current.set(opened.get_session)
    return opened


def close_request_scope() -> None:
    """Tear down the scope open_request_scope() set in this context, if any."""
    active = _scope_var.get()
    if active is not None and active.from_request:
        _scope_var.set(None)
        sessions.current.set(None)
        active.close()
