"""Why parallelq misses a goal: the reasons, with this run's own figures and docs/profile.md's.

The causes were measured by ``python -m bench.profile`` (docs/profile.md) and the
servers' CPU time per request in the HTTP scenario; this module only fills in the
figures of the run at hand, for each goal the run did not meet.
"""

from __future__ import annotations

from bench.compare import config, goals
from bench.compare.record import Run
from bench.compare.scenarios import SCENARIOS

PROFILE = "[profile.md](profile.md)"
RAW = "raw-psycopg2"  # the contender with no SQLAlchemy: the floor under the others


def section(run: Run) -> str:
    """Return the markdown section explaining each missed goal, or saying none was."""
    missed = [v for v in goals.verdicts(run) if v.met is False]
    if not missed:
        return "## Missed goals\n\nNone in this run."
    # The targets of one goal that share a reason are listed together, the reason once.
    grouped: dict[tuple[str, str], list[goals.Verdict]] = {}
    for verdict in missed:
        grouped.setdefault((verdict.goal, _reason(run, verdict)), []).append(verdict)
    items = []
    for (goal, reason), verdicts in grouped.items():
        targets = "; ".join(f"{v.target} ({v.measured})" for v in verdicts)
        items.append(f"- **{goal}**: {targets}. {reason}")
    return (
        "## Missed goals, and why\n\n"
        f"Goal 5. The per-task figures come from {PROFILE} (`python -m bench.profile`), "
        "which times 50 lookups eight ways with their CPU time and context switches and "
        "compares cProfile's view of a task with a serial statement's.\n\n" + "\n".join(items)
    )


def _reason(run: Run, verdict: goals.Verdict) -> str:
    if verdict.goal.startswith(("1.", "2.")):
        return _fanout(run, "fanout" if verdict.goal.startswith("1.") else "waves")
    if verdict.goal.startswith("3."):
        return _trivial(run)
    return _http(run)


def _fanout(run: Run, key: str) -> str:
    pq, threads = run.samples[key]["parallelq"], run.samples[key]["threads"]
    overlap = "overlap" if pq.min <= threads.max and threads.min <= pq.max else "do not overlap"
    return (
        f"{_floor(run, key)}parallelq and the thread peer run the same statements on as many "
        f"threads; here parallelq's median is {(pq.median - threads.median) * 1e3:+.1f} ms "
        f"from the peer's, and their min–max ranges {overlap}. What parallelq adds per task "
        f"is its task machinery ({PROFILE}, *no-op tasks, workers*: tens of µs per task), "
        "while the limit assumes none. Where the time goes is timed statement by statement "
        f"in {PROFILE}, *Fan-out, statement by statement*: when each task begins and sends, "
        "against the thread peer."
    )


def _floor(run: Run, key: str) -> str:
    # What the server, the driver and the threads cost with no SQLAlchemy at all.
    raw = run.samples[key].get(RAW)
    scenario = SCENARIOS[key]
    if raw is None or scenario.limit is None:
        return ""
    pq = run.samples[key]["parallelq"].median
    over = pq - scenario.limit
    floor = raw.median - scenario.limit
    return (
        f"Raw psycopg2 on the same threads, with no SQLAlchemy (*{RAW}*), takes "
        f"{raw.median * 1e3:.1f} ms, {raw.median / scenario.limit:.3f} × the limit. That is "
        f"{floor * 1e3:.1f} ms of parallelq's {over * 1e3:.1f} ms over the limit: the "
        "server's sleeps overrunning, the round trips and the thread wake-ups, which no "
        "contender on threads and psycopg2 goes under. The rest is a Session per task, with "
        "its connection checkout, done under the GIL one task after another before each can "
        "send its statement. "
    )


