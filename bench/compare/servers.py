"""Start the HTTP scenario's servers (gunicorn, uvicorn) as child processes; always stop them."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.compare import config, proc

ROOT = Path(__file__).resolve().parents[2]
# One process per server. A keep-alive connection stays with the process that accepted
# it, and with 2 gthread workers × 8 threads a trial run saw serial's req/s at 16 clients
# go from 137 to 262 between repetitions (8, then 15 of its connections busy). And
# uvicorn --workers N loses TCP_NODELAY, adding ~40 ms per response (Kludex/uvicorn#3149).
GUNICORN_WORKERS = UVICORN_WORKERS = 1
# Fewer request threads than the pool's 15 connections: serial can keep at most 8
# busy, so a fan-out has room to do better, and 16 clients make requests queue.
GUNICORN_THREADS = 8
START_TIMEOUT = 60.0  # seconds for a server to answer its first request
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL


def free_port() -> int:
    """Return a loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gunicorn_command(
    port: int, threads: int = GUNICORN_THREADS, app: str = "bench.compare.wsgi:application"
) -> list[str]:
    """gunicorn, gthread workers, serving `app` on 127.0.0.1:`port`."""
    return [
        *(sys.executable, "-m", "gunicorn", "--worker-class", "gthread"),
        *("--workers", str(GUNICORN_WORKERS), "--threads", str(threads)),
        *("--bind", f"127.0.0.1:{port}", "--timeout", "60", "--log-level", "warning"),
        app,
    ]


def uvicorn_command(port: int) -> list[str]:
    """uvicorn, UVICORN_WORKERS processes, serving bench.compare.asgi on 127.0.0.1:`port`."""
    return [
        *(sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(UVICORN_WORKERS), "--no-access-log", "--log-level", "warning"),
        "bench.compare.asgi:app",
    ]


@contextlib.contextmanager
def serving(
    command: list[str], port: int, db: dict[str, Any], probe: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until the block ends; it must answer GET `probe` within START_TIMEOUT.

    The server runs in a session of its own, so stopping it stops its workers too:
    SIGTERM to that process group, SIGKILL if it has not exited after STOP_TIMEOUT.
    """
    env = {**os.environ, config.DATABASE_ENV: json.dumps(db), "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_until_answering(process, port, probe, log)
            yield process
        finally:
            _stop(process)


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """Return the CPU time the server's processes (its master and workers) have used."""
    # start_new_session made the server's pid its session id.
    return proc.cpu_seconds(lambda name, fields: int(fields[3]) == process.pid)


def _wait_until_answering(
    process: subprocess.Popen[bytes], port: int, probe: str, log: Any
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            name = " ".join(map(str, process.args[1:4]))  # type: ignore[index]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if _get(port, probe) == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"no answer from 127.0.0.1:{port}{probe} in {START_TIMEOUT:.0f} s")


def _get(port: int, target: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)


def _tail(log: Any) -> str:
    log.seek(0)
    return "".join(log.readlines()[-20:])
