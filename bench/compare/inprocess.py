"""Run the in-process scenarios: seed bench_item, build the contenders, time them interleaved."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from bench.compare import config, contenders, schema
from bench.compare.record import Run
from bench.compare.scenarios import IN_PROCESS, run_interleaved


def run(record: Run, db: dict[str, Any], keys: list[str], reps: int | None) -> None:
    """Run the chosen in-process scenarios into `record`; `reps` overrides their repetitions."""
    scenarios = [s for s in IN_PROCESS if s.key in keys]
    if not scenarios:
        return
    engine = config.sync_engine(db, "seed")
    schema.seed(engine)
    engine.dispose()
    with asyncio.Runner() as runner, contextlib.ExitStack() as stack:
        everyone = _contenders(db, runner, stack)
        record.contenders = {c.name: c.description for c in everyone}
        for scenario in scenarios:
            count = reps or (scenario.quick_reps if record.quick else scenario.reps)
            print(f"{scenario.title}: {count} repetitions", flush=True)
            samples = run_interleaved(scenario, everyone, count)
            for name, s in samples.items():
                print(f"  {name:<13} median {s.median * 1e3:8.2f} ms", flush=True)
            record.scenarios.append(scenario)
            record.reps[scenario.key] = count
            record.samples[scenario.key] = samples


def _contenders(
    db: dict[str, Any], runner: asyncio.Runner, stack: contextlib.ExitStack
) -> list[contenders.Contender]:
    """Build every contender; `stack` closes each (the asyncio ones before `runner` closes)."""
    makers = [
        contenders.Parallelq,
        lambda: contenders.Serial(db),
        lambda: contenders.Threads(db),
        lambda: contenders.AsyncSessions(db, runner),
        lambda: contenders.DjangoAsync(runner),
        lambda: contenders.RawThreads(db),
    ]
    built: list[contenders.Contender] = []
    for make in makers:
        contender = make()
        stack.callback(contender.close)
        built.append(contender)
    return built
