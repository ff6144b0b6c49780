"""The HTTP scenario's section of the report."""

from __future__ import annotations

from bench.compare import config, markdown, servers, wrk
from bench.compare.httpload import CLIENTS, CONTENDERS, HttpPlan, connection_cap
from bench.compare.record import Run
from bench.compare.stats import Samples


def section(run: Run, image: str) -> str:
    """Return the HTTP scenario's markdown: setup, one table per client count, the chart."""
    plan = run.http_plan
    assert plan is not None and run.http is not None
    parts = [
        "## HTTP load: 5 × 10 ms queries per request",
        _setup(plan),
        "\n".join(f"- **{c.name}** (`{c.path}`): {c.description}." for c in CONTENDERS),
        *(_http_table(run, clients) for clients in CLIENTS),
        f"![HTTP load]({image})",
    ]
    return "\n\n".join(parts)


def _headroom(threads: int) -> str:
    capacity = config.pool_capacity()
    if threads < capacity:
        return (
            f"With fewer request threads than the pool's {capacity} connections, serial keeps "
            f"at most {threads} of them busy and a fan-out has room to do better; at "
            f"{max(CLIENTS)} clients requests also queue in the server."
        )
    return (
        f"With {threads} request threads and a pool of {capacity} connections, serial alone "
        "can keep the whole pool busy: a fan-out has no more connections to use."
    )


def _setup(plan: HttpPlan) -> str:
    return (
        f"gunicorn (`gthread`, {servers.GUNICORN_WORKERS} worker process × {plan.threads} "
        "threads) serves the Django views, uvicorn "
        f"({servers.UVICORN_WORKERS} worker process, its default h11 parser and asyncio loop) "
        "the bare ASGI app, both on 127.0.0.1 and both up for the whole scenario. One process "
        "each, because a keep-alive connection stays with the process that accepted it: a "
        "trial run with 2 workers × 8 threads saw serial's req/s at 16 clients go from 137 to "
        "262 between repetitions (8, then 15 of its connections busy). "
        f"{_headroom(plan.threads)} "
        f"`wrk --threads 1 --latency --timeout {wrk.REQUEST_TIMEOUT}` loads one URL at a time "
        f"for {plan.seconds:g} s, {plan.reps} time(s) per contender and client count, "
        f"round-robin, after an untimed {plan.warmup:g} s warm-up of each. wrk, the servers and "
        "PostgreSQL share the same cores.\n\n"
        "*Connections* come from `pg_stat_activity`, sampled every 50 ms during each run, "
        "counting the backends with the contender's `application_name`: *open* is the most at "
        "once, idle pooled ones included (a pool keeps what an earlier, busier run opened), "
        "*busy* the most at once not idle, *seen* the distinct backends seen during the run "
        "(above *open*: connections were closed and new ones opened meanwhile; one that lived "
        "less than 50 ms can be missed). Each is the highest of any repetition. The cap is the "
        f"server's processes × the pool's {config.pool_capacity()} connections.\n\n"
        "*Server CPU ms/req* is the CPU time (user + system, from `/proc`) of the server's "
        "processes during a run over the requests it served, the median of the repetitions: "
        "for gunicorn, Django's request handling and every thread of the view; for uvicorn, "
        "the ASGI app and its event loop. PostgreSQL's CPU is not in it. With every core busy, "
        "it is what bounds req/s."
    )


def _http_table(run: Run, clients: int) -> str:
    assert run.http is not None
    pq = run.http[("parallelq", clients)].rps.median
    rows = []
    for c in CONTENDERS:
        cell = run.http[(c.name, clients)]
        rows.append(
            [
                f"**{c.name}**" if c.name == "parallelq" else c.name,
                f"{cell.rps.median:.0f} ({cell.rps.min:.0f}–{cell.rps.max:.0f})",
                f"{cell.p50_ms.median:.1f}",
                f"{cell.p99_ms.median:.1f} ({cell.p99_ms.min:.1f}–{cell.p99_ms.max:.1f})",
                f"{cell.peak_open} / {cell.peak_busy} / {cell.seen} / {connection_cap(c.name)}",
                f"{cell.cpu_ms.median:.2f}" if cell.cpu_ms.values else "—",
                str(cell.errors),
                f"{pq / cell.rps.median:.2f}",
            ]
        )
    header = ["contender", "req/s (min–max)", "p50 ms", "p99 ms (min–max)"]
    header += ["connections: open / busy / seen / cap", "server CPU ms/req", "errors"]
    header += ["parallelq ÷ it (req/s)"]
    return (
        f"### {clients} concurrent clients\n\n"
        + markdown.table(header, rows)
        + "\n\n"
        + _in_caller(run.http[("parallelq", clients)].in_caller)
        + _http_losses(run, clients)
    )


def _in_caller(share: Samples) -> str:
    if not share.values:
        return ""
    return (
        f"parallelq ran {share.median:.0%} of its tasks in the request's own thread "
        f"({share.min:.0%}–{share.max:.0%} over the repetitions): the ones that found no free "
        "worker thread or idle pooled connection (caller-runs, `stats.in_caller`; see "
        "design.md, *Scopes and threads*).\n\n"
    )


def _http_losses(run: Run, clients: int) -> str:
    assert run.http is not None
    pq = run.http[("parallelq", clients)]
    lines = []
    for c in CONTENDERS:
        other = run.http[(c.name, clients)]
        if c.name == "parallelq":
            continue
        if other.rps.median > pq.rps.median:
            lines.append(
                f"- {c.name} served {other.rps.median / pq.rps.median - 1:.0%} more requests/s "
                f"({other.rps.median:.0f} vs {pq.rps.median:.0f})."
            )
        if other.p99_ms.median < pq.p99_ms.median:
            lines.append(
                f"- {c.name} had a lower p99: {other.p99_ms.median:.1f} ms vs "
                f"{pq.p99_ms.median:.1f} ms."
            )
    if not lines:
        return "No contender beat parallelq's median req/s or p99 here."
    return "Where parallelq lost (medians):\n\n" + "\n".join(lines)
