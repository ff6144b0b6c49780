"""The load: client threads that spend a budget of requests, and the thread that injects faults."""

from __future__ import annotations

import collections
import http.client
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.stress.app import KINDS
from bench.stress.db import OTHER_BACKENDS, SOCKET_TIMEOUT, connect
from bench.stress.tally import describe

FAULT_POLL = 0.1  # seconds between the fault thread's looks at pg_stat_activity
SCHEDULE = [name for name, k in KINDS.items() for _ in range(k.weight)]
random.Random(2026).shuffle(SCHEDULE)
WARMUP = ["dashboard", "write", "fail", "timeout", "dashboard"]


# --- Clients -----------------------------------------------------------------------------


@dataclass
class Results:
    """What the clients saw: statuses and errors per kind, acknowledged write ids, latencies."""

    sent: int = 0
    statuses: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    acked: list[str] = field(default_factory=list)
    slowest: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, status: int | None, body: bytes, error: str, took: float) -> None:
        with self.lock:
            self.slowest[kind] = max(self.slowest.get(kind, 0.0), took)
            if error:
                self.errors[f"client {kind}: {error}"] += 1
                return
            self.statuses[(kind, status)] += 1  # type: ignore[index]
            if kind == "write" and status == 200:
                self.acked.append(json.loads(body)["id"])


class Budget:
    """Hand out request numbers until `limit` are taken or `seconds` have passed."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.deadline = limit, time.monotonic() + seconds
        self.taken = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            if self.taken >= self.limit or time.monotonic() >= self.deadline:
                return None
            self.taken += 1
            return self.taken - 1


def fetch(port: int, target: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=SOCKET_TIMEOUT)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def client(port: int, budget: Budget, schedule: list[str], results: Results) -> None:
    while (number := budget.take()) is not None:
        kind = schedule[number % len(schedule)]
        started = time.monotonic()
        status, body, error = None, b"", ""
        try:
            status, body = fetch(port, KINDS[kind].path)
        except Exception as exc:  # counted and reported, never raised
            error = type(exc).__name__
        results.record(kind, status, body, error, time.monotonic() - started)


def drive(port: int, clients: int, budget: Budget, schedule: list[str]) -> Results:
    """Run `clients` threads until the budget is spent; return what they saw."""
    results = Results()
    started = time.monotonic()
    threads = [
        threading.Thread(
            target=client, args=(port, budget, schedule, results), name=f"stress-client-{i}"
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:  # each ends within SOCKET_TIMEOUT of the budget running out
        thread.join()
    results.sent, results.seconds = budget.taken, time.monotonic() - started
    return results


# --- Fault injection ---------------------------------------------------------------------


class FaultThread(threading.Thread):
    """Terminate every backend running pg_sleep(2), and note the most backends seen.

    Backends are counted before the kill, so that those just terminated, which take a
    moment to exit, are not counted.
    """

    def __init__(self, db: dict[str, Any]) -> None:
        super().__init__(name="stress-faults", daemon=True)
        self.conn = connect(db)
        self.stopping = threading.Event()
        self.killed = self.peak = 0
        self.error = ""

    def run(self) -> None:
        try:
            with self.conn.cursor() as cur:
                while not self.stopping.wait(FAULT_POLL):
                    self.poll(cur)
        except Exception as exc:  # reported as an error of the run
            self.error = describe(exc)

    def poll(self, cur: Any) -> None:
        cur.execute("SELECT count(*) " + OTHER_BACKENDS)
        self.peak = max(self.peak, cur.fetchone()[0])
        cur.execute(
            "SELECT pg_terminate_backend(pid) "
            + OTHER_BACKENDS
            + " AND state = 'active' AND query LIKE '%pg_sleep(2)%'"
        )
        self.killed += sum(1 for (ok,) in cur.fetchall() if ok)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=SOCKET_TIMEOUT)
