"""ParallelQueryPanel: django-debug-toolbar's view of a request's tasks and their SQL.

Needs django-debug-toolbar (``pip install "parallelq[debug-toolbar]"``); nothing
else in parallelq imports this module.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import time
from typing import Any, NamedTuple

import sqlalchemy as sa
from debug_toolbar.panels import Panel
from django.http import HttpRequest, HttpResponseBase
from sqlalchemy import orm

from parallelq import sessions
from parallelq.scoping import Scope
from parallelq.task import Task, current_task
from parallelq.waterfall import bars, place

# How much of a statement's parameters the panel keeps.
MAX_PARAMS_CHARS = 300


class Statement(NamedTuple):
    """A statement parallelq's Engine ran while the panel captured."""

    task: Task | None  # None: the request's own Session
    sql: str
    params: str
    started: float  # time.perf_counter()
    seconds: float


class Capture:
    """The statements one request ran on parallelq's Engine, with the task that ran each."""

    def __init__(self) -> None:
        self.statements: list[Statement] = []
        self._started: dict[int, float] = {}  # by the cursor's id: one statement at a time each

    def started(self, cursor: Any) -> None:
        self._started[id(cursor)] = time.perf_counter()

    def ended(self, cursor: Any, sql: str, parameters: Any) -> None:
        ended = time.perf_counter()
        started = self._started.pop(id(cursor), ended)
        params = repr(parameters) if parameters else ""
        if len(params) > MAX_PARAMS_CHARS:
            params = params[: MAX_PARAMS_CHARS - 1] + "…"
        # list.append is atomic: the request's tasks append from their own threads.
        self.statements.append(Statement(current_task(), sql, params, started, ended - started))


# Set by the panel around the request. A task runs in a copy of its caller's
# context, so it records into its own request's Capture, and other requests' do not.
_capture: contextvars.ContextVar[Capture | None] = contextvars.ContextVar(
    "parallelq.panels.capture", default=None
)
_instrument_lock = threading.Lock()


def _listen_to_connection(
    session: orm.Session, transaction: Any, connection: sa.Connection
) -> None:
    # On this one Connection of parallelq's Engine, for a request the panel
    # captures: a listener on the Engine would have every statement of every
    # request dispatch cursor events from then on (SQLAlchemy has no way back).
    if _capture.get() is not None and not sa.event.contains(
        connection, "after_cursor_execute", _after_cursor_execute
    ):
        sa.event.listen(connection, "before_cursor_execute", _before_cursor_execute)
        sa.event.listen(connection, "after_cursor_execute", _after_cursor_execute)


def _before_cursor_execute(conn: Any, cursor: Any, *args: Any) -> None:
    capture = _capture.get()
    if capture is not None:
        capture.started(cursor)


def _after_cursor_execute(conn: Any, cursor: Any, sql: str, parameters: Any, *args: Any) -> None:
    capture = _capture.get()
    if capture is not None:
        capture.ended(cursor, sql, parameters)


def instrument() -> None:
    """Have parallelq's Sessions listen to their connections' statements while captured.

    Runs when the panel is first enabled. From then on each Session of
    parallelq that begins a transaction makes one more call, which returns at
    once unless the toolbar shows its request.
    """
    with _instrument_lock:
        for factory in (sessions.TaskSession, sessions.RequestSession):
            if not sa.event.contains(factory, "after_begin", _listen_to_connection):
                sa.event.listen(factory, "after_begin", _listen_to_connection)


class ParallelQueryPanel(Panel):
    """The request's parallelq tasks as a waterfall, with the SQL each one ran."""

    title = "parallelq"
    template = "parallelq/panel.html"

    @property
    def nav_subtitle(self) -> str:
        stats = self.get_stats()
        if "tasks" not in stats:
            return ""
        return f"{len(stats['tasks'])} tasks in {stats['wall_ms']:.1f} ms"

    def enable_instrumentation(self) -> None:
        instrument()

    def process_request(self, request: HttpRequest) -> HttpResponseBase:
        capture = Capture()
        token = _capture.set(capture)
        try:
            response: HttpResponseBase = super().process_request(request)
        finally:
            _capture.reset(token)
        self._statements = capture.statements
        return response

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        scope = getattr(request, "parallelq", None)
        if isinstance(scope, Scope):
            self.record_stats(panel_stats(scope, getattr(self, "_statements", [])))
        else:
            missing = "request.parallelq is not set: is ParallelQueryMiddleware in MIDDLEWARE?"
            self.record_stats({"missing": missing})

    def generate_server_timing(self, request: HttpRequest, response: HttpResponseBase) -> None:
        # The toolbar replaces the response's Server-Timing with its panels'
        # metrics: hand it what the response has (parallelq's, the view's) to keep.
        self._server_timing = response.headers.get("Server-Timing")

    def get_headers(self, request: HttpRequest) -> dict[str, str]:
        headers: dict[str, str] = super().get_headers(request)
        theirs = getattr(self, "_server_timing", None)
        if theirs:
            headers["Server-Timing"] = theirs
        return headers


def panel_stats(scope: Scope, statements: list[Statement]) -> dict[str, Any]:
    """Return what the panel shows of `scope`: JSON-able types only, as the toolbar stores it.

    Each task's bar lists the statements it ran. Those of the request's own
    Session make a bar of their own, "outside"; those of tasks that had not
    finished when the response was made are only counted.
    """
    opened = scope.timeline.opened
    records = sorted(scope.timeline, key=lambda r: r.start)
    ends = [r.end for r in records] + [s.started + s.seconds - opened for s in statements]
    span = max(ends, default=0.0)
    tasks = bars(records, span=span)  # in the order of `records`
    rows: dict[int, list[dict[str, Any]]] = {}
    for record, bar in zip(records, tasks, strict=True):
        bar["statements"] = rows[id(record)] = []
    outside: list[dict[str, Any]] = []
    unfinished = 0
    for statement in statements:
        row = _row(statement, opened, span)
        if statement.task is None:
            outside.append(row)
        elif statement.task.record is not None and id(statement.task.record) in rows:
            rows[id(statement.task.record)].append(row)
        else:
            unfinished += 1
    return {
        "tasks": tasks,
        "outside": [_outside_bar(outside, span)] if outside else [],
        "unfinished_statements": unfinished,
        "dropped": scope.timeline.dropped,
        "span_ms": span * 1000,
        "wall_ms": scope.stats.wall_seconds * 1000,
        "stats": dataclasses.asdict(scope.stats),
    }


def _row(statement: Statement, opened: float, span: float) -> dict[str, Any]:
    start = statement.started - opened
    return {
        "sql": statement.sql,
        "params": statement.params,
        "start_ms": start * 1000,
        "duration_ms": statement.seconds * 1000,
        **place(start, statement.seconds, span),
    }


def _outside_bar(rows: list[dict[str, Any]], span: float) -> dict[str, Any]:
    first = rows[0]["start_ms"] / 1000
    last = max(row["start_ms"] + row["duration_ms"] for row in rows) / 1000
    return {
        "name": "the request's own Session",
        "start_ms": first * 1000,
        "duration_ms": (last - first) * 1000,
        "error": None,
        "statements": rows,
        **place(first, last - first, span),
    }
