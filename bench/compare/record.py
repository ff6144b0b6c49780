"""Everything one run measured, as the report and the goals read it."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.compare.httpload import HttpPlan, Results
    from bench.compare.scenarios import Scenario
    from bench.compare.stats import Samples


@dataclass
class Run:
    """The run's settings, machine facts and samples."""

    started: datetime.datetime
    command: str
    quick: bool
    scenarios: list[Scenario] = field(default_factory=list)  # in-process scenarios run
    reps: dict[str, int] = field(default_factory=dict)  # scenario key -> repetitions
    contenders: dict[str, str] = field(default_factory=dict)  # name -> what it does
    samples: dict[str, dict[str, Samples]] = field(default_factory=dict)  # key -> name -> s
    http_plan: HttpPlan | None = None
    http: Results | None = None
    facts: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # the whole run's wall time

    def median(self, scenario: str, contender: str) -> float | None:
        """Return a contender's median seconds in a scenario, None if it was not run."""
        samples = self.samples.get(scenario, {}).get(contender)
        return samples.median if samples else None
