"""Run wrk against a URL for a bounded time and read its figures."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}  # to milliseconds
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", re.MULTILINE)
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
REQUEST_TIMEOUT = "10s"  # a request slower than this counts as a timeout error


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured; latencies in milliseconds."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors, timeouts and non-2xx answers


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, connections: int, seconds: float) -> WrkResult:
    """Load `url` from `connections` keep-alive connections for `seconds` (one wrk thread)."""
    command = [
        *("wrk", "--threads", "1", "--connections", str(connections)),
        *("--duration", f"{seconds:g}s", "--timeout", REQUEST_TIMEOUT, "--latency", url),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse(done.stdout)


def parse(output: str) -> WrkResult:
    """Read wrk --latency output.

    Raises:
        ValueError: the output lacks a figure this needs.
    """
    percentiles = {p: float(v) * _UNITS[unit] for p, v, unit in _PERCENTILE.findall(output)}
    requests = _REQUESTS.search(output)
    if requests is None or set(percentiles) != {"50", "99"}:
        raise ValueError(f"cannot read wrk's output:\n{output}")
    count, duration = int(requests[1]), float(requests[2]) * _UNITS[requests[3]] / 1e3
    socket_errors = _ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    errors = sum(map(int, socket_errors.groups())) if socket_errors else 0
    errors += int(non_2xx[1]) if non_2xx else 0
    return WrkResult(count / duration, percentiles["50"], percentiles["99"], count, errors)
