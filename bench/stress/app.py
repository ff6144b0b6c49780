"""The server side: Django settings, the views under stress, their URLconf and the WSGI server."""

from __future__ import annotations

import logging
import socketserver
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import django
import sqlalchemy as sa
from django.conf import settings
from django.core.signals import got_request_exception
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from bench.stress.db import ROWS, SOCKET_TIMEOUT
from bench.stress.tally import SERVER, TallyLog, describe
from demo_project import settings as demo_settings
from demo_project.views import dashboard
from parallelq import Timeout, parallel, request_scope, session
from parallelq.conf import Settings

# parallelq's defaults but a shorter pool_timeout, so that a starved pool shows
# within the run instead of after it.
PARALLELQ = {"MAX_WORKERS": 8, "TIMEOUT": None, "ENGINE_OPTIONS": {"pool_timeout": 5}}
POOL_CAPACITY = Settings(**PARALLELQ).pool_capacity or 0
WORKER_THREADS = max(PARALLELQ["MAX_WORKERS"], POOL_CAPACITY)  # per the README


# --- Django hooks that feed SERVER -------------------------------------------------------


class RecordScopes:
    """Middleware after ParallelQueryMiddleware: remember each request's scope for the checks."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        SERVER.keep(request_scope(request))
        return self.get_response(request)


def _record_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    exc = sys.exc_info()[1]
    kind = PATH_KIND.get(request.path, request.path) if request is not None else "?"
    SERVER.add(f"exception {kind}: {describe(exc)}")


# --- Views -------------------------------------------------------------------------------


class InjectedFault(Exception):
    """Raised on purpose by a task of the /fail/ view."""


def sleep(seconds: float) -> None:
    """Make the task's backend wait; the fault thread looks for 'pg_sleep(2)' in its query."""
    session.execute(sa.select(sa.func.pg_sleep(seconds)))


def count_rows() -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(ROWS)))


def write(request: HttpRequest) -> HttpResponse:
    """Commit one row with a fresh id in a task; answer the id only once it is committed."""
    row_id = uuid.uuid4().hex

    def insert() -> str:
        session.execute(sa.insert(ROWS).values(id=row_id))
        session.commit()
        return row_id

    done = parallel(insert=insert, rows=count_rows)
    return JsonResponse({"id": done["insert"]})


def fail(request: HttpRequest) -> HttpResponse:
    """One task raises while a sibling sleeps: parallel() should raise that error at once."""

    def boom() -> None:
        session.scalar(sa.select(1))
        SERVER.add("fault: failing tasks")
        raise InjectedFault("raised on purpose by bench.stress")

    parallel(slow=lambda: sleep(1.0), boom=boom, rows=count_rows)
    return HttpResponse("parallel() returned although a task raised", status=200)


def time_out(request: HttpRequest) -> HttpResponse:
    """A 5 s query under a 0.2 s timeout: answered as 504 once parallel() raises Timeout."""
    try:
        parallel(sleep=lambda: sleep(5), timeout=0.2)
    except Timeout:
        SERVER.add("fault: timeouts")
        return HttpResponse("timed out\n", status=504)
    return HttpResponse("pg_sleep(5) finished within 0.2 s?", status=200)


def long_query(request: HttpRequest) -> HttpResponse:
    """A 2 s query the fault thread terminates: a 500, or 200 if it escaped the kill.

    It is text(), as much application code is: parallelq then asks PostgreSQL whether the
    task's transaction wrote anything before it ends the Session.
    """
    parallel(long=lambda: session.execute(sa.text("SELECT pg_sleep(2)")).scalar(), rows=count_rows)
    return HttpResponse("survived\n")


urlpatterns = [
    path("", dashboard),  # the demo's own view
    path("write/", write),
    path("fail/", fail),
    path("timeout/", time_out),
    path("long/", long_query),
]


@dataclass(frozen=True)
class Kind:
    """A kind of request the clients send, and what a correct answer to it is."""

    path: str
    weight: int  # out of 20
    statuses: frozenset[int]
    exceptions: frozenset[str] = frozenset()  # server-side exceptions expected behind a 500


KINDS = {
    "dashboard": Kind("/?latency_ms=20", 8, frozenset({200})),
    "write": Kind("/write/", 5, frozenset({200})),
    "fail": Kind("/fail/", 3, frozenset({500}), frozenset({"InjectedFault"})),
    "timeout": Kind("/timeout/", 2, frozenset({504})),
    # A terminated backend surfaces as AdminShutdown, or as a plain OperationalError when
    # the driver sees the socket close first.
    "long": Kind(
        "/long/",
        2,
        frozenset({200, 500}),
        frozenset({"OperationalError/AdminShutdown", "OperationalError/OperationalError"}),
    ),
}
PATH_KIND = {urlsplit(k.path).path: name for name, k in KINDS.items()}


# --- Django and the HTTP server ----------------------------------------------------------


def configure_django(db: dict[str, Any]) -> None:
    database = {k: v for k, v in db.items() if k != "ADMIN_DB"}
    settings.configure(
        DEBUG=False,
        SECRET_KEY="stress-only-not-secret",
        ALLOWED_HOSTS=["127.0.0.1"],
        INSTALLED_APPS=["parallelq", "demo_project"],
        MIDDLEWARE=["parallelq.middleware.ParallelQueryMiddleware", f"{__name__}.RecordScopes"],
        ROOT_URLCONF=__name__,
        TEMPLATES=demo_settings.TEMPLATES,
        DATABASES={"default": database},
        PARALLELQ=PARALLELQ,
        USE_TZ=True,
        TIME_ZONE="UTC",
        LANGUAGE_CODE="en",
        LOGGING={"version": 1, "disable_existing_loggers": False},
    )
    django.setup()
    got_request_exception.connect(_record_exception)
    for name in ("parallelq", "sqlalchemy.pool"):
        logger = logging.getLogger(name)
        logger.addHandler(TallyLog(logging.WARNING))
        logger.propagate = False


class QuietHandler(WSGIRequestHandler):
    timeout = SOCKET_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the report


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        SERVER.add(f"exception server: {describe(sys.exc_info()[1])}")


def start_server() -> tuple[ThreadingWSGIServer, int]:
    server = make_server(
        "127.0.0.1",
        0,
        get_wsgi_application(),
        server_class=ThreadingWSGIServer,
        handler_class=QuietHandler,
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="stress-http", daemon=True
    )
    thread.start()
    return server, server.server_port  # type: ignore[return-value]
