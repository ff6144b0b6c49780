"""A throwaway PostgreSQL cluster for the test run: initdb in a temp dir, a free loopback port."""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from typing import Any
from urllib.parse import unquote, urlsplit

SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
    "-c full_page_writes=off -c max_connections=200"
)


_cluster: dict[str, str] = {}  # data, log and root of the cluster this run started

PREFIX = "parallelq-pg-"  # of the cluster's temp dir
OWNER = "owner.pid"  # in that dir: the pid of the process that started the cluster


class Unavailable(RuntimeError):
    """No PostgreSQL server could be started or reached."""


def database_settings() -> dict[str, object]:
    """Return DATABASES['default'] for the tests' PostgreSQL, starting a cluster if needed.

    PARALLELQ_TEST_DATABASE_URL (postgresql://user:password@host:port/name)
    names an existing server instead.

    Raises:
        Unavailable: no PostgreSQL binaries on PATH, or the cluster did not start.
    """
    url = os.environ.get("PARALLELQ_TEST_DATABASE_URL")
    if url:
        return _settings_from_url(url)
    return _start_cluster()


def connect(
    db: dict[str, Any],
    name: str | None = None,
    *,
    statement_timeout_ms: int,
    application_name: str | None = None,
) -> Any:
    """Open an autocommit psycopg2 connection to `db` (or its database `name`).

    Its statements time out after `statement_timeout_ms`, and connecting after
    20 s, so that no helper of the benchmarks can hang on the server.
    """
    import psycopg2  # only the benchmarks connect directly; the tests go through Django

    conn = psycopg2.connect(
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        dbname=name or db["NAME"],
        connect_timeout=20,
        application_name=application_name,
        options=f"-c statement_timeout={statement_timeout_ms}",
    )
    conn.autocommit = True
    return conn


def _settings_from_url(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


def _start_cluster() -> dict[str, object]:
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if shutil.which(b) is None]
    if missing:
        raise Unavailable(f"PostgreSQL server binaries not on PATH: {', '.join(missing)}")
    remove_stale_clusters()
    root = tempfile.mkdtemp(prefix=PREFIX)
    with open(os.path.join(root, OWNER), "w") as f:
        f.write(str(os.getpid()))
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")
    if os.geteuid() == 0:
        # The server refuses to run as root.
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    atexit.register(_remove_cluster, root, data)
    _cluster.update(data=data, log=log, root=root)
    _run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    port = _free_port()
    try:
        _run(
            "pg_ctl",
            "-D",
            data,
            "-l",
            log,
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {port} -k {root} {SERVER_OPTIONS}",
            "start",
        )
    except Unavailable as exc:
        raise Unavailable(f"{exc}\n{_tail(log)}") from exc
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "parallelq",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }


def restart() -> None:
    """Restart the cluster this run started, dropping every connection to it.

    Raises:
        Unavailable: the tests use a server they did not start.
    """
    if not _cluster:
        raise Unavailable("the tests did not start this PostgreSQL server, so cannot restart it")
    _run("pg_ctl", "-D", _cluster["data"], "-l", _cluster["log"], "-w", "-m", "fast", "restart")


def _run(*command: str) -> None:
    if os.geteuid() == 0:
        command = ("runuser", "-u", "postgres", "--", *command)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise Unavailable(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: str) -> str:
    try:
        with open(path) as f:
            return "".join(f.readlines()[-20:])
    except OSError:
        return ""


def remove_stale_clusters(parent: str | None = None) -> list[str]:
    """Stop and delete the clusters of test runs that were killed; return their dirs.

    A run killed from outside (SIGKILL, a CI timeout) never gets to its atexit
    hook, so its server would run on. A cluster counts as stale once the
    process named in its owner.pid is gone; dirs without that file are left alone.
    """
    parent = parent or tempfile.gettempdir()
    removed = []
    for name in sorted(os.listdir(parent)):
        root = os.path.join(parent, name)
        if not name.startswith(PREFIX) or not _owner_is_gone(root):
            continue
        _remove_cluster(root, os.path.join(root, "data"))
        removed.append(root)
    return removed


def _owner_is_gone(root: str) -> bool:
    try:
        with open(os.path.join(root, OWNER)) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _remove_cluster(root: str, data: str) -> None:
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        with contextlib.suppress(Unavailable):
            _run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    shutil.rmtree(root, ignore_errors=True)
