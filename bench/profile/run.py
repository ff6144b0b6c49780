"""Measure and profile 50 trivial lookups run eight ways, and time a fan-out; return markdown."""

from __future__ import annotations

import cProfile
import datetime
import functools
import gc
import pstats
import re
import resource
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import orm

import parallelq
from bench.compare import config, database, machine, markdown, proc, schema
from bench.compare.workloads import Lookups
from bench.profile import timeline

TASKS = 50
PAUSE = 0.05  # seconds of quiet before each way, as between the benchmark's contenders
PROFILED_REPS = 20


@dataclass
class Cost:
    """One way's samples per repetition: seconds of wall, user and system CPU; switches."""

    wall: list[float] = field(default_factory=list)
    user: list[float] = field(default_factory=list)
    system: list[float] = field(default_factory=list)
    postgres: list[float] = field(default_factory=list)
    voluntary: list[float] = field(default_factory=list)
    involuntary: list[float] = field(default_factory=list)

    def per_task(self, name: str) -> float:
        """Return the median of `name` per repetition, divided by the tasks in one."""
        return statistics.median(getattr(self, name)) / TASKS

    def mean_per_task(self, name: str) -> float:
        """Return `name` over every repetition, divided by their tasks: for coarse clocks."""
        samples = getattr(self, name)
        return sum(samples) / len(samples) / TASKS


@dataclass(frozen=True)
class Way:
    name: str
    description: str
    run: Callable[[], list[Any]]
    lookups: bool = True  # False: no-op tasks, whose results are not rows


def profile(reps: int) -> str:
    """Run everything on a throwaway PostgreSQL; return docs/profile.md's text."""
    start = machine.at_start()
    with database.bench_database() as db:
        config.configure_django(db)
        engine = config.sync_engine(db, "seed")
        schema.seed(engine)
        engine.dispose()
        workload = Lookups(TASKS)
        threads_engine = config.sync_engine(db, "threads")
        # Its connections stay in autocommit: a Session sends no BEGIN or ROLLBACK.
        floor_engine = config.sync_engine(db, "floor", isolation_level="AUTOCOMMIT")
        executor = ThreadPoolExecutor(config.MAX_WORKERS)
        try:
            ways = _ways(workload, threads_engine, floor_engine, executor)
            costs = _measure(ways, workload, reps)
            profiled = {w.name: _profile(w) for w in ways[:2]}
            fanout = timeline.measure(threads_engine, executor, reps)
        finally:
            executor.shutdown()
            threads_engine.dispose()
            floor_engine.dispose()
            parallelq.get_engine().dispose()
        facts = machine.facts(database.server_version(db), start)
    return _report(reps, ways, costs, profiled, facts, timeline.report(fanout))


def _ways(
    workload: Lookups,
    threads_engine: Any,
    floor_engine: Any,
    executor: ThreadPoolExecutor,
) -> list[Way]:
    lookups = [functools.partial(_lookup, workload, i) for i in range(TASKS)]
    noops = [_noop] * TASKS

    def serial() -> list[Any]:
        with parallelq.scope() as scope:
            return [workload.sa_call(scope.session, i) for i in range(TASKS)]

    def tasks(calls: list[Callable[[], Any]], *, inline: bool) -> Callable[[], list[Any]]:
        def run() -> list[Any]:
            with parallelq.scope() as scope:
                scope.enabled = not inline  # as ENABLED=False does, without a settings change
                return parallelq.parallel(*calls)

        return run

    def sessions() -> list[Any]:
        return [_own_session(workload, floor_engine, i) for i in range(TASKS)]

    def threads() -> list[Any]:
        return list(
            executor.map(functools.partial(_own_session, workload, threads_engine), range(TASKS))
        )

    return [
        Way("serial", "the lookups one after another on the scope's own Session", serial),
        Way(
            "tasks, caller's thread",
            "each lookup a task, all run in the caller's thread "
            "(a task Session each, no thread hand-off)",
            tasks(lookups, inline=True),
        ),
        Way(
            "a Session per lookup, no parallelq",
            "a plain SQLAlchemy Session per lookup, one after another in the caller's "
            "thread, on connections kept in autocommit (no BEGIN, no ROLLBACK): what a "
            "Session and a checkout per task cost before any thread or parallelq code",
            sessions,
        ),
        Way(
            "no-op tasks, caller's thread",
            "tasks that return None at once, in the caller's thread: the task machinery alone",
            tasks(noops, inline=True),
            lookups=False,
        ),
        Way(
            "no-op tasks, workers",
            "tasks that return None at once, on worker threads",
            tasks(noops, inline=False),
            lookups=False,
        ),
        Way(
            "parallelq",
            "each lookup a task of parallel() on worker threads, as users run them",
            tasks(lookups, inline=False),
        ),
        Way(
            "threads",
            f"a ThreadPoolExecutor of {config.MAX_WORKERS} threads, a plain "
            "Session per lookup (the benchmark's thread peer)",
            threads,
        ),
    ]


