"""ParallelQueryMiddleware: each request gets its own scope (WSGI and ASGI); request_scope()."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase

from parallelq.exceptions import NoScopeError
from parallelq.scoping import Scope, open_request_scope
from parallelq.servertiming import add_server_timing

logger = logging.getLogger("parallelq")

# The request attribute the middleware sets; HttpRequest does not declare it,
# so typed code reads it back with request_scope().
ATTRIBUTE = "parallelq"


class ParallelQueryMiddleware:
    """Open a Scope for the request and set it as ``request.parallelq``.

    The scope is torn down when the response is closed, once it has been sent:
    a streaming response may still use the request's Sessions and futures while
    it streams. Under WSGI the request_finished signal (signals.py) would find
    it too, but under ASGI Django (5.0 and later) runs the middleware and the
    view in an asyncio task of their own and closes the response outside it,
    where the scope's context variable is not set: so the middleware hands the
    scope to the response.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        scope = open_request_scope()
        setattr(request, ATTRIBUTE, scope)
        try:
            response = self.get_response(request)
        except BaseException:
            scope.close()  # no response: nothing else would tear the scope down
            raise
        _close_with(cast(HttpResponseBase, response), scope)
        return add_server_timing(scope, cast(HttpResponseBase, response))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        scope = open_request_scope()
        setattr(request, ATTRIBUTE, scope)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
        except BaseException:
            # No response, so nothing else tears the scope down: a client that went
            # away cancels the view's task. sync_to_async runs the teardown after any
            # synchronous code of the request still running (it waits for it in the
            # request's thread), and off the event loop; shielded, a second cancel
            # cannot stop it half-way.
            await asyncio.shield(sync_to_async(scope.close)())
            raise
        _close_with(response, scope)
        return add_server_timing(scope, response)  # type: ignore[no-any-return]


def _close_with(response: HttpResponseBase, scope: Scope) -> None:
    # Django calls a response's closers in response.close(), right before it
    # sends request_finished: after the last byte, and under ASGI off the event
    # loop (sync_to_async). It ignores what they raise, so this logs it.
    response._resource_closers.append(functools.partial(_close, scope))  # type: ignore[attr-defined]


def _close(scope: Scope) -> None:
    try:
        scope.close()
    except Exception:
        logger.exception("Tearing down the request's parallelq scope failed")


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
