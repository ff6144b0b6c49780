"""Facts about the machine and software a run measured on, for the report's header."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PACKAGES = ("Django", "SQLAlchemy", "psycopg2-binary", "asyncpg", "gunicorn", "uvicorn")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Start:
    """What is read before the run: the load, the CPU clock, and which parallelq is measured."""

    load: float
    commit: str
    cpu: tuple[int, int] | None  # ticks stolen, ticks in all, from _cpu_ticks()


def at_start() -> Start:
    return Start(os.getloadavg()[0], _commit(), _cpu_ticks())


def facts(postgres_version: str, start: Start) -> dict[str, str]:
    """Return label -> value, in the order the report lists them."""
    commit = _commit()
    if commit != start.commit:
        commit = f"{start.commit} at start, {commit} at the end"
    return {
        "parallelq (git)": commit,
        "CPUs (nproc)": str(len(os.sched_getaffinity(0))),
        "Load average (1 min) at start / end": f"{start.load:.2f} / {os.getloadavg()[0]:.2f}",
        "CPU time stolen by the hypervisor during the run": _stolen(start.cpu, _cpu_ticks()),
        "CPU": _cpu_model(),
        "Kernel": f"{platform.system()} {platform.release()}",
        "PostgreSQL": postgres_version,
        "Python": platform.python_version(),
        **{name: _version(name) for name in PACKAGES},
        "wrk": _wrk_version(),
    }


def _cpu_ticks() -> tuple[int, int] | None:
    """Return the machine's CPU ticks stolen (by the hypervisor, for other guests) and in all."""
    try:
        with open("/proc/stat") as f:
            fields = [int(n) for n in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (fields[7], sum(fields)) if len(fields) == 8 else None


def _stolen(start: tuple[int, int] | None, end: tuple[int, int] | None) -> str:
    # A virtual machine whose host runs other guests gets less CPU than it counts:
    # every contender then runs slower, threaded ones the most.
    if start is None or end is None or end[1] == start[1]:
        return "unknown"
    return f"{(end[0] - start[0]) / (end[1] - start[1]):.1%}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
    except OSError:
        match = None
    return match[1].strip() if match else platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrk_version() -> str:
    try:
        done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    match = re.match(r"wrk (\S+)", done.stdout + done.stderr)
    return match[1] if match else "unknown"


def _commit() -> str:
    """Return HEAD's short hash, noting uncommitted changes to parallelq/."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "parallelq")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head} with uncommitted changes in parallelq/" if dirty else head


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()
