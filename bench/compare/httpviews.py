"""The Django views gunicorn serves in the HTTP scenario: 5 × 10 ms queries per request.

Each view is one contender; the URLs are in ``urlpatterns``. Every process builds
its Engines and thread pool on import, after gunicorn forked it.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from sqlalchemy import orm

import parallelq
from bench.compare import config

_DB = settings.DATABASES["default"]
_SERIAL_ENGINE = config.sync_engine(_DB, "serial")
_THREADS_ENGINE = config.sync_engine(_DB, "threads")
_EXECUTOR = ThreadPoolExecutor(config.MAX_WORKERS, thread_name_prefix="bench-threads")


def _sleep(session: orm.Session) -> Any:
    return session.execute(sa.select(sa.func.pg_sleep(config.HTTP_QUERY_SECONDS))).scalar()


def _answer(results: list[Any]) -> HttpResponse:
    return HttpResponse(f"{len(results)} queries\n", content_type="text/plain")


def serial(request: HttpRequest) -> HttpResponse:
    """One Session; the queries run one after another."""
    with orm.Session(_SERIAL_ENGINE) as session:
        return _answer([_sleep(session) for _ in range(config.HTTP_QUERIES)])


def with_parallelq(request: HttpRequest) -> HttpResponse:
    """parallel() over the queries, in the request's scope (ParallelQueryMiddleware)."""
    tasks = [_sleep_in_task] * config.HTTP_QUERIES
    results = parallelq.parallel(*tasks)
    stats = parallelq.request_scope(request).stats
    with _TASKS_LOCK:
        _TASKS["tasks"] += stats.tasks
        _TASKS["in_caller"] += stats.in_caller
    return _answer(results)


_TASKS_LOCK = threading.Lock()
_TASKS = {"tasks": 0, "in_caller": 0}  # parallelq's tasks since the last parallelq_tasks()


def parallelq_tasks(request: HttpRequest) -> JsonResponse:
    """Return and reset how many tasks parallelq ran, and how many in the caller's thread."""
    with _TASKS_LOCK:
        counts = dict(_TASKS)
        _TASKS.update(tasks=0, in_caller=0)
    return JsonResponse(counts)


def _sleep_in_task() -> Any:
    return _sleep(parallelq.session())


def threads(request: HttpRequest) -> HttpResponse:
    """The process's ThreadPoolExecutor (MAX_WORKERS threads), a Session per query."""
    return _answer(list(_EXECUTOR.map(_sleep_in_own_session, range(config.HTTP_QUERIES))))


def _sleep_in_own_session(i: int) -> Any:
    with orm.Session(_THREADS_ENGINE) as session:
        return _sleep(session)


urlpatterns = [
    path("serial/", serial),
    path("parallelq/", with_parallelq),
    path("threads/", threads),
    path("parallelq-tasks/", parallelq_tasks),
]
