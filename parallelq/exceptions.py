"""The errors parallelq raises itself."""

from __future__ import annotations


class ParallelQueryError(Exception):
    """Base class for every error parallelq raises itself."""


class NoScopeError(ParallelQueryError):
    """parallel(), submit() or session was used with no request or scope() active."""


class Timeout(ParallelQueryError, TimeoutError):
    """The tasks did not finish in time; their queries were cancelled."""
