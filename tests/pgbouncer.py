"""A throwaway PgBouncer in transaction pooling mode, in front of the tests' PostgreSQL."""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

from tests import pg

PREFIX = "parallelq-pgbouncer-"  # of its temp dir
# Longest a PgBouncer may run, in seconds: `timeout` ends it even if the test
# run that started it is killed and never stops it.
LIFETIME = 600

# Server connections are lent round robin, not last-used first: a client's
# transactions then land on different server connections, the case that
# session state does not survive.
CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {root}/userlist.txt
admin_users = {user}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
server_round_robin = 1
logfile = {root}/pgbouncer.log
"""


class Unavailable(RuntimeError):
    """No pgbouncer binary, or it did not start."""


class PgBouncer:
    """A running PgBouncer in front of the database `db` (DATABASES['default'] form)."""

    def __init__(self, db: dict[str, Any], pool_size: int) -> None:
        self.db, self.port = db, pg._free_port()
        binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/sbin")
        if binary is None:
            raise Unavailable("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
        remove_stale()
        self.root = tempfile.mkdtemp(prefix=PREFIX)
        with open(os.path.join(self.root, pg.OWNER), "w") as f:
            f.write(str(os.getpid()))
        with open(os.path.join(self.root, "userlist.txt"), "w") as f:
            f.write(f'"{db["USER"]}" ""\n')  # trust: the user must only be listed
        config = os.path.join(self.root, "pgbouncer.ini")
        with open(config, "w") as f:
            f.write(
                CONFIG.format(
                    host=db["HOST"],
                    port=db["PORT"],
                    listen=self.port,
                    root=self.root,
                    user=db["USER"],
                    pool_size=pool_size,
                )
            )
        user: dict[str, Any] = {}
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        self.process = subprocess.Popen(
            ["timeout", str(LIFETIME), binary, config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **user,
        )
        atexit.register(self.stop)
        self._wait_until_listening()

    def url(self, database: str, user: str | None = None) -> str:
        """Return a postgresql:// URL of `database` through this PgBouncer."""
        return f"postgresql://{user or self.db['USER']}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        """Return the last lines PgBouncer logged."""
        return pg._tail(os.path.join(self.root, "pgbouncer.log"))

    def stop(self) -> None:
        """Shut PgBouncer down (closing its server connections) and delete its dir."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # `timeout` passes it on
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log()
                self.stop()
                raise Unavailable(f"pgbouncer exited with {self.process.returncode}:\n{log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        self.stop()
        raise Unavailable("pgbouncer did not listen within 20 s")


def remove_stale(parent: str | None = None) -> None:
    """Delete the dirs of PgBouncers whose test run was killed (`timeout` ended them)."""
    parent = parent or tempfile.gettempdir()
    for name in os.listdir(parent):
        root = os.path.join(parent, name)
        if name.startswith(PREFIX) and pg._owner_is_gone(root):
            shutil.rmtree(root, ignore_errors=True)
