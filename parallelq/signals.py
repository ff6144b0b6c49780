"""Tear down the request's scope when Django has sent the response."""

from __future__ import annotations

from typing import Any

from parallelq.scoping import close_request_scope


# Register an event to cancel the request's unfinished tasks, roll back and
# close its Sessions, and forget them, once the response is closed.
def close_request_sessions(**kwargs: Any) -> None:
    close_request_scope()
