"""Views and URLs of the timeline, Server-Timing and panel tests (ROOT_URLCONF in those tests)."""

from __future__ import annotations

import contextvars

import sqlalchemy as sa
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path

from parallelq import parallel, session, submit
from tests.base import sleep

# Set by the views; the task_finished tests read it in their receivers.
request_label: contextvars.ContextVar[str] = contextvars.ContextVar("request_label", default="")

PAGE = "<!doctype html><html><head><title>tasks</title></head><body>{}</body></html>"


def fail() -> None:
    sleep(0.05)
    raise ValueError("broken on purpose")


def named(request):
    """Run two 0.2 s sleeps and a task that fails, by name, and a statement of the request's own."""
    request_label.set(request.GET.get("label", ""))
    session.execute(sa.select(sa.literal(1))).scalar_one()
    results = parallel(
        orders=lambda: sleep(0.2),
        customers=lambda: sleep(0.2),
        broken=fail,
        return_exceptions=True,
    )
    return HttpResponse(PAGE.format(", ".join(f"{k}: {v!r}" for k, v in results.items())))


def positional(request):
    """Run two 0.1 s sleeps and a task that fails, positionally."""
    results = parallel(lambda: sleep(0.1), lambda: sleep(0.1), fail, return_exceptions=True)
    return HttpResponse(PAGE.format(results))


def raising(request):
    """Let a task's error reach the view: Django answers 500."""
    parallel(ok=lambda: sleep(0.05), broken=fail)
    return HttpResponse("not reached")


def renamed(request):
    """Run one task with a name that is no valid Server-Timing token; add a metric of its own."""
    parallel(**{'weird "name", é;\\': lambda: sleep(0.01)})
    response = HttpResponse("ok")
    response["Server-Timing"] = "view;dur=1.5"
    return response


def streamed(request):
    """Run a task before returning and two that end while the body streams."""
    parallel(before=lambda: sleep(0.01))
    futures = [submit(sleep, 0.1), submit(sleep, 0.1)]

    def lines():
        for future in futures:
            yield f"slept {future.result()}\n"

    return StreamingHttpResponse(lines())


urlpatterns = [
    path("named/", named),
    path("positional/", positional),
    path("raising/", raising),
    path("renamed/", renamed),
    path("streamed/", streamed),
]
