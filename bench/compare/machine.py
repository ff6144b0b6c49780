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
    """What is read before the run: the load, and which parallelq is measured."""

    load: float
    commit: str


def at_start() -> Start:
    return Start(os.getloadavg()[0], _commit())


def facts(postgres_version: str, start: Start) -> dict[str, str]:
    """Return label -> value, in the order the report lists them."""
    commit = _commit()
    if commit != start.commit:
        commit = f"{start.commit} at start, {commit} at the end"
    return {
        "parallelq (git)": commit,
        "CPUs (nproc)": str(len(os.sched_getaffinity(0))),
        "Load average (1 min) at start / end": f"{start.load:.2f} / {os.getloadavg()[0]:.2f}",
        "CPU": _cpu_model(),
        "Kernel": f"{platform.system()} {platform.release()}",
        "PostgreSQL": postgres_version,
        "Python": platform.python_version(),
        **{name: _version(name) for name in PACKAGES},
        "wrk": _wrk_version(),
    }


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