def _lookup(workload: Lookups, i: int) -> Any:
    return workload.sa_call(parallelq.session(), i)


def _noop() -> None:
    return None


def _own_session(workload: Lookups, engine: Any, i: int) -> Any:
    with orm.Session(engine) as session:
        return workload.sa_call(session, i)


def _measure(ways: list[Way], workload: Lookups, reps: int) -> dict[str, Cost]:
    costs = {way.name: Cost() for way in ways}
    for way in ways:
        way.run()  # untimed: warm pools, threads and caches
    for rep in range(reps):
        shift = rep % len(ways)
        for way in ways[shift:] + ways[:shift]:
            time.sleep(PAUSE)  # each way starts in a quiet process
            gc.collect()
            before, pg_before = resource.getrusage(resource.RUSAGE_SELF), _postgres_cpu()
            started = time.perf_counter()
            results = way.run()
            wall = time.perf_counter() - started
            after, pg_after = resource.getrusage(resource.RUSAGE_SELF), _postgres_cpu()
            if way.lookups:
                workload.check(results)
            cost = costs[way.name]
            cost.wall.append(wall)
            cost.user.append(after.ru_utime - before.ru_utime)
            cost.system.append(after.ru_stime - before.ru_stime)
            cost.postgres.append(pg_after - pg_before)
            cost.voluntary.append(after.ru_nvcsw - before.ru_nvcsw)
            cost.involuntary.append(after.ru_nivcsw - before.ru_nivcsw)
    return costs


def _postgres_cpu() -> float:
    """Return the CPU seconds every postgres process on this machine has used."""
    return proc.cpu_seconds(lambda name, fields: name.startswith("postgres"))


@dataclass
class Profiled:
    """Own seconds per task of each function, by (filename, line, function)."""

    own: dict[tuple[str, int, str], float]

    def by_area(self) -> dict[str, float]:
        areas: dict[str, float] = {}
        for (filename, _, _), seconds in self.own.items():
            areas[_area(filename)] = areas.get(_area(filename), 0.0) + seconds
        return areas


