"""The in-process scenarios, and the interleaved loop that runs their contenders."""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.compare.config import MAX_WORKERS
from bench.compare.stats import Samples
from bench.compare.workloads import Lookups, Sleeps, Workload

if TYPE_CHECKING:
    from bench.compare.contenders import Contender


@dataclass(frozen=True)
class Scenario:
    """One workload, how often to repeat it, its physical limit, and issue #4's goal for it.

    A scenario with a limit has a goal_ratio (parallelq's median over the limit);
    one without (the trivial queries) a goal_overhead_us (per task over serial).
    """

    key: str
    title: str
    workload: Workload
    reps: int
    quick_reps: int
    limit: float | None = None
    limit_note: str = ""
    goal_ratio: float | None = None
    goal_overhead_us: float | None = None


def _waves(n: int, seconds: float) -> float:
    return math.ceil(n / MAX_WORKERS) * seconds


IN_PROCESS = [
    Scenario(
        "fanout",
        "5 × pg_sleep(0.1) fan-out",
        Sleeps(5, 0.1),
        reps=15,
        quick_reps=3,
        limit=0.1,
        limit_note="0.100 s: every sleep at once",
        goal_ratio=1.05,
    ),
    Scenario(
        "waves",
        f"20 × pg_sleep(0.05) with {MAX_WORKERS} workers",
        Sleeps(20, 0.05),
        reps=15,
        quick_reps=3,
        limit=_waves(20, 0.05),
        limit_note=f"{_waves(20, 0.05):.3f} s: {math.ceil(20 / MAX_WORKERS)} waves of 0.05 s",
        goal_ratio=1.10,
    ),
    Scenario(
        "trivial",
        "50 trivial primary-key lookups",
        Lookups(50),
        reps=30,
        quick_reps=5,
        goal_overhead_us=60,
    ),
]


SCENARIOS = {s.key: s for s in IN_PROCESS}


def run_interleaved(
    scenario: Scenario, contenders: list[Contender], reps: int
) -> dict[str, Samples]:
    """Time `reps` repetitions of every contender, round-robin, after one untimed warm-up each.

    The starting contender rotates with each repetition, so that no contender
    always runs right after the same other one. Every run's results are checked,
    and garbage is collected before each, so no run pays for another's.
    """
    workload = scenario.workload
    for contender in contenders:
        workload.check(contender.run(workload)[1])
    samples = {c.name: Samples() for c in contenders}
    for rep in range(reps):
        shift = rep % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            gc.collect()
            seconds, results = contender.run(workload)
            workload.check(results)
            samples[contender.name].add(seconds)
    return samples
