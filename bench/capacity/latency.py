"""A request's latency in the capacity model (docs/scaling.md, *Latency*): waves, pools, CPU.

`Request(costs, deployment).latency(rps)` is the mean latency at a throughput;
`throughput()` closes the loop, requests in flight = rps × latency.
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # model imports this module; these are only types here
    from bench.capacity.model import Costs, Deployment

SATURATED = 0.9  # a CPU this busy is named as what bounds the latency
ROUND_TRIPS_PER_TASK = 3  # BEGIN, the statement, ROLLBACK: what a remote database adds RTTs to


def makespan(durations: list[float], width: int) -> float:
    """Return when the last task ends, tasks taken in order by `width` slots (waves)."""
    slots = [0.0] * min(width, len(durations))
    for duration in durations:
        heapq.heapreplace(slots, slots[0] + duration)  # the slot free first takes the next
    return max(slots, default=0.0)


def _stretch(utilisation: float, cores: float) -> float:
    """Return how much longer CPU work takes on `cores` this busy: 1 / (1 - U^cores).

    The usual approximation of a queue with `cores` servers (exact for one and two).
    """
    return math.inf if utilisation >= 1 else 1 / (1 - utilisation ** max(cores, 1.0))


def _packed(waiting: float, holding: float, session: float, capacity: float) -> float:
    """Return the least mean latency `capacity` connections allow `waiting` requests.

    Each request holds `session` connections for its whole latency R (its own Session)
    and its tasks hold one each for `holding` ms in all; with every connection always
    in use, n·(session·R + holding) = C·R, so R = n·holding / (C - n·session).
    """
    free = capacity - waiting * session
    return math.inf if free <= 0 else waiting * holding / free


class Path:
    """A request's path at one throughput: its own part, its tasks' holds, CPU stretch."""

    def __init__(self, request: float, holds: list[float], task: float) -> None:
        self.request, self.holds, self.task = request, holds, task

    def through(self, lanes: int) -> float:
        """Return the latency with `lanes` tasks at once: waves, tasks started one by one."""
        lanes = max(1, min(lanes, len(self.holds)))
        return self.request + makespan(self.holds, lanes) + (lanes - 1) * self.task


class Request:
    """The latency of one request at a given throughput (requests per second in all)."""

    def __init__(self, costs: Costs, plan: Deployment) -> None:
        self.costs, self.plan = costs, plan
        self.width = min(plan.max_workers, len(costs.queries_ms)) or 1
        self.databases = max(plan.replicas, 1)
        self.session = 1.0 if plan.request_session else 0.0

    def utilisations(self, rps: float) -> dict[str, float]:
        c, p = self.costs, self.plan
        per_process = rps / (p.servers * p.processes)
        used = {
            "GIL": per_process * c.app_cpu_ms / 1000,
            "app CPU": rps / p.servers * c.app_cpu_ms / 1000 / p.app_cores,
            "db CPU": rps / self.databases * c.db_cpu_ms / 1000 / p.db_cores,
        }
        if p.shared_cores:
            total = c.app_cpu_ms + c.db_cpu_ms + c.client_cpu_ms
            used["app CPU"] = used["db CPU"] = rps * total / 1000 / p.app_cores
        return used

    def path(self, rps: float) -> Path | None:
        """Return the request's path at `rps`, None where a CPU is saturated."""
        c = self.costs
        used = self.utilisations(rps)
        p = self.plan
        app = max(_stretch(used["GIL"], 1), _stretch(used["app CPU"], p.app_cores))
        db = _stretch(used["db CPU"], p.app_cores if p.shared_cores else p.db_cores)
        if math.isinf(app) or math.isinf(db):
            return None

        def extra(app_cpu: float, db_cpu: float) -> float:  # CPU work takes app (db) × as long
            return app_cpu * (app - 1) + db_cpu * (db - 1)

        queries = zip(c.queries_ms, c.query_app_cpu_ms, c.query_db_cpu_ms, strict=True)
        holds = [
            q
            + c.task_ms
            + extra(a + c.task_app_cpu_ms, d + c.task_db_cpu_ms)
            + ROUND_TRIPS_PER_TASK * c.round_trip_ms
            for q, a, d in queries
        ]
        request = c.request_ms + 2 * c.round_trip_ms  # its Session's BEGIN and ROLLBACK
        request += extra(c.request_app_cpu_ms, c.request_db_cpu_ms)
        # A wave's tasks start one after another: their overheads take turns at the GIL.
        return Path(request, holds, c.task_ms + c.task_app_cpu_ms * (app - 1))

    def holding(self) -> float:
        """Return the connection time a request's tasks hold in all, unloaded (ms)."""
        path = self.path(0.0)
        assert path is not None  # nothing is saturated at no load
        return sum(path.holds)

    def free(self, rps: float) -> float:
        """Return the mean latency at `rps` if every task found a connection."""
        path = self.path(rps)
        return math.inf if path is None else path.through(self.width)

    def _pooled(self, path: Path, waiting: float, capacity: int) -> float:
        """Return the latency `capacity` connections allow `waiting` requests (math.inf: none).

        Two estimates bracket it: every connection always in use (`_packed`, too low),
        and every request getting only its fair share of the pool, rounded up to whole
        connections, as its lanes (mostly too high); the model takes their mean, and
        never less than the first: it is a hard bound.
        """
        share = capacity / waiting - self.session
        if share >= self.width:
            return 0.0  # every request finds the connections it asks for
        packed = _packed(waiting, sum(path.holds), self.session, capacity)
        if share <= 0 or math.isinf(packed):
            return math.inf
        # Its share in whole connections as lanes; below one connection a request gets
        # no lane of its own, and packing is all there is. Nothing beats packing.
        fair = path.through(math.ceil(share)) if share >= 1 else packed
        return (packed + max(packed, fair)) / 2

    def latency(self, rps: float) -> tuple[float, str]:
        """Return the mean latency at `rps`, and what bounds it."""
        p = self.plan
        path = self.path(rps)
        if path is None:
            return math.inf, "CPU"
        free = path.through(self.width)
        bounds = {"pool": self._pooled(path, p.in_flight, p.pool_size)}
        if p.pgbouncer_pool is not None:
            everyone = p.in_flight * p.servers * p.processes / self.databases
            bounds["PgBouncer"] = self._pooled(path, everyone, p.pgbouncer_pool)
        name, worst = max(bounds.items(), key=lambda item: item[1])
        used = self.utilisations(rps)
        busiest = max(used, key=lambda k: used[k])
        if used[busiest] >= SATURATED:  # it lengthens every hold, and so the pools' waits
            return max(worst, free), busiest
        if worst > free:
            return worst, name
        return free, busiest if used[busiest] > 0.2 else "none"


def throughput(request: Request, in_flight: int) -> tuple[float, float, str]:
    """Solve rps · R(rps) = requests in flight (a closed loop) by bisection.

    Returns the requests per second, the mean latency (in flight / rps: Little's law,
    which also holds where a CPU saturates and R(rps) jumps) and what bounds it.
    """

    def short(rps: float) -> bool:
        return rps * request.latency(rps)[0] / 1000 < in_flight

    low, high = 0.0, 1.0
    while high < 1e9 and short(high):
        low, high = high, high * 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if short(middle) else (low, middle)
    latency, bound = request.latency(low)
    if low == 0 or math.isinf(latency):
        return 0.0, math.inf, bound
    if 1000 * in_flight / low > 1.01 * latency:  # requests queue for a saturated CPU
        used = request.utilisations(low)
        return low, 1000 * in_flight / low, max(used, key=lambda k: used[k])
    return low, latency, bound