def _profile(way: Way) -> Profiled:
    """Profile `way` in this thread (cProfile sees no other)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(PROFILED_REPS):
        way.run()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    per_task = PROFILED_REPS * TASKS
    return Profiled({key: row[2] / per_task for key, row in stats.items()})


def _area(filename: str) -> str:
    for marker, area in [
        ("/parallelq/", "parallelq"),
        ("/sqlalchemy/", "SQLAlchemy"),
        ("/psycopg2/", "psycopg2"),
        ("/django/", "Django"),
        ("/asgiref/", "Django"),
        ("/bench/", "the benchmark's own calls"),
    ]:
        if marker in filename:
            return area
    if filename == "~":
        return "built-ins (C: psycopg2's execute, locks, dicts)"
    return "Python's standard library"


def _report(
    reps: int,
    ways: list[Way],
    costs: dict[str, Cost],
    profiled: dict[str, Profiled],
    facts: dict[str, str],
    fanout: str,
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    intro = (
        f"Recorded {now} by `python -m bench.profile` ({reps} repetitions), on a throwaway "
        "PostgreSQL it starts itself. This file is written by that command: rerun it "
        "rather than edit it. [benchmarks.md](benchmarks.md) says which of issue #4's "
        "goals it explains, and how."
    )
    machine_table = markdown.table(["", ""], [[k, v] for k, v in facts.items()], align="ll")
    sections = [_method(ways), _costs(ways, costs), _profiled(profiled), fanout]
    return "\n\n".join(["# Where a parallelq task's time goes", intro, machine_table, *sections])


def _method(ways: list[Way]) -> str:
    listed = "\n".join(f"- **{w.name}**: {w.description}." for w in ways)
    return (
        f"## Method\n\nEach repetition runs {TASKS} primary-key lookups of distinct "
        "`bench_item` rows, loaded as ORM objects, in each of these ways, round-robin (the "
        f"first way rotates), each after a {PAUSE * 1e3:.0f} ms pause (as between the "
        "benchmark's contenders) and a "
        f"`gc.collect()`:\n\n{listed}\n\n"
        "CPU and context switches are this process's, from `getrusage(RUSAGE_SELF)` "
        "(every thread); PostgreSQL's CPU is every `postgres` process's, from `/proc`. "
        "Figures are medians per repetition divided by its tasks, but PostgreSQL's, which "
        "is counted in clock ticks (10 ms) and is the mean over every repetition instead."
    )


def _costs(ways: list[Way], costs: dict[str, Cost]) -> str:
    serial = costs["serial"].per_task("wall")
    rows = []
    for way in ways:
        cost = costs[way.name]
        over = cost.per_task("wall") - serial
        rows.append(
            [
                f"**{way.name}**" if way.name == "parallelq" else way.name,
                _us(cost.per_task("wall")),
                _signed_us(over) if way.lookups and way.name != "serial" else "—",
                _us(cost.per_task("user") + cost.per_task("system")),
                _us(cost.per_task("system")),
                _us(cost.mean_per_task("postgres")),
                f"{cost.per_task('voluntary'):.1f}",
                f"{cost.per_task('involuntary'):.1f}",
            ]
        )
    header = ["way", "wall", "wall over serial", "CPU (user + system)", "of it system"]
    header += ["PostgreSQL CPU", "voluntary switches", "involuntary switches"]
    return "## Cost per task\n\n" + markdown.table(header, rows, align="lrrrrrrr")


def _profiled(profiled: dict[str, Profiled]) -> str:
    serial, tasks = profiled["serial"], profiled["tasks, caller's thread"]
    serial_areas, task_areas = serial.by_area(), tasks.by_area()
    areas = sorted(task_areas, key=lambda a: task_areas[a] - serial_areas.get(a, 0.0), reverse=True)
    area_rows = [
        [
            area,
            _us(serial_areas.get(area, 0.0)),
            _us(task_areas[area]),
            _signed_us(task_areas[area] - serial_areas.get(area, 0.0)),
        ]
        for area in areas
    ]
    delta = {key: own - serial.own.get(key, 0.0) for key, own in tasks.own.items()}
    top = sorted(delta, key=lambda key: delta[key], reverse=True)[:15]
    top_rows = [
        [f"`{_short(filename)}:{line} {function}`", _area(filename), _signed_us(delta[key])]
        for key in top
        for filename, line, function in [key]
    ]
    return (
        f"## What a task does that a serial statement does not\n\ncProfile over "
        f"{PROFILED_REPS} repetitions each of *serial* and *tasks, caller's thread*, both in "
        "one thread (cProfile sees no other; its own overhead inflates every figure). Own "
        "time per statement, by where the code lives:\n\n"
        + markdown.table(["code", "serial", "as a task", "difference"], area_rows, "lrrr")
        + "\n\nThe functions whose own time grows the most, per statement:\n\n"
        + markdown.table(["function", "code", "more own time"], top_rows, "llr")
    )


def _short(filename: str) -> str:
    if "/parallelq/" in filename:
        return filename[filename.rindex("/parallelq/") + 1 :]
    if "/site-packages/" in filename:
        return filename[filename.index("/site-packages/") + len("/site-packages/") :]
    return re.sub(r"^.*/lib/python3\.\d+/", "", filename)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _signed_us(seconds: float) -> str:
    return f"{seconds * 1e6:+.0f} µs"
