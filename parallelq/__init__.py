"""Run the independent SQLAlchemy queries of one Django request at the same time."""

from __future__ import annotations

from parallelq.api import parallel, submit
from parallelq.awaiting import aparallel
from parallelq.engine import get_engine
from parallelq.exceptions import NoScopeError, ParallelQueryError, Timeout
from parallelq.replicas import on_replica
from parallelq.scoping import scope
from parallelq.sessions import session

__all__ = [
    "NoScopeError",
    "ParallelQueryError",
    "Timeout",
    "aparallel",
    "get_engine",
    "on_replica",
    "parallel",
    "scope",
    "session",
    "submit",
]
