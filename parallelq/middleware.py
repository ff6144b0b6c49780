"""ParallelQueryMiddleware: give each request its own parallelq scope."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from parallelq.scoping import open_request_scope
from parallelq.servertiming import add_server_timing


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
        request.parallelq = scope = open_request_scope()  # type: ignore[attr-defined]
        return add_server_timing(scope, self.get_response(request))
