"""Views the middleware tests request through Django's test client."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse

from parallelq import aparallel, get_engine, parallel, session, submit
from parallelq.scoping import Scope, current_scope
from tests.base import backend_pid, sleep
from tests.models import Note


def backends(request):
    """Report the request's backend pid and its tasks' pids."""
    request_pid = backend_pid()

    def task_pid():
        sleep(0.1)
        return backend_pid()

    return JsonResponse({"request": request_pid, "tasks": parallel(*[task_pid] * 4)})


def notes(request):
    """Report what the request's Session holds when the view starts, then the notes."""
    fresh = {"identity_map": len(session.identity_map), "in_transaction": session.in_transaction()}
    texts = session.scalars(sa.select(Note.text).order_by(Note.id)).all()
    return JsonResponse({**fresh, "texts": texts})


def write(request):
    """Add a note in a task, committing it only with ?commit=1; ?main=1 also leaves one pending."""
    text = request.GET["text"]

    def add():
        session.add(Note(text=text))
        if request.GET.get("commit") == "1":
            session.commit()
        return text

    parallel(add)
    if request.GET.get("main") == "1":
        session.add(Note(text=f"{text} (request)"))
    return HttpResponse("ok")


def stream(request):
    """Stream lines from futures and from the request's Session as the body is read."""
    futures = [submit(lambda i=i: (sleep(0.05), i)[1]) for i in range(3)]

    def lines():
        for future in futures:
            yield f"task {future.result()}\n"
        count = session.execute(sa.select(sa.func.count()).select_from(Note)).scalar_one()
        yield f"notes {count}\n"

    return StreamingHttpResponse(lines())


def load(request):
    """Load every note as an ORM object into the request's Session; report how many it holds."""
    loaded = session.scalars(sa.select(Note)).all()
    return JsonResponse({"loaded": len(loaded), "identity_map": len(session.identity_map)})


def stats(request):
    """Run four 0.1 s sleeps at once; report request.parallelq's stats and what it is."""
    parallel(*[lambda: sleep(0.1)] * 4)
    scope = request.parallelq
    return JsonResponse(
        {
            **dataclasses.asdict(scope.stats),
            "is_scope": isinstance(scope, Scope),
            "is_current": scope is current_scope(),
        }
    )


def sleeps(request):
    """Run five 0.1 s sleeps at once; with ?own=1 the request's Session first holds a connection."""
    own = backend_pid() if request.GET.get("own") == "1" else None
    return JsonResponse({"own": own, "slept": parallel(*[lambda: sleep(0.1)] * 5)})


def cheap(request):
    """Select 1 on the request's own Session and in three tasks."""
    one = sa.select(sa.literal(1))
    own = session.execute(one).scalar_one()
    tasks = parallel(*[lambda: session.execute(one).scalar_one()] * 3)
    return JsonResponse({"own": own, "tasks": tasks})


async def async_sleeps(request):
    """Await five sleeps of ?seconds= (0.3 by default) with aparallel() in an async view."""
    seconds = float(request.GET.get("seconds", "0.3"))
    return JsonResponse({"slept": await aparallel(*[lambda: sleep(seconds)] * 5)})


async def async_parallel(request):
    """Call parallel() in an async view, on the event loop's thread: refused."""
    return JsonResponse({"results": parallel(lambda: 1)})


async def ping(request):
    """Answer at once, from the event loop."""
    return HttpResponse("pong")


def pool(request):
    """Report how many of the Engine's connections are checked out (the request's own: none)."""
    return JsonResponse({"checkedout": get_engine().pool.checkedout()})
