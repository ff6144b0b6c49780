"""Issue #4's goals, checked against one run's medians."""

from __future__ import annotations

from dataclasses import dataclass

from bench.compare.httpload import connection_cap
from bench.compare.record import Run
from bench.compare.scenarios import SCENARIOS

THREAD_AND_ASYNC_PEERS = ("threads", "asyncio")
HTTP_CLIENTS, HTTP_RPS_OVER_SERIAL = 16, 1.2


@dataclass(frozen=True)
class Verdict:
    """One goal: its target, what this run measured, and whether that meets it."""

    goal: str
    target: str
    measured: str
    met: bool | None  # None: its scenario was not run


def verdicts(run: Run) -> list[Verdict]:
    """Return a Verdict per measurable goal (1-4) of issue #4."""
    return [
        _near_limit(run, "fanout", "1. 5 × 100 ms fan-out"),
        _beats_peers(run),
        _near_limit(run, "waves", "2. 20 × 50 ms, 8 workers"),
        _trivial(run),
        *_http(run),
    ]


def _not_run(goal: str, target: str) -> Verdict:
    return Verdict(goal, target, "not run", None)


def _ratio_goal(key: str) -> tuple[float, float]:
    scenario = SCENARIOS[key]
    assert scenario.limit is not None and scenario.goal_ratio is not None
    return scenario.limit, scenario.goal_ratio


def _near_limit(run: Run, key: str, goal: str) -> Verdict:
    limit, most = _ratio_goal(key)
    target = f"median ≤ {most:.2f} × {limit:.3f} s"
    pq = run.median(key, "parallelq")
    if pq is None:
        return _not_run(goal, target)
    ratio = pq / limit
    return Verdict(goal, target, f"{ratio:.3f} × ({pq * 1e3:.1f} ms)", ratio <= most)


def _beats_peers(run: Run) -> Verdict:
    goal, target = "1. 5 × 100 ms fan-out", "median ≤ best thread/asyncio peer"
    pq = run.median("fanout", "parallelq")
    peers = {p: m for p in THREAD_AND_ASYNC_PEERS if (m := run.median("fanout", p)) is not None}
    if pq is None or len(peers) < len(THREAD_AND_ASYNC_PEERS):
        return _not_run(goal, target)
    best = min(peers, key=peers.__getitem__)
    measured = f"{pq * 1e3:.1f} ms vs {best} {peers[best] * 1e3:.1f} ms ({pq / peers[best]:.3f} ×)"
    return Verdict(goal, target, measured, pq <= peers[best])


def overhead_us(run: Run, contender: str) -> float | None:
    """Return a contender's median per-task cost over serial in the trivial scenario, in µs."""
    serial, other = run.median("trivial", "serial"), run.median("trivial", contender)
    if serial is None or other is None:
        return None
    return (other - serial) / SCENARIOS["trivial"].workload.n * 1e6


def _trivial(run: Run) -> Verdict:
    most = SCENARIOS["trivial"].goal_overhead_us
    goal, target = "3. trivial queries", f"≤ {most:g} µs per task over serial"
    pq = overhead_us(run, "parallelq")
    if pq is None or most is None:
        return _not_run(goal, target)
    return Verdict(goal, target, f"{pq:+.0f} µs per task", pq <= most)


def _http(run: Run) -> list[Verdict]:
    goal = f"4. HTTP, {HTTP_CLIENTS} clients"
    cap = connection_cap("parallelq")
    targets = [
        f"req/s ≥ {HTTP_RPS_OVER_SERIAL} × serial",
        "req/s ≥ asyncio peer",
        "p99 ≤ serial's",
        f"peak PostgreSQL connections ≤ cap ({cap})",
    ]
    keys = [(name, HTTP_CLIENTS) for name in ("parallelq", "serial", "asyncio")]
    if run.http is None or any(k not in run.http for k in keys):
        return [_not_run(goal, t) for t in targets]
    pq, serial, aio = (run.http[k] for k in keys)
    rps, serial_rps, aio_rps = pq.rps.median, serial.rps.median, aio.rps.median
    return [
        Verdict(
            goal,
            targets[0],
            f"{rps / serial_rps:.2f} × serial",
            rps >= HTTP_RPS_OVER_SERIAL * serial_rps,
        ),
        Verdict(goal, targets[1], f"{rps / aio_rps:.2f} × asyncio", rps >= aio_rps),
        Verdict(
            goal,
            targets[2],
            f"{pq.p99_ms.median:.1f} ms vs {serial.p99_ms.median:.1f} ms",
            pq.p99_ms.median <= serial.p99_ms.median,
        ),
        Verdict(goal, targets[3], f"{pq.peak_open} open", pq.peak_open <= cap),
    ]
