"""What a task may return: rows and objects, not what needs its Session or connection."""

from __future__ import annotations

import inspect
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from parallelq.exceptions import ParallelQueryError

# What a task may not return: each would use the task's Session or connection
# after the task has ended the one and given back the other.
_BOUND_TO_SESSION = {
    orm.Session: "its Session, which ends with the task. Return what it loaded instead",
    orm.Query: "a Query, which would run on the task's ended Session. Return query.all()",
    sa.engine.result.FilterResult: "a {type}, which would read rows from a connection the "
    "task has given back. Return its rows: .all(), .first() or .one()",
}
# Every type checked() looks at, to let anything else through in one check.
_CHECKED = (sa.engine.Result, *_BOUND_TO_SESSION)


def checked(task: object, result: Any) -> Any:
    """Return what `task` returned, made safe to hand to another thread.

    Raises:
        TypeError: it returned a coroutine or an async generator.
        ParallelQueryError: it returned what would use its ended Session or
            given-back connection.
    """
    if inspect.iscoroutine(result) or inspect.isasyncgen(result):
        if inspect.iscoroutine(result):
            result.close()  # never awaited: close it, or Python warns of it later
        raise TypeError(
            f"{task} returned {type(result).__name__} {result!r}: parallel(), aparallel() "
            "and submit() run plain functions in threads. Pass a function that is not async."
        )
    if not isinstance(result, _CHECKED):
        return result
    if isinstance(result, sa.engine.Result) and getattr(result, "returns_rows", True):
        # Read every row now, while the task still holds the connection; the
        # caller gets a Result of its own over them.
        return result.freeze()()
    for kind, why in _BOUND_TO_SESSION.items():
        if isinstance(result, kind):
            raise ParallelQueryError(f"{task} returned {why.format(type=type(result).__name__)}.")
    return result
