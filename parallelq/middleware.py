"""ParallelQueryMiddleware, which gives each request its own scope, and request_scope()."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from parallelq.exceptions import NoScopeError
from parallelq.scoping import Scope, open_request_scope

# The request attribute the middleware sets; HttpRequest does not declare it,
# so typed code reads it back with request_scope().
ATTRIBUTE = "parallelq"


class ParallelQueryMiddleware:
    """Open a Scope for the request and set it as ``request.parallelq``.

    The scope is not closed here but by the request_finished signal (see
    signals.py), which Django sends once the response is closed: a streaming
    response may still use the request's Sessions and futures while it streams.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        setattr(request, ATTRIBUTE, open_request_scope())
        return self.get_response(request)


def request_scope(request: HttpRequest) -> Scope:
    """Return the request's scope, ``request.parallelq``, typed.

    Its ``stats`` say what the request's tasks did; it stays readable after
    the response is closed.

    Raises:
        NoScopeError: ParallelQueryMiddleware did not run for this request.
    """
    found = getattr(request, ATTRIBUTE, None)
    if not isinstance(found, Scope):
        raise NoScopeError(
            "request_scope() found no parallelq scope on this request. Add "
            "'parallelq.middleware.ParallelQueryMiddleware' to MIDDLEWARE."
        )
    return found
