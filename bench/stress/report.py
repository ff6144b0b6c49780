"""The figures of a run, each with the rule it must meet, and the verdict printed from them."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from bench.stress.app import KINDS, POOL_CAPACITY, WORKER_THREADS
from bench.stress.checks import State, leaked_threads
from bench.stress.load import FaultThread, Results
from bench.stress.tally import SERVER


@dataclass
class Figure:
    name: str
    value: Any
    rule: str = ""  # e.g. "= 0"; empty for a figure that is only reported
    ok: bool = True


def response_figures(warm: Results, run: Results) -> list[Figure]:
    by_status: collections.Counter[int] = collections.Counter()
    for (_, status), n in run.statuses.items():
        by_status[status] += n
    unexpected = sum(
        n
        for results in (warm, run)
        for (kind, status), n in results.statuses.items()
        if status not in KINDS[kind].statuses
    )
    per_kind = ", ".join(
        f"{kind} {status}×{n}" for (kind, status), n in sorted(run.statuses.items())
    )
    return [
        Figure("warm-up requests", warm.sent),
        Figure("requests sent", run.sent),
        Figure("run time (s)", f"{run.seconds:.1f}"),
        Figure("throughput (req/s)", f"{run.sent / max(run.seconds, 1e-9):.1f}"),
        Figure("responses by status", _listing(by_status)),
        Figure("responses by kind", per_kind or "none"),
        Figure("unexpected statuses", unexpected, "= 0", unexpected == 0),
        Figure("slowest response by kind (s)", _listing(run.slowest, "{:.2f}")),
    ]


def fault_figures(
    faults: FaultThread, run: Results, counts: collections.Counter[str]
) -> list[Figure]:
    """Faults injected during the run (the warm-up's are not counted)."""
    long_requests = sum(n for (kind, _), n in run.statuses.items() if kind == "long")
    escaped = run.statuses[("long", 200)]
    return [
        Figure("faults: terminated backends", faults.killed, "> 0",
               faults.killed > 0 or long_requests == 0),
        Figure("faults: timeouts", counts["fault: timeouts"]),
        Figure("faults: failing tasks", counts["fault: failing tasks"]),
        Figure("long queries that escaped the kill", f"{escaped} of {long_requests}"),
        # A disconnect makes SQLAlchemy replace every pooled connection older than it.
        Figure("pool connections invalidated / opened", f"{counts['pool: connections invalidated']}"
               f" / {counts['pool: connections opened']}"),
    ]  # fmt: skip


def error_figures(warm: Results, run: Results, faults: FaultThread) -> list[Figure]:
    client_errors = warm.errors + run.errors
    if faults.error:
        client_errors[f"fault thread: {faults.error}"] += 1
    expected, unexpected = collections.Counter(), collections.Counter()
    for key, n in SERVER.counts.items():
        if key.startswith("exception "):
            kind, _, name = key.removeprefix("exception ").partition(": ")
            ok = kind in KINDS and name in KINDS[kind].exceptions
            (expected if ok else unexpected)[f"{kind}: {name}"] += n
    logs = {k.removeprefix("log "): n for k, n in SERVER.counts.items() if k.startswith("log ")}
    log_errors = sum(n for k, n in logs.items() if " ERROR:" in k or " CRITICAL:" in k)
    return [
        Figure("client errors", _listing(client_errors), "none", not client_errors),
        Figure("server exceptions, warm-up included (injected)", _listing(expected)),
        Figure(
            "server exceptions, warm-up included (unexpected)",
            _listing(unexpected),
            "none",
            not unexpected,
        ),
        Figure("log records (parallelq, sqlalchemy.pool)", _listing(logs)),
        Figure("error log records", log_errors, "= 0", log_errors == 0),
    ]


def leak_figures(
    state: State, baseline: tuple[int, int], waited: float, acked: list[str], peak: int
) -> list[Figure]:
    leaked = leaked_threads(state, baseline)
    lost = len(set(acked) - state.rows)
    cap = POOL_CAPACITY
    scopes = len(SERVER.scopes)
    return [
        Figure("teardown wait (s)", f"{waited:.1f}"),
        Figure("threads after warm-up / after run", f"{baseline[0]} / {state.threads}"),
        Figure("parallelq worker threads", state.workers, f"<= {WORKER_THREADS}",
               state.workers <= WORKER_THREADS),
        Figure("leaked threads", leaked, "= 0", leaked == 0),
        Figure("pool connections checked out", state.checked_out, "= 0", state.checked_out == 0),
        Figure("backends on the run's database", state.backends, f"<= {cap}",
               state.backends <= cap),
        # Sampled every FAULT_POLL s; a closed connection's backend may still be exiting
        # while its replacement connects, so this can pass the capacity for a moment.
        Figure("peak backends during the run (sampled)", peak),
        Figure("idle-in-transaction backends", state.idle_in_transaction, "= 0",
               state.idle_in_transaction == 0),
        Figure("scopes not closed", f"{state.open_scopes} of {scopes}", "= 0",
               state.open_scopes == 0),
        Figure("leaked sessions", state.leaked_sessions, "= 0", state.leaked_sessions == 0),
        Figure("pg_sleep still running", state.sleeping, "= 0", state.sleeping == 0),
        Figure("rows lost", f"{lost} of {len(acked)} acknowledged", "= 0", lost == 0),
    ]  # fmt: skip


def _listing(counts: dict[Any, Any], fmt: str = "{}") -> str:
    return ", ".join(f"{k}: {fmt.format(v)}" for k, v in sorted(counts.items())) or "none"


def report(figures: list[Figure], markdown: bool) -> int:
    """Print the figures and the verdict; return the exit status."""
    width = max(len(f.name) for f in figures)
    for f in figures:
        verdict = "" if not f.rule else ("  ok" if f.ok else "  FAILED")
        rule = f"  (must be {f.rule})" if f.rule else ""
        print(f"{f.name:<{width}}  {f.value}{rule}{verdict}")
    if markdown:
        print("\n| Figure | Value | Requirement | Result |\n| --- | --- | --- | --- |")
        for f in figures:
            result = "" if not f.rule else ("ok" if f.ok else "**FAILED**")
            print(f"| {f.name} | {f.value} | {f.rule} | {result} |")
    failed = [f.name for f in figures if not f.ok]
    print("stress: OK" if not failed else f"stress: FAILED ({'; '.join(failed)})")
    return 1 if failed else 0
