"""Scope: one request's (or one scope() block's) Sessions, task queue and stats."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from django import db
from django.core.signals import setting_changed
from django.dispatch import receiver
from sqlalchemy import orm

from parallelq import lifecycle, workers
from parallelq.conf import get_settings
from parallelq.engine import get_engine, has_idle_connection
from parallelq.exceptions import NoScopeError

if TYPE_CHECKING:
    from parallelq.task import Task

logger = logging.getLogger("parallelq")

# How long teardown waits for tasks still running after their statements were
# cancelled; a task stuck in Python code past it ends its Session itself.
TEARDOWN_GRACE = 5.0

# A batch of tasks that kept the GIL busy for most of its run cannot go faster on
# more threads: a lookup by primary key is about 0.4 ms of Python against 0.1 ms
# of waiting on the server. Eight threads then take turns at the GIL, each turn
# a context switch or two, and a task costs more than running it serially does.
# While recent batches were such (their tasks' CPU time over the batch's wall
# time, a moving average, at least GIL_BOUND), a parallel() call runs at most
# one or two of its tasks at once (GIL_BOUND_WINDOWS); see Scope.holding_back()
# for widening. Two overlap one task's wait on the server with the other's
# Python, but hand the GIL back and forth on every statement: which of the two
# is faster depends on the machine, so each is timed (wall time per task, a
# moving average per window) and the faster one runs, the other every
# EXPLORE_EVERY-th GIL-bound batch so that its time stays current.
GIL_BOUND = 0.5
GIL_BOUND_WINDOWS = (1, 2)
EXPLORE_EVERY = 8
STALL = 0.005  # seconds with no task finished: the running ones wait on the database
_RECENT_WEIGHT = 0.2  # of the newest batch in the moving averages

# Moving averages, shared by every scope (a lost update does no harm): the GIL
# share of batches, None before the first; wall seconds per task of GIL-bound
# batches by their window, once one ran.
_gil_share: float | None = None
_per_task: dict[int, float] = {}
_gil_bound_batches = 0


def _moving(recent: float | None, value: float) -> float:
    return value if recent is None else recent + _RECENT_WEIGHT * (value - recent)


def record_batch(
    cpu_seconds: float, wall_seconds: float, tasks: int = 0, window: int | None = None
) -> None:
    """Count a parallel() batch of `tasks` that used `cpu_seconds` in `wall_seconds`.

    Args:
        window: the GIL-bound window the batch ran in, start to end; None if
            it had none or was widened.
    """
    global _gil_share
    if wall_seconds <= 0:
        return
    _gil_share = _moving(_gil_share, cpu_seconds / wall_seconds)
    if window is not None and tasks > 0:
        _per_task[window] = _moving(_per_task.get(window), wall_seconds / tasks)


def gil_bound_window() -> int | None:
    """Return how many tasks the next parallel() call may run at once; None: no limit."""
    global _gil_bound_batches
    share = _gil_share
    if share is None or share < GIL_BOUND:
        return None
    _gil_bound_batches += 1
    times = dict(_per_task)
    untried = [w for w in GIL_BOUND_WINDOWS if w not in times]
    if untried:
        return untried[0]
    ranked = sorted(GIL_BOUND_WINDOWS, key=times.__getitem__)
    return ranked[1] if _gil_bound_batches % EXPLORE_EVERY == 0 else ranked[0]


@receiver(setting_changed)
def _forget_task_times(*, setting: str, **kwargs: Any) -> None:
    # Another MAX_WORKERS, database or Engine makes other tasks: start afresh.
    global _gil_share, _gil_bound_batches
    if setting == "PARALLELQ":
        _gil_share = None
        _per_task.clear()
        _gil_bound_batches = 0


# Scopes whose callers queued tasks that found no free worker thread or idle
# connection (caller-runs). A worker that runs out of its own scope's tasks takes
# theirs, so that while a caller runs one of its tasks the rest need not wait for it.
_starved_lock = threading.Lock()
_starved: dict[Scope, None] = {}  # a dict for its order: the longest waiting first


def _take_starved() -> tuple[Scope | None, Task | None]:
    """Return a scope and a task its caller queued, for a worker with nothing else to run."""
    with _starved_lock:
        scopes = list(_starved)
    for scope in scopes:
        task = scope._take_for_worker()
        if task is not None:
            return scope, task
    return None, None


_scope_var: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "parallelq.scope", default=None
)

_NO_SCOPE = (
    "{what} needs an active parallelq scope. Add "
    "'parallelq.middleware.ParallelQueryMiddleware' to MIDDLEWARE, or wrap the code "
    "in `with parallelq.scope():`."
)


@dataclass
class Stats:
    """What a scope's tasks did.

    Attributes:
        tasks: tasks that ran.
        db_seconds: their run times added up: what running them one by one costs.
        wall_seconds: time during which at least one task was running.
        max_concurrency: the most tasks running at once.
        in_caller: tasks parallel() ran in its caller's thread because no worker
            thread was free (see Workers.reserve()) or no pooled connection
            idle: above 0, other requests fanned out too, or the process was
            saturated (ENABLED=False and nested tasks are not counted).
    """

    tasks: int = 0
    db_seconds: float = 0.0
    wall_seconds: float = 0.0
    max_concurrency: int = 0
    in_caller: int = 0


class Scope:
    """The Sessions and tasks of one request or one ``scope()`` block.

    Tasks run on worker threads shared by the process, at most MAX_WORKERS of
    this scope at a time; the rest wait in the scope's own queue, so no thread
    ever blocks waiting for another task.
    """

    def __init__(self, *, from_request: bool = False) -> None:
        conf = get_settings()
        self.from_request = from_request
        self.max_workers = conf.MAX_WORKERS
        self.pool_capacity = conf.pool_capacity
        self.enabled = conf.ENABLED
        self.timeout = conf.TIMEOUT
        self.pin_cpu = conf.PIN_CPU
        self.stats = Stats()
        self.closed = False
        self._lock = threading.Lock()
        self._main: orm.Session | None = None
        self._engine: sa.Engine | None = None
        # Live Sessions, ended at teardown, and what logs call each (str() of it).
        self._sessions: dict[orm.Session, object] = {}
        self._pending: deque[Task] = deque()
        self._running: set[Task] = set()
        self._active = 0
        self._busy_since = 0.0
        self._window: int | None = None  # of the running parallel() call: see begin_batch()
        self._wide = False  # the GIL-bound window was widened, see holding_back()
        self._last_progress = time.perf_counter()  # when a task last finished

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._running)} running"
        return f"<parallelq.Scope {state}, {self.stats.tasks} tasks>"

    @property
    def engine(self) -> sa.Engine:
        """Return the Engine the scope's Sessions use: get_engine()'s when first asked."""
        if self._engine is None:
            self._engine = get_engine()
        return self._engine

    @property
    def session(self) -> orm.Session:
        """Return the scope's own Session, used by the thread that opened the scope."""
        if self._main is None:
            self._check_open("session")
            self._main = lifecycle.new_session(lifecycle.RequestSession, self.engine)
            owner = "request" if self.from_request else "scope"
            self.add_session(self._main, f"the {owner}'s session")
        return self._main

    @property
    def queued(self) -> bool:
        """Return True if tasks wait in the scope's queue.

        Only offer() and start() queue a task, so once a parallel() call has
        offered its tasks and sees none queued, none of them ever will be.
        """
        return bool(self._pending)

    @property
    def open_sessions(self) -> int:
        """Return how many Sessions the scope holds: its own, and those of running tasks."""
        return len(self._sessions)

    def add_session(self, session: orm.Session, owner: object) -> None:
        """Register `session` to be rolled back and closed at teardown; logs call it str(owner)."""
        with self._lock:
            self._sessions[session] = owner

    def discard_session(self, session: orm.Session) -> None:
        """Forget `session`, which its task has ended itself."""
        with self._lock:
            self._sessions.pop(session, None)

    def claim(self, task: Task) -> bool:
        """Mark `task` started; False if it was already, or cancelled before it started.

        Whoever claims a task settles its Future: the worker or inline run that
        starts it, or cancel() for a task that never starts.
        """
        with self._lock:
            return self._claim_locked(task)

    def _claim_locked(self, task: Task) -> bool:
        # Called with self._lock held.
        self._check_open("parallel()")
        if task.started:  # a failing sibling cancelled it first
            return False
        task.started = True
        return True

    def start(self, task: Task) -> None:
        """Run `task` on a worker thread, or queue it behind MAX_WORKERS running ones.

        When every worker thread is busy the task waits for one, as submit()
        promises a task that runs without its caller.
        """
        self._dispatch(task, caller_runs=False)

    def offer(self, task: Task) -> None:
        """Hand `task` to a free worker thread, or else queue it.

        When no worker thread is free or no connection idle the task is queued too,
        and the caller should run it (take()) rather than wait: a saturated
        process then does its work at serial cost.
        """
        self._dispatch(task, caller_runs=True)

    def _dispatch(self, task: Task, *, caller_runs: bool) -> None:
        pool = workers.current()
        with self._lock:
            if not self._claim_locked(task):
                return
            cap = self._window_locked() if caller_runs else self.max_workers
            if len(self._running) >= cap:
                self._pending.append(task)
                return
            if caller_runs and not self._room_locked(pool):
                self._pending.append(task)
                with _starved_lock:
                    _starved[self] = None
                return
            self._running.add(task)
        pool.submit(functools.partial(self._work, task), reserved=caller_runs)

    def _take_for_worker(self) -> Task | None:
        # A queued task for a worker whose own scope has none left, if the
        # window and the pool have room; see _take_starved().
        with self._lock:
            if self.closed or not self._pending:
                self._unstarve_locked()
                return None
            if len(self._running) >= self._window_locked() or not has_idle_connection(
                self.engine, self.pool_capacity, workers.current().starting
            ):
                return None
            task = self._next_pending()
            if not self._pending:
                self._unstarve_locked()
            return task

    def _unstarve_locked(self) -> None:
        with _starved_lock:
            _starved.pop(self, None)

    def _room_locked(self, pool: workers.Workers) -> bool:
        # Called with self._lock held; reserves a worker thread if it returns True.
        return (
            has_idle_connection(self.engine, self.pool_capacity, pool.starting) and pool.reserve()
        )

    def begin_batch(self, *, gil_window: bool = True) -> None:
        """Choose the window of the parallel() call about to offer its tasks.

        Args:
            gil_window: hold GIL-bound calls to one or two tasks at a time. Not
                for a call whose threads share one core (affinity.py): they
                hand the GIL over at the cost of a switch on a warm core, and
                all of its tasks at once ran fastest.
        """
        window = None if self._wide or not gil_window else gil_bound_window()
        with self._lock:
            self._window = window

    def end_batch(self) -> int | None:
        """Return the window the call ran in from start to end: None if none, or widened."""
        with self._lock:
            window, self._window = self._window, None
            return None if self._wide else window

    def _window_locked(self) -> int:
        # Called with self._lock held: how many of parallel()'s tasks may run at once.
        if self._wide or self._window is None:
            return self.max_workers
        return min(self.max_workers, self._window)

    def holding_back(self, batch: Collection[Task]) -> bool:
        """Return True while the GIL-bound window keeps queued tasks of `batch` waiting.

        While recent batches were GIL-bound, one or two tasks run at a time
        (gil_bound_window()), and each worker takes the next queued one as it
        finishes. A batch whose tasks turn out to wait on the database is
        widened to MAX_WORKERS: the caller, waiting, checks every STALL seconds
        (widen_if_stalled()), so such a task starts at most that much late.
        """
        with self._lock:
            if self.closed or self._wide:
                return False
            return any(t in batch for t in self._pending)

    def widen_if_stalled(self) -> None:
        """Let the scope run MAX_WORKERS tasks if none finished for STALL seconds."""
        with self._lock:
            if time.perf_counter() - self._last_progress >= STALL:
                self._wide = True

    def take(self, batch: Collection[Task]) -> Task | None:
        """Return a queued task of `batch` for the caller to run now, if any.

        Queued tasks of `batch` go to worker threads first, as far as free ones
        and idle connections allow; the caller gets the first of the rest. None while
        MAX_WORKERS tasks run (fewer while batches are GIL-bound): the workers
        that run them take the queued ones as they finish. The caller gives the
        task back with done().
        """
        pool = workers.current()
        handed: list[Task] = []
        chosen = None
        with self._lock:
            if self.closed:
                return None
            window = self._window_locked()
            if len(self._running) >= window:  # as it is each time a waiting caller wakes
                return None
            for task in [t for t in self._pending if t in batch]:
                if len(self._running) >= window:
                    break
                if task.future.cancelled():
                    continue
                if self._room_locked(pool):
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
            pool.submit(functools.partial(self._work, task), reserved=True)
        return chosen

    def done(self, task: Task) -> None:
        """Forget `task`, which take() lent to the caller and the caller has run."""
        with self._lock:
            self._running.discard(task)

    def _work(self, task: Task | None) -> None:
        # A worker runs the scope's queued tasks after its own, with no hand-off,
        # then those other scopes' callers queued for want of a worker.
        scope: Scope | None = self
        try:
            while scope is not None and task is not None:
                task.run()
                with scope._lock:
                    scope._running.discard(task)
                    task = scope._next_pending()
                if task is None:
                    # Another scope's queued task, unless its caller runs it
                    # anyway: see Workers.crowded().
                    crowded = workers.current().crowded()
                    scope, task = (None, None) if crowded else _take_starved()
        finally:
            db.close_old_connections()  # Django connections the tasks opened in this thread

    def task_started(self) -> None:
        """Count a task that began running, for stats."""
        with self._lock:
            self._active += 1
            if self._active == 1:
                self._busy_since = time.perf_counter()
            self.stats.max_concurrency = max(self.stats.max_concurrency, self._active)

    def task_finished(self, seconds: float) -> None:
        """Count a task that ran for `seconds`, for stats and widen_if_stalled()."""
        with self._lock:
            self.stats.tasks += 1
            self.stats.db_seconds += seconds
            self._active -= 1
            self._last_progress = now = time.perf_counter()
            if self._active == 0:
                self.stats.wall_seconds += now - self._busy_since

    def _next_pending(self) -> Task | None:
        # Called with self._lock held.
        while self._pending and not self.closed:
            task = self._pending.popleft()
            if task.future.cancelled():
                task.future.set_running_or_notify_cancel()
                continue
            self._running.add(task)
            return task
        return None

    def cancel(self, tasks: list[Task]) -> None:
        """Drop `tasks` that have not started, and cancel the statements of running ones."""
        with self._lock:
            # Tasks never started or still queued are this call's to settle;
            # a worker settles the ones already handed to it.
            unstarted = [t for t in tasks if not t.started or t in self._pending]
            for task in unstarted:
                task.started = True
                if task in self._pending:
                    self._pending.remove(task)
        for task in unstarted:
            task.future.cancel()
            task.future.set_running_or_notify_cancel()
        for task in tasks:
            if task not in unstarted:
                task.future.cancel()  # a running task's statement is cancelled

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
            self._unstarve_locked()
        try:
            for task in pending:
                if task.future.cancel():
                    task.future.set_running_or_notify_cancel()
            self._stop(running)
        finally:
            with self._lock:
                sessions, self._sessions = self._sessions, {}
                busy = {task.session for task in self._running}
            self._main = None
            for session, owner in sessions.items():
                if session not in busy:
                    _end_quietly(session, owner)

    def _stop(self, running: list[Task]) -> None:
        # A cancel that reaches the server just before the statement does is
        # ignored there, so it is sent again until the tasks have returned.
        deadline = time.monotonic() + TEARDOWN_GRACE
        not_done = {t.future for t in running}
        while not_done and time.monotonic() < deadline:
            for task in running:
                task.future.cancel()  # a running task's statement is cancelled
            wait(not_done, timeout=min(0.5, deadline - time.monotonic()))
            not_done = {f for f in not_done if not f.done()}
        if not_done:
            logger.warning(
                "%d task(s) still running %.0f s after their scope ended; "
                "each ends its own Session when it returns.",
                len(not_done),
                TEARDOWN_GRACE,
            )

    def _check_open(self, what: str) -> None:
        if self.closed:
            raise NoScopeError(
                f"{what} was used after its parallelq scope was torn down. "
                "Finish the work inside the request or the `with parallelq.scope():` block."
            )


def _end_quietly(session: orm.Session, owner: object) -> None:
    try:
        lifecycle.end_session(session, owner)
    except Exception:
        logger.exception("Closing %s failed", owner)


def current_scope(what: str = "parallelq") -> Scope:
    """Return the active scope.

    Raises:
        NoScopeError: no request or scope() is active in this context.
    """
    active = _scope_var.get()
    if active is None:
        raise NoScopeError(_NO_SCOPE.format(what=what))
    return active


@contextlib.contextmanager
def scope() -> Iterator[Scope]:
    """Open a scope for code outside a request: commands, scripts, jobs, the shell.

    Yields:
        The Scope; it is torn down on exit like a request's.
    """
    opened = Scope()
    token = _scope_var.set(opened)
    try:
        yield opened
    finally:
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
    return opened


def close_request_scope() -> None:
    """Tear down the scope open_request_scope() set in this context, if any."""
    active = _scope_var.get()
    if active is not None and active.from_request:
        _scope_var.set(None)
        active.close()
