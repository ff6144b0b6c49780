"""Run the independent SQLAlchemy queries of one Django request at the same time."""

from __future__ import annotations

from parallelq.engine import get_engine
from parallelq.exceptions import NoScopeError, ParallelQueryError, Timeout
from parallelq.scope import scope
from parallelq.session import session
from parallelq.tasks import parallel, submit

__all__ = [
    "NoScopeError",
    "ParallelQueryError",
    "Timeout",
    "get_engine",
    "parallel",
    "scope",
    "session",
    "submit",
]
