"""Tables of bench.capacity: the costs, the predictions for 1–100 servers, a measured run."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from bench.capacity.measure import Measured
from bench.capacity.model import Costs, Deployment, Prediction
from bench.compare import markdown


def _ms(value: float) -> str:
    return "stalls" if math.isinf(value) else f"{value:.1f}"


def costs(costs: Costs) -> str:
    """Return the costs the predictions start from, one line each."""
    queries = ", ".join(f"{q:.2f}" for q in costs.queries_ms)
    return "\n".join(
        [
            f"- queries, each alone on an open Session: {queries} ms",
            f"- per query, app CPU {_list(costs.query_app_cpu_ms)} ms, "
            f"database CPU {_list(costs.query_db_cpu_ms)} ms",
            f"- per task: {costs.task_ms:.3f} ms on the request's path, app CPU "
            f"{costs.task_app_cpu_ms:.3f} ms, database CPU {costs.task_db_cpu_ms:.3f} ms",
            f"- the request without its fan-out: {costs.request_ms:.2f} ms, app CPU "
            f"{costs.request_app_cpu_ms:.2f} ms, database CPU {costs.request_db_cpu_ms:.2f} ms"
            + (f", load generator CPU {costs.client_cpu_ms:.2f} ms" if costs.client_cpu_ms else ""),
            f"- CPU per request in all: app {costs.app_cpu_ms:.2f} ms, "
            f"database {costs.db_cpu_ms:.2f} ms",
        ]
    )


def _list(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def deployment(plan: Deployment) -> str:
    """Return the settings the predictions are for, in one paragraph."""
    pooler = (
        f"PgBouncer default_pool_size {plan.pgbouncer_pool} and max_client_conn "
        f"{plan.max_client_conn} per database server"
        if plan.pgbouncer_pool is not None
        else "no PgBouncer"
    )
    databases = f"{plan.replicas} replicas" if plan.replicas else "one database server"
    return (
        f"Per app server {plan.processes} processes × {plan.threads} threads, "
        f"{plan.in_flight} requests in flight per process, {plan.app_cores:g} cores; "
        f"MAX_WORKERS {plan.max_workers}, pool_size {plan.pool_size}, "
        f"request's Session {'used' if plan.request_session else 'not used'}, "
        f"{plan.django_connections} Django connection(s) per thread"
        f"{' (tasks use the ORM too)' if plan.django_in_tasks else ''}; {databases} of "
        f"{plan.db_cores:g} cores, max_connections {plan.max_connections}; {pooler}."
    )


def predictions(rows: list[Prediction]) -> str:
    """Return the predictions as a markdown table, flags below it."""
    header = [
        "servers",
        "latency ms (alone)",
        "req/s",
        "bottleneck",
        "app-side conns",
        "conns to each db",
        "busy mean / peak",
        "db backends",
        "flags",
    ]
    body = [
        [
            str(p.servers),
            f"{_ms(p.latency_ms)} ({p.unloaded_ms:.1f})",
            f"{p.requests_per_second:,.0f}",
            p.bound,
            f"{p.app_connections:,}",
            f"{p.db_client_connections:,}",
            f"{p.busy_mean:,.0f} / {p.busy_peak:,}",
            f"{p.server_connections:,}",
            "; ".join(p.flags) or "—",
        ]
        for p in rows
    ]
    return markdown.table(header, body, "rrrlrrrrl")


def measured(
    runs: dict[int, list[Measured]], predicted: dict[int, Prediction], costs: Costs
) -> str:
    """Return measured runs beside predictions, one row per process count (medians)."""
    header = [
        "processes",
        "measured mean ms (runs)",
        "measured p50 ms",
        "measured p99 ms",
        "predicted ms",
        "pred / mean",
        "pred / p50",
        "peak backends meas. / pred.",
        "busy peak meas. / pred.",
        "in caller",
        "app CPU ms/req meas. / pred.",
        "machine busy (ours)",
    ]
    body = []
    for processes, samples in sorted(runs.items()):
        p = predicted[processes]
        mean = statistics.median(s.mean_ms for s in samples)
        p50 = statistics.median(s.p50_ms for s in samples)
        spread = ", ".join(f"{s.mean_ms:.1f}" for s in samples)
        body.append(
            [
                str(processes),
                f"{mean:.1f} ({spread})",
                f"{p50:.1f}",
                f"{statistics.median(s.p99_ms for s in samples):.1f}",
                _ms(p.latency_ms),
                f"{p.latency_ms / mean:.2f}",
                f"{p.latency_ms / p50:.2f}",
                f"{max(s.peak_open for s in samples)} / {p.server_connections}",
                f"{max(s.peak_busy for s in samples)} / {min(p.busy_peak, p.server_connections)}",
                f"{statistics.median(s.in_caller for s in samples):.1%}",
                f"{statistics.median(s.app_cpu_ms for s in samples):.2f} / {costs.app_cpu_ms:.2f}",
                _busy(samples),
            ]
        )
    return markdown.table(header, body, "rrrrrrrrrrrl")


def _busy(samples: list[Measured]) -> str:
    machine = statistics.median(s.machine_busy for s in samples)
    ours = statistics.median(s.ours_busy for s in samples)
    return f"{machine:.0%} ({ours:.0%})"
