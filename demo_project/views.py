"""The demo's pages: the dashboard, timed serially and with parallelq; its panels as JSON."""

from __future__ import annotations

import functools

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render

from demo_project.bookstore import PANELS, ensure_seeded
from demo_project.dashboard import measure
from parallelq import aparallel, request_scope
from parallelq.waterfall import bars

MAX_LATENCY_MS = 2000


def dashboard(request: HttpRequest) -> HttpResponse:
    """Show the panels and how long they took; ?latency_ms=100 adds a wait to each query."""
    raw = request.GET.get("latency_ms", "0")
    if not raw.isdigit() or int(raw) > MAX_LATENCY_MS:
        return HttpResponseBadRequest(
            f"latency_ms must be a whole number of milliseconds from 0 to {MAX_LATENCY_MS}.\n"
        )
    ensure_seeded()
    scope = request_scope(request)
    run = measure(int(raw) / 1000, scope.timeline)
    span = max(run.serial_seconds, run.parallel_seconds)  # one axis for both waterfalls
    context = {
        "run": run,
        "latency_ms": int(raw),
        "stats": scope.stats,
        "serial_ms": round(run.serial_seconds * 1000),
        "parallel_ms": round(run.parallel_seconds * 1000),
        "serial_bars": bars(run.serial, span=span),
        "parallel_bars": bars(run.parallel, span=span),
        "span_ms": span * 1000,
    }
    return render(request, "demo/dashboard.html", context)


async def panels(request: HttpRequest) -> JsonResponse:
    """Return the panels as JSON from an async view: aparallel() leaves the event loop free."""
    await sync_to_async(ensure_seeded)()
    tasks = {name: functools.partial(panel, 0) for name, panel in PANELS.items()}
    return JsonResponse(await aparallel(**tasks))
