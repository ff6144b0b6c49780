"""What is left once the clients are done: threads, connections, backends, scopes and rows."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.stress.db import OTHER_BACKENDS
from bench.stress.tally import SERVER
from parallelq import get_engine

SETTLE_SECONDS = 3.0  # the most we wait for teardown after the last response


@dataclass
class State:
    """What is left over once the clients are done."""

    threads: int
    workers: int
    serving: int  # the HTTP server's request threads still alive
    checked_out: int
    backends: int
    idle_in_transaction: int
    sleeping: int
    open_scopes: int
    leaked_sessions: int
    rows: set[str]


def thread_census() -> tuple[int, int, int]:
    """Return threading.active_count(), parallelq's workers and the server's request threads."""
    names = [t.name for t in threading.enumerate()]
    workers = sum(name.startswith("parallelq") for name in names)
    serving = sum("process_request_thread" in name for name in names)  # ThreadingMixIn's
    return len(names), workers, serving


def quiesce() -> tuple[int, int]:
    """Wait (bounded) for the warm-up's requests to be torn down; return the thread baseline."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        threads, workers, serving = thread_census()
        torn_down = serving == 0 and all(s.closed for s in list(SERVER.scopes))
        if torn_down or time.monotonic() >= deadline:
            return threads, workers
        time.sleep(0.05)


def observe(conn: Any) -> State:
    threads, workers, serving = thread_census()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%'), "
            "count(*) FILTER (WHERE state = 'active' AND query LIKE '%pg_sleep%') " + OTHER_BACKENDS
        )
        backends, idle_in_transaction, sleeping = cur.fetchone()
        cur.execute("SELECT id FROM stress_write")
        rows = {row_id for (row_id,) in cur.fetchall()}
    scopes = list(SERVER.scopes)
    return State(
        threads=threads,
        workers=workers,
        serving=serving,
        checked_out=get_engine().pool.checkedout(),
        backends=backends,
        idle_in_transaction=idle_in_transaction,
        sleeping=sleeping,
        open_scopes=sum(not s.closed for s in scopes),
        leaked_sessions=sum(s.open_sessions for s in scopes),
        rows=rows,
    )


def leaked_threads(state: State, baseline: tuple[int, int]) -> int:
    """Threads beyond the baseline, not counting parallelq workers started since (bounded)."""
    total, workers = baseline
    return state.threads - total - (state.workers - workers)


def settle(conn: Any, baseline: tuple[int, int]) -> tuple[State, float]:
    """Poll until teardown is over or SETTLE_SECONDS pass; return the last state and the wait."""
    started = time.monotonic()
    while True:
        state = observe(conn)
        waited = time.monotonic() - started
        quiet = (
            state.checked_out == state.idle_in_transaction == state.sleeping == state.serving == 0
            and state.open_scopes == state.leaked_sessions == 0
            and leaked_threads(state, baseline) <= 0
        )
        if quiet or waited >= SETTLE_SECONDS:
            return state, waited
        time.sleep(0.1)
