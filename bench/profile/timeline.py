"""The 5 × 100 ms fan-out, statement by statement: when each task starts, sends and hears back.

Goal 1 compares parallelq's fan-out with the thread peer's as a whole. Here the
two run interleaved, and hooks on their Engines stamp when each statement goes
to the server and when its answer is back, while each task's callable stamps
when it begins. A task's statements go out one after another, since the work
before each send is Python under the GIL, so the last send shows what the
fan-out adds to the server's 100 ms.
"""

from __future__ import annotations

import functools
import gc
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

import parallelq
from bench.compare import markdown
from bench.compare.workloads import Sleeps

TASKS, SECONDS = 5, 0.1
PAUSE = 0.05  # seconds of quiet before each run
CONTENDERS = ("parallelq", "threads")
# Rows of the report: a name, and how to read it off one run's Marks.
_ROWS: list[tuple[str, Callable[[Marks], float]]] = [
    ("first task begins", lambda m: min(m.begun)),
    ("first statement sent", lambda m: min(m.sent)),
    ("last task begins", lambda m: max(m.begun)),
    ("last statement sent", lambda m: max(m.sent)),
    ("last answer back", lambda m: max(m.back)),
    ("results in the caller's hands", lambda m: m.total),
]


@dataclass
class Marks:
    """Seconds from the start of one run: when each task began, sent, heard back; the end."""

    begun: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    back: list[float] = field(default_factory=list)
    total: float = 0.0

    def begin_to_send(self) -> float:
        """Return the median time from a task's start to its statement's send."""
        return statistics.median(
            s - b for b, s in zip(sorted(self.begun), sorted(self.sent), strict=True)
        )


class _Clock:
    """Stamps the hooks and the tasks leave, relative to the run's start."""

    def __init__(self) -> None:
        self.marks = Marks()
        self.zero = 0.0

    def start(self) -> None:
        self.marks, self.zero = Marks(), time.perf_counter()

    def begun(self) -> None:
        self.marks.begun.append(time.perf_counter() - self.zero)

    def _sent(self, *args: Any) -> None:
        self.marks.sent.append(time.perf_counter() - self.zero)

    def _back(self, *args: Any) -> None:
        self.marks.back.append(time.perf_counter() - self.zero)

    def listen(self, engine: sa.Engine) -> Callable[[], None]:
        """Stamp `engine`'s statements until the returned function is called."""
        sa.event.listen(engine, "before_cursor_execute", self._sent)
        sa.event.listen(engine, "after_cursor_execute", self._back)

        def stop() -> None:
            sa.event.remove(engine, "before_cursor_execute", self._sent)
            sa.event.remove(engine, "after_cursor_execute", self._back)

        return stop


def measure(
    threads_engine: sa.Engine, executor: ThreadPoolExecutor, reps: int
) -> dict[str, list[Marks]]:
    """Run the fan-out `reps` times each way, alternating which goes first."""
    clock = _Clock()
    workload = Sleeps(TASKS, SECONDS)

    def in_task(i: int) -> Any:
        clock.begun()
        return workload.sa_call(parallelq.session(), i)

    def in_own_session(i: int) -> Any:
        clock.begun()
        with orm.Session(threads_engine) as session:
            return workload.sa_call(session, i)

    def with_parallelq() -> list[Any]:
        with parallelq.scope():
            return parallelq.parallel(*[functools.partial(in_task, i) for i in range(TASKS)])

    def with_threads() -> list[Any]:
        return list(executor.map(in_own_session, range(TASKS)))

    runs = {"parallelq": with_parallelq, "threads": with_threads}
    for run in runs.values():
        run()  # untimed: warm pools, threads and caches
    stops = [clock.listen(parallelq.get_engine()), clock.listen(threads_engine)]
    marks: dict[str, list[Marks]] = {name: [] for name in CONTENDERS}
    try:
        for rep in range(reps):
            for name in CONTENDERS if rep % 2 == 0 else CONTENDERS[::-1]:
                time.sleep(PAUSE)  # as between the benchmark's contenders
                gc.collect()
                clock.start()
                results = runs[name]()
                clock.marks.total = time.perf_counter() - clock.zero
                workload.check(results)
                marks[name].append(clock.marks)
    finally:
        for stop in stops:
            stop()
    return marks


def report(marks: dict[str, list[Marks]]) -> str:
    """Return the markdown section: medians per contender, and the paired differences."""
    pairs = list(zip(marks["parallelq"], marks["threads"], strict=True))
    rows = []
    readings = [*_ROWS, ("from a task's start to its send (median task)", Marks.begin_to_send)]
    for label, read in readings:
        pq = statistics.median(read(m) for m in marks["parallelq"])
        threads = statistics.median(read(m) for m in marks["threads"])
        paired = statistics.median(read(p) - read(t) for p, t in pairs)
        rows.append([label, _ms(pq), _ms(threads), f"{paired * 1e3:+.2f} ms"])
    table = markdown.table(["", "parallelq", "threads", "parallelq − threads"], rows, "lrrr")
    return (
        "## Fan-out, statement by statement\n\n"
        f"{TASKS} × `SELECT pg_sleep({SECONDS})`, the benchmark's goal-1 scenario, "
        f"{len(pairs)} times each way, alternating which goes first, each after a "
        f"{PAUSE * 1e3:.0f} ms pause (as between the benchmark's contenders) "
        "and a `gc.collect()`: *parallelq* in a "
        "`parallelq.scope()`, and *threads*, the benchmark's thread peer. Each task's "
        "callable notes when it begins; hooks on the two Engines "
        "(`before_cursor_execute`, `after_cursor_execute`) note when its statement is "
        "sent and answered. Times are from the start of the run, medians over the runs; "
        "the last column is the median of the differences between runs side by side. "
        "The hooks' own cost is in both columns.\n\n"
        f"{table}\n\n{_reading(marks, pairs)}"
    )


def _reading(marks: dict[str, list[Marks]], pairs: list[tuple[Marks, Marks]]) -> str:
    # What this run's figures say, in words.
    def paired(read: Callable[[Marks], float]) -> float:
        return statistics.median(read(p) - read(t) for p, t in pairs) * 1e3

    first, last_sent = paired(lambda m: min(m.begun)), paired(lambda m: max(m.sent))
    total, begin_to_send = paired(lambda m: m.total), paired(Marks.begin_to_send)
    round_trip = statistics.median(
        b - s
        for m in marks["parallelq"]
        for s, b in zip(sorted(m.sent), sorted(m.back), strict=True)
    )
    return (
        "A task's work before its send is Python under the GIL, so the statements go out "
        "one after another, and the last one sent sets the end: its answer comes "
        f"{round_trip * 1e3:.1f} ms later (the median round trip of a statement). Here "
        f"parallelq's first task begins {_than(first)}: the caller's own work before it "
        "lets a worker run (its scope, the tasks, their hand-off). From a task's start to "
        "its send, where each opens a Session and checks out a connection, parallelq's "
        f"tasks take {_than(begin_to_send, 'more', 'less')}. Its last statement goes out "
        f"{_than(last_sent)}, and the results are in the caller's hands {_than(total)}."
    )


def _than(ms: float, more: str = "later", less: str = "earlier") -> str:
    return f"{abs(ms):.2f} ms {more if ms >= 0 else less} than the peer's"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"
