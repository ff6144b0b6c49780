"""Write a run to markdown (docs/benchmarks.md) with its PNG charts beside it in img/."""

from __future__ import annotations

from pathlib import Path

from bench.compare import charts, config, goals, markdown, report_http, why
from bench.compare.markdown import ms
from bench.compare.record import Run
from bench.compare.scenarios import Scenario
from bench.compare.stats import Samples


def write(run: Run, output: Path) -> None:
    """Draw the charts into output's img/ folder and write the markdown to `output`."""
    images = output.parent / "img"
    for scenario in run.scenarios:
        charts.scenario_chart(scenario, run.samples[scenario.key], images / _image(scenario.key))
    if run.http is not None:
        charts.http_chart(run.http, images / _image("http"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(run))


def _image(key: str) -> str:
    return f"bench-{key}.png"


def render(run: Run) -> str:
    """Return the whole markdown document."""
    parts = [_header(run), _machine(run), _method(run), _goals(run), why.section(run)]
    parts += [_scenario(run, s) for s in run.scenarios]
    if run.http is not None:
        parts.append(report_http.section(run, f"img/{_image('http')}"))
    return "\n\n".join(parts) + "\n"


def _header(run: Run) -> str:
    kind = "a short --quick run, not for the record" if run.quick else "a full run"
    return (
        "# Benchmarks: parallelq against the alternatives\n\n"
        f"Recorded {run.started:%Y-%m-%d %H:%M} UTC ({kind}, {run.seconds / 60:.1f} min) by\n\n"
        f"```sh\n{run.command}\n```\n\n"
        "run from the repository root after `pip install -r requirements.txt -r "
        "bench/requirements.txt` and `apt-get install -y wrk`. It starts its own throwaway "
        "PostgreSQL (`tests/pg.py`), so every contender meets the same server in the same run. "
        "Absolute times drift on a shared machine; compare the ratios, which are taken "
        "within this one run. This file and `docs/img/bench-*.png` are written by the "
        "benchmark: rerun it rather than edit them."
    )


def _machine(run: Run) -> str:
    rows = [[label, value] for label, value in run.facts.items()]
    return "## Machine\n\n" + markdown.table(["", ""], rows, align="ll")


def _method(run: Run) -> str:
    contenders = "\n".join(f"- **{name}**: {what}." for name, what in run.contenders.items())
    pool = config.pool_options()
    return (
        "## Method\n\n"
        "In-process scenarios run in the benchmark's own process. Each repetition runs every "
        "contender once, round-robin (the first contender rotates per repetition), so drift "
        "hits all alike; each contender first runs once untimed (warm pools and threads), and "
        "every run's results are checked, with a `gc.collect()` before each. A repetition is "
        "timed from opening its Session(s) to closing them (for parallelq: the whole "
        "`with parallelq.scope(): parallel(...)`).\n\n"
        f"{contenders}\n\n"
        f"Every Engine has parallelq's pool options ({_options(pool)}); concurrency is capped "
        f"at {config.MAX_WORKERS} for every contender (parallelq's `MAX_WORKERS`, the thread "
        "pool's size, an `asyncio.Semaphore`). Every statement has a "
        f"{config.STATEMENT_TIMEOUT_MS // 1000} s `statement_timeout`. Where a figure is "
        "worse, this file says by how much; *Missed goals, and why* below says why, from "
        "[profile.md](profile.md)."
    )


def _options(options: dict[str, object]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in options.items())


def _goals(run: Run) -> str:
    mark = {True: "met", False: "**not met**", None: "not run"}
    rows = [[v.goal, v.target, v.measured, mark[v.met]] for v in goals.verdicts(run)]
    return (
        "## Issue #4's goals in this run\n\n"
        + markdown.table(["goal", "target", "measured (medians)", "verdict"], rows, align="llll")
        + "\n\nVerdicts compare the medians of this one run; where the min–max ranges of two "
        "contenders overlap (see each section), a rerun can flip a close verdict. "
        "Goal 5 is the next section. Goal 6: `.ci/run` runs `manage.py test`, which does "
        "not run anything in `bench/`."
    )


def _scenario(run: Run, scenario: Scenario) -> str:
    samples = run.samples[scenario.key]
    pq = samples["parallelq"].median
    trivial = scenario.limit is None
    header = ["contender", "median", "min", "max"]
    header += ["per task over serial"] if trivial else ["× physical limit"]
    header += ["parallelq ÷ it"]
    rows = [_scenario_row(run, scenario, name, s, pq) for name, s in samples.items()]
    limit = scenario.limit_note or "none defined; serial is the reference"
    return (
        f"## {scenario.title}\n\n"
        f"Physical limit: {limit}. {run.reps[scenario.key]} timed repetitions per contender, "
        "interleaved. Times are per repetition; *parallelq ÷ it* is parallelq's median over "
        "the contender's (below 1: parallelq is faster).\n\n"
        + markdown.table(header, rows)
        + f"\n\n![{scenario.title}](img/{_image(scenario.key)})\n\n"
        + _losses(samples)
    )


def _scenario_row(run: Run, scenario: Scenario, name: str, s: Samples, pq: float) -> list[str]:
    row = [f"**{name}**" if name == "parallelq" else name, ms(s.median), ms(s.min), ms(s.max)]
    if scenario.limit is None:
        over = goals.overhead_us(run, name)
        row.append("—" if name == "serial" or over is None else f"{over:+.0f} µs")
    else:
        row.append(f"{s.median / scenario.limit:.3f} ×")
    row.append(f"{pq / s.median:.3f}")
    return row


def _losses(samples: dict[str, Samples]) -> str:
    pq = samples["parallelq"]
    faster = [(n, s) for n, s in samples.items() if n != "parallelq" and s.median < pq.median]
    if not faster:
        return "No contender's median beat parallelq's here."
    lines = [
        f"- {name} beat parallelq by {ms(pq.median - s.median)} per repetition "
        f"({(pq.median / s.median - 1) * 100:.1f} % slower){_overlap(pq, s)}."
        for name, s in faster
    ]
    return "Where parallelq lost (medians):\n\n" + "\n".join(lines)


def _overlap(a: Samples, b: Samples) -> str:
    if a.min <= b.max and b.min <= a.max:
        return "; their min–max ranges overlap"
    return ""