def _trivial(run: Run) -> str:
    n = SCENARIOS["trivial"].workload.n
    serial = run.samples["trivial"]["serial"].median / n * 1e6
    threads = goals.overhead_us(run, "threads")
    peer = f"the thread peer ends at {threads:+.0f} µs here" if threads is not None else ""
    raw = goals.overhead_us(run, RAW)
    if raw is not None:
        peer += f", and raw psycopg2 on the same threads, with no SQLAlchemy, at {raw:+.0f} µs"
        if raw <= 0:
            peer += " (below serial code: the ORM's work per statement, not the threads, costs)"
    return (
        f"A primary-key lookup through the ORM is CPU work done under the GIL (serial "
        f"code takes {serial:.0f} µs each here), so threads overlap little of it. parallelq "
        "runs up to MAX_WORKERS of a call's tasks at once whatever they do, as the thread "
        "peer does, and "
        "every task adds work serial code does not: a Session and a connection "
        f"checkout of its own, which the contract requires ({PROFILE}: *a Session per "
        "lookup, no parallelq*, plain SQLAlchemy in one thread with no BEGIN or ROLLBACK, "
        "is over 100 µs per lookup above serial code before any parallelq code or thread, "
        "and parallelq's own work per task comes on top of it), and, on worker threads, "
        "several context switches per "
        "task as threads hand the GIL back and forth on each round trip, against one for "
        f"serial code (*voluntary switches*). No thread-based "
        f"contender comes near the target: {peer}. For such statements, keep them "
        "together in one task and fan out what waits on the database; "
        "`manage.py parallelq_bench` shows the per-task cost on a team's own database."
    )


def _http(run: Run) -> str:
    assert run.http is not None
    clients = goals.HTTP_CLIENTS
    cpu = {
        name: run.http[(name, clients)].cpu_ms.median
        for name in ("parallelq", "serial", "threads", "asyncio")
        if run.http[(name, clients)].cpu_ms.values
    }
    figures = ", ".join(f"{name} {ms:.2f} ms" for name, ms in cpu.items())
    aio_p99 = run.http[("asyncio", clients)].p99_ms.median
    serial_p99 = run.http[("serial", clients)].p99_ms.median
    pq = run.http[("parallelq", clients)]
    cores = pq.cpu_ms.median * pq.rps.median / 1e3
    return (
        f"At {clients} clients the bound is the server process's GIL, not the machine: "
        f"parallelq's gunicorn spent {cores:.2f} s of CPU per second ({pq.cpu_ms.median:.2f} "
        f"ms per request × {pq.rps.median:.0f} requests), and one process runs Python on "
        "one core at a time; under this load, `vmstat` found the two cores about 40% idle. So "
        "requests per second follow the CPU time a request costs in its server process: "
        f"the servers spent {figures} per request. The GIL also keeps connections busy "
        "longer than their statements: once its answer is in, a statement's thread waits "
        "for the GIL, holding its connection (1.6–2.0 ms per 10 ms statement, measured; "
        "[design.md](design.md), *Under HTTP load at 16 clients the connections run out "
        f"too*), and here parallelq had {pq.peak_busy} of its {config.pool_capacity()} "
        "connections busy at once. parallelq's fan-out costs what the "
        "trivial scenario's tasks cost, a Session and a checkout per task and a GIL "
        "hand-off per round trip, on top of Django's request handling; the asyncio peer is "
        "a bare ASGI app on one thread with asyncpg, no framework. parallelq's caller-runs "
        "keeps it near serial cost once no worker is free, but does not make a task "
        f"cheaper. {_asyncio_p99(aio_p99, serial_p99)}"
    )


def _asyncio_p99(aio_p99: float, serial_p99: float) -> str:
    if aio_p99 > serial_p99:
        return (
            f"The asyncio peer's p99 here is {aio_p99:.1f} ms against serial's "
            f"{serial_p99:.1f} ms: serving more requests at once in its one process, it "
            "misses that target too."
        )
    return f"The asyncio peer's p99 here is {aio_p99:.1f} ms, serial's {serial_p99:.1f} ms."
