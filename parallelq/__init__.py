"""Run the independent SQLAlchemy queries of one Django request at the same time."""

from __future__ import annotations

from parallelq.api import parallel, submit
from parallelq.awaiting import aparallel
from parallelq.engine import get_engine
from parallelq.exceptions import NoScopeError, ParallelQueryError, Timeout
from parallelq.middleware import request_scope
from parallelq.replicas import on_replica
from parallelq.scoping import Scope, scope
from parallelq.sessions import session

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

__all__ = [
    "NoScopeError",
    "ParallelQueryError",
    "Scope",
    "Timeout",
    "aparallel",
    "get_engine",
    "on_replica",
    "parallel",
    "request_scope",
    "scope",
    "session",
    "submit",
]
