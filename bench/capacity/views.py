"""The view the measured run loads: the request's Session, then a fan-out of pg_sleep tasks.

gunicorn serves it through ``bench.capacity.wsgi``; what one request runs comes from
the BENCH_CAPACITY environment variable (``app_settings()``), set by bench.capacity.measure.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from typing import Any

import sqlalchemy as sa
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

import parallelq
from bench.capacity.measure import SETTINGS_ENV

_SLEEP = sa.text("SELECT pg_sleep(:seconds)")


def app_settings() -> dict[str, Any]:
    """Return what the server's requests run: ``queries_ms`` (sleeps), ``request_session``."""
    return dict(json.loads(os.environ[SETTINGS_ENV]))


def _sleep(seconds: float) -> Any:
    return parallelq.session.execute(_SLEEP, {"seconds": seconds}).scalar()


_TASKS = [functools.partial(_sleep, ms / 1000) for ms in app_settings()["queries_ms"]]
_REQUEST_SESSION = bool(app_settings()["request_session"])
_COUNTS_LOCK = threading.Lock()
_COUNTS = {"requests": 0, "tasks": 0, "in_caller": 0}


def _own_statement() -> None:
    # The request's Session keeps its connection, in a transaction, until teardown.
    if _REQUEST_SESSION:
        parallelq.session.execute(sa.text("SELECT 1"))


def base(request: HttpRequest) -> HttpResponse:
    """What fanout() does but its fan-out: the base cost of a request."""
    _own_statement()
    return HttpResponse("base\n", content_type="text/plain")


def fanout(request: HttpRequest) -> HttpResponse:
    """SELECT 1 on the request's Session (unless not to use it), then parallel() of the sleeps."""
    _own_statement()
    results = parallelq.parallel(*_TASKS)
    stats = request.parallelq.stats  # type: ignore[attr-defined]
    with _COUNTS_LOCK:
        _COUNTS["requests"] += 1
        _COUNTS["tasks"] += stats.tasks
        _COUNTS["in_caller"] += stats.in_caller
    return HttpResponse(f"{len(results)} queries\n", content_type="text/plain")


def counts(request: HttpRequest) -> JsonResponse:
    """Return and reset the fan-out's request and task counts since the last call."""
    with _COUNTS_LOCK:
        answer = dict(_COUNTS)
        _COUNTS.update(requests=0, tasks=0, in_caller=0)
    return JsonResponse(answer)


urlpatterns = [path("base/", base), path("fanout/", fanout), path("counts/", counts)]
