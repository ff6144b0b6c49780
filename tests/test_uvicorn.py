"""Under a real ASGI server, uvicorn on loopback: async views, sync views, teardown, disconnects."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import django
from django.db import connection

from tests.base import PostgresTestCase, database_url

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 30  # for the server to answer its first request
LONG_SLEEP = "pg_sleep(30"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class UvicornTests(PostgresTestCase):
    """One uvicorn process serves the tests' URLs on the test database, with the test settings."""

    port: int
    server: subprocess.Popen[bytes]
    log: Any

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.port = free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PARALLELQ_TEST_DATABASE_URL": database_url().render_as_string(hide_password=False),
        }
        cls.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the class cleanup
        cls.addClassCleanup(cls.log.close)
        cls.server = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "demo_project.asgi:application"),
                *("--host", "127.0.0.1", "--port", str(cls.port), "--lifespan", "off"),
                *("--log-level", "warning", "--timeout-graceful-shutdown", "2"),
            ],
            cwd=ROOT,
            env=env,
            stdout=cls.log,
            stderr=subprocess.STDOUT,
        )
        cls.addClassCleanup(cls.stop_server)
        cls.wait_until_serving()

    @classmethod
    def wait_until_serving(cls) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and cls.server.poll() is None:
            try:
                if cls.get("/ping/", timeout=2)[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        cls.log.seek(0)
        raise AssertionError(f"uvicorn did not start:\n{cls.log.read().decode()}")

    @classmethod
    def stop_server(cls) -> None:
        cls.server.terminate()
        try:
            cls.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.server.kill()
            cls.server.wait(timeout=10)

    @classmethod
    def get(cls, path: str, timeout: float = 10) -> tuple[int, bytes, float]:
        """GET `path` from the server; return the status, the body and the seconds it took."""
        started = time.monotonic()
        client = http.client.HTTPConnection("127.0.0.1", cls.port, timeout=timeout)
        try:
            client.request("GET", path)
            response = client.getresponse()
            return response.status, response.read(), time.monotonic() - started
        finally:
            client.close()

    def checked_out(self) -> int:
        """Return how many connections the server's Engine has checked out."""
        return int(json.loads(self.get("/pool/")[1])["checkedout"])

    def terminate_sleeps(self) -> None:
        with connection.cursor() as cursor:
            for pid in self.running(LONG_SLEEP):
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    def test_async_views_answer_concurrent_requests_while_the_loop_stays_free(self):
        with ThreadPoolExecutor(2) as clients:
            slow = [clients.submit(self.get, "/async-sleeps/") for _ in range(2)]
            time.sleep(0.1)  # both are waiting for their sleeps
            ping_status, _, ping_seconds = self.get("/ping/")
            answers = [future.result() for future in slow]
        for status, body, seconds in answers:
            self.assertEqual((status, json.loads(body)), (200, {"slept": [0.3] * 5}))
            self.assertLess(seconds, 0.6)  # one view after the other on the loop: 0.6 s
        self.assertEqual(ping_status, 200)
        self.assertLess(ping_seconds, 0.15)  # behind a view that held the loop: up to 0.3 s
        self.assertTrue(self.wait_for(lambda: self.checked_out() == 0, 3))

    def test_a_sync_view_works_and_its_scope_is_torn_down(self):
        status, body, _ = self.get("/backends/")
        self.assertEqual(status, 200)
        pids = json.loads(body)
        self.assertEqual(len(set(pids["tasks"])), 4)
        # The view's own Session held a connection in a transaction until teardown.
        self.assertTrue(self.wait_for(lambda: self.checked_out() == 0, 3))
        in_transaction = [b for b in self.other_backends() if b[1] == "idle in transaction"]
        self.assertEqual(in_transaction, [])

    @unittest.skipIf(django.VERSION < (5, 0), "Django 4.2 does not cancel a view whose client left")
    def test_a_client_that_goes_away_leaves_no_statement_running(self):
        self.addCleanup(self.terminate_sleeps)
        client = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            client.sendall(b"GET /async-sleeps/?seconds=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            started = self.wait_for(lambda: len(self.running(LONG_SLEEP)) == 5, 10)
            self.assertTrue(started, "the five sleeps did not start")
        finally:
            client.close()
        gone = time.monotonic()
        self.assertTrue(self.wait_for(lambda: not self.running(LONG_SLEEP), 3))
        self.assertTrue(self.wait_for(lambda: self.checked_out() == 0, 3))
        self.assertLess(time.monotonic() - gone, 3)
