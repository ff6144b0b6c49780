"""The demo's one page: the bookstore dashboard, timed serially and with parallelq."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render

from demo_project.bookstore import ensure_seeded
from demo_project.dashboard import measure
from parallelq import request_scope

MAX_LATENCY_MS = 2000


def dashboard(request: HttpRequest) -> HttpResponse:
    """Show the panels and how long they took; ?latency_ms=100 adds a wait to each query."""
    raw = request.GET.get("latency_ms", "0")
    if not raw.isdigit() or int(raw) > MAX_LATENCY_MS:
        return HttpResponseBadRequest(
            f"latency_ms must be a whole number of milliseconds from 0 to {MAX_LATENCY_MS}.\n"
        )
    ensure_seeded()
    run = measure(int(raw) / 1000)
    context = {
        "run": run,
        "latency_ms": int(raw),
        "stats": request_scope(request).stats,
        "serial_ms": round(run.serial_seconds * 1000),
        "parallel_ms": round(run.parallel_seconds * 1000),
    }
    return render(request, "demo/dashboard.html", context)
