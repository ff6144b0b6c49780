"""A streaming replica of the test run's own PostgreSQL: pg_basebackup -R, a free loopback port.

The replica's dir is named like the primary's (tests/pg.py's PREFIX) and holds
the same owner.pid, so a run that is killed leaves nothing running: the next
run's remove_stale_clusters() stops and deletes it too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import tempfile
import time
from typing import Any

from tests import pg

STREAM_WAIT = 60.0  # seconds a new replica may take to stream from the primary


class Replica:
    """A hot standby streaming from the primary tests/pg.py started; stop(), start(), remove()."""

    def __init__(self, primary: dict[str, Any]) -> None:
        self.primary = primary
        self.root = tempfile.mkdtemp(prefix=pg.PREFIX + "replica-")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self.port = pg._free_port()
        with open(os.path.join(self.root, pg.OWNER), "w") as f:
            f.write(str(os.getpid()))
        if os.geteuid() == 0:  # the server refuses to run as root
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        atexit.register(self.remove)

    @property
    def settings_dict(self) -> dict[str, Any]:
        """Return the primary's DATABASES entry with the replica's port."""
        return {**self.primary, "PORT": str(self.port)}

    def url(self, database: str) -> str:
        """Return a SQLAlchemy URL of `database` on the replica."""
        user = self.primary["USER"] or "postgres"
        return f"postgresql+psycopg2://{user}@127.0.0.1:{self.port}/{database}"

    def clone(self) -> None:
        """Copy the primary with pg_basebackup -R, which makes the copy a standby of it."""
        pg._run(
            _binary("pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(self.primary["PORT"]), "-U", "postgres"),
            *("-D", self.data, "-R", "-X", "stream", "-c", "fast", "--no-sync"),
        )

    def start(self) -> None:
        """Start the replica and wait until it streams from the primary.

        Raises:
            pg.Unavailable: it did not start, or did not stream within STREAM_WAIT.
        """
        options = f"-p {self.port} -k {self.root} {pg.SERVER_OPTIONS}"
        try:
            pg._run(
                "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", options, "start"
            )
        except pg.Unavailable as exc:
            raise pg.Unavailable(f"{exc}\n{pg._tail(self.log)}") from exc
        deadline = time.monotonic() + STREAM_WAIT
        while self._receiver_status() != "streaming":
            if time.monotonic() > deadline:
                raise pg.Unavailable(f"the replica did not stream:\n{pg._tail(self.log)}")
            time.sleep(0.05)

    def start_if_stopped(self) -> None:
        """Start the replica unless it runs."""
        if not os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self.start()

    def stop(self) -> None:
        """Stop the replica (fast shutdown: its sessions are ended, its clients see it go)."""
        pg._run("pg_ctl", "-D", self.data, "-w", "-m", "fast", "stop")

    def remove(self) -> None:
        """Stop the replica if it runs, and delete it."""
        pg._remove_cluster(self.root, self.data)

    def wait_for_replay(self, seconds: float = 30.0) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        primary = pg.connect(self.primary, statement_timeout_ms=5000)
        try:
            with primary.cursor() as cursor:
                # The insert position: with synchronous_commit=off a commit may not be written yet.
                cursor.execute("SELECT pg_current_wal_insert_lsn()")
                (lsn,) = cursor.fetchone()
        finally:
            primary.close()
        query = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"
        deadline = time.monotonic() + seconds
        while not self._query(query, lsn):
            if time.monotonic() > deadline:
                raise AssertionError(f"the replica did not replay up to {lsn} in {seconds} s")
            time.sleep(0.01)

    def _receiver_status(self) -> str | None:
        with contextlib.suppress(Exception):  # not accepting connections yet
            return self._query("SELECT status FROM pg_stat_wal_receiver")  # type: ignore[no-any-return]
        return None

    def _query(self, sql: str, *params: Any) -> Any:
        conn = pg.connect(self.settings_dict, "postgres", statement_timeout_ms=5000)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
                return row[0] if row else None
        finally:
            conn.close()


def start_replica() -> Replica:
    """Clone the run's own PostgreSQL cluster into a streaming replica and start it.

    Raises:
        pg.Unavailable: the run uses a server it did not start
            (PARALLELQ_TEST_DATABASE_URL), pg_basebackup is missing, or the
            replica did not start or stream.
    """
    if not pg._cluster:
        raise pg.Unavailable(
            "the tests did not start this PostgreSQL server (PARALLELQ_TEST_DATABASE_URL), "
            "so cannot stream a replica of it"
        )
    from django.db import connection  # the test database's settings, once Django switched

    replica = Replica(connection.settings_dict)
    try:
        replica.clone()
        replica.start()
    except BaseException:
        replica.remove()
        raise
    return replica


def _binary(name: str) -> str:
    # The one beside pg_ctl, of the same version as the primary's server, else PATH's.
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None:
        beside = os.path.join(os.path.dirname(os.path.realpath(pg_ctl)), name)
        if os.path.exists(beside):
            return beside
    found = shutil.which(name)
    if found is None:
        raise pg.Unavailable(f"PostgreSQL client binary not on PATH: {name}")
    return found
