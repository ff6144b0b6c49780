"""PNG charts of a run (matplotlib, Agg backend): medians with min-max whiskers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)

from bench.compare.httpload import CLIENTS, CONTENDERS, Results  # noqa: E402
from bench.compare.scenarios import Scenario  # noqa: E402
from bench.compare.stats import Samples  # noqa: E402

PARALLELQ_COLOUR, OTHER_COLOUR = "tab:orange", "tab:blue"
CLIENT_COLOURS = ("tab:blue", "tab:green", "tab:purple")


def _whiskers(samples: list[Samples], scale: float) -> list[list[float]]:
    return [
        [(s.median - s.min) * scale for s in samples],
        [(s.max - s.median) * scale for s in samples],
    ]


def _colours(names: list[str]) -> list[str]:
    return [PARALLELQ_COLOUR if n == "parallelq" else OTHER_COLOUR for n in names]


def scenario_chart(scenario: Scenario, samples: dict[str, Samples], path: Path) -> None:
    """Draw one bar per contender (median ms, whiskers to min and max), and issue #4's goal.

    A scenario with a physical limit gets a second panel: the contenders within
    twice the limit, as multiples of it, so that small differences show.
    """
    zoomed = scenario.limit is not None
    fig, axes = plt.subplots(
        1, 2 if zoomed else 1, figsize=(12 if zoomed else 7, 0.6 * len(samples) + 1.6)
    )
    main = axes[0] if zoomed else axes
    _bars(main, samples, 1e3)
    main.set_xlabel("ms per repetition (median, whiskers: min–max)")
    if scenario.limit is not None:
        _line(main, scenario.limit * 1e3, "physical limit", "black")
        near = {n: s for n, s in samples.items() if s.median < 2 * scenario.limit}
        _bars(axes[1], near, 1 / scenario.limit)
        _line(axes[1], 1.0, "physical limit", "black")
        if scenario.goal_ratio is not None:
            _line(axes[1], scenario.goal_ratio, f"goal: {scenario.goal_ratio} ×", "tab:red")
        axes[1].set_xlabel("× physical limit (median, whiskers: min–max)")
        axes[1].set_xlim(left=0.95)
    elif scenario.goal_overhead_us is not None and "serial" in samples:
        goal = (
            samples["serial"].median * 1e3 + scenario.goal_overhead_us * scenario.workload.n / 1e3
        )
        _line(main, goal, f"goal: serial + {scenario.goal_overhead_us:g} µs per task", "tab:red")
    fig.suptitle(f"{scenario.title} ({len(next(iter(samples.values())))} repetitions)")
    _save(fig, path)


def _bars(ax: Any, samples: dict[str, Samples], scale: float) -> None:
    names, values = list(samples), list(samples.values())
    ax.barh(
        names,
        [s.median * scale for s in values],
        xerr=_whiskers(values, scale),
        color=_colours(names),
        capsize=4,
    )
    ax.invert_yaxis()


def _line(ax: Any, x: float, label: str, colour: str) -> None:
    ax.axvline(x, color=colour, linestyle="--", linewidth=1, label=label)
    ax.legend(fontsize=8, loc="lower right")


def http_chart(results: Results, path: Path) -> None:
    """Draw req/s and p99 per contender, one bar per client count."""
    names = [c.name for c in CONTENDERS]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(CLIENTS)
    for k, clients in enumerate(CLIENTS):
        x = [i + (k - (len(CLIENTS) - 1) / 2) * width for i in range(len(names))]
        for ax, metric in zip(axes, ("rps", "p99_ms"), strict=True):
            samples = [getattr(results[(n, clients)], metric) for n in names]
            ax.bar(
                x,
                [s.median for s in samples],
                width,
                yerr=_whiskers(samples, 1.0),
                capsize=3,
                label=f"{clients} clients",
                color=CLIENT_COLOURS[k % len(CLIENT_COLOURS)],
            )
    labels = ("requests/s (higher is better)", "p99 latency, ms (lower is better)")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xticks(range(len(names)), names)
        for tick in ax.get_xticklabels():
            tick.set_fontweight("bold" if tick.get_text() == "parallelq" else "normal")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("HTTP load, 5 × 10 ms queries per request (median, whiskers: min–max)")
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
