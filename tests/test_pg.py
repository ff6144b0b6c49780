"""The test run's own PostgreSQL: a cluster left by a killed run is stopped by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import unittest

from django.conf import settings
from django.test import SimpleTestCase

from tests import pg


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _running(pid: int) -> bool:
    # A server whose parent was killed is reparented; where nothing reaps it, it
    # lingers as a zombie after exiting, which os.kill(pid, 0) cannot tell.
    if not os.path.isdir("/proc"):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _make_dir(parent: str, name: str, owner: int | None) -> str:
    root = os.path.join(parent, name)
    os.makedirs(os.path.join(root, "data"))
    if owner is not None:
        with open(os.path.join(root, pg.OWNER), "w") as f:
            f.write(str(owner))
    return root


class StaleClusterTests(SimpleTestCase):
    def test_only_dirs_whose_owner_is_gone_are_removed(self):
        with tempfile.TemporaryDirectory() as parent:
            stale = _make_dir(parent, pg.PREFIX + "stale", _dead_pid())
            alive = _make_dir(parent, pg.PREFIX + "alive", os.getpid())
            unknown = _make_dir(parent, pg.PREFIX + "unknown", None)
            other = _make_dir(parent, "someone-else", _dead_pid())
            self.assertEqual(pg.remove_stale_clusters(parent), [stale])
            self.assertFalse(os.path.exists(stale))
            for kept in (alive, unknown, other):
                self.assertTrue(os.path.exists(kept))

    def test_the_server_of_a_killed_run_is_stopped(self):
        if settings.POSTGRES_UNAVAILABLE:
            raise unittest.SkipTest(settings.POSTGRES_UNAVAILABLE)
        # A run that starts its cluster and is then killed, so its atexit hook never runs.
        script = (
            "import os, signal; from tests import pg; pg._start_cluster(); "
            "print(pg._cluster['root'], flush=True); os.kill(os.getpid(), signal.SIGKILL)"
        )
        run = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        self.assertEqual(run.returncode, -signal.SIGKILL, run.stderr)
        root = run.stdout.strip()
        with open(os.path.join(root, "data", "postmaster.pid")) as f:
            postmaster = int(f.readline())
        self.assertTrue(_running(postmaster))

        self.assertIn(root, pg.remove_stale_clusters(os.path.dirname(root)))
        self.assertFalse(os.path.exists(root))
        self.assertFalse(_running(postmaster))
