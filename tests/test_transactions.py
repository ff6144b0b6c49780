"""A task's Session runs in a transaction, as every SQLAlchemy Session does.

So what a task sets for its transaction (set_config(..., true), an advisory
xact lock) lasts until its commit or end, and nothing it sets, not even a
session-level set_config() it commits, reaches another request's tasks.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from django.http import JsonResponse
from django.test import override_settings
from django.urls import path

import parallelq
from parallelq import get_engine, parallel, session
from tests.base import PostgresTestCase, backend_pid, sleep
from tests.models import Note

TENANT = sa.text("SELECT current_setting('app.tenant', true)")
# Room for 15 tasks at once, so that later scopes reuse the connections earlier ones used.
WIDE = {"MAX_WORKERS": 15, "ENGINE_OPTIONS": {"pool_size": 16, "max_overflow": 0}}


def set_tenant(is_local: bool, commit: bool = False) -> int:
    """Set app.tenant to 'A' on the current Session; return its backend pid."""
    session.execute(sa.text("SELECT set_config('app.tenant', 'A', :local)"), {"local": is_local})
    sleep(0.1)  # the siblings hold connections of their own meanwhile
    pid = backend_pid()
    if commit:
        session.commit()
    return pid


def read_tenant() -> tuple[int, str | None]:
    """Return the current Session's backend pid and the app.tenant it sees."""
    tenant = session.execute(TENANT).scalar_one()
    sleep(0.1)
    return backend_pid(), tenant


def show_limits() -> tuple[str, str]:
    """Return the statement_timeout and client_connection_check_interval the task runs under."""
    sleep(0.1)
    timeout = session.execute(sa.text("SHOW statement_timeout")).scalar_one()
    return timeout, session.execute(sa.text("SHOW client_connection_check_interval")).scalar_one()


def tenant_view(request):
    """With ?set=1, set app.tenant in 8 tasks; else report what 15 tasks and the request see."""
    if request.GET.get("set") == "1":
        return JsonResponse({"pids": parallel(*[lambda: set_tenant(False)] * 8)})
    seen = parallel(*[read_tenant] * 15)
    own = session.execute(TENANT).scalar_one()
    return JsonResponse({"pids": [p for p, _ in seen], "seen": [t for _, t in seen] + [own]})


urlpatterns = [path("tenant/", tenant_view)]


class TransactionTests(PostgresTestCase):
    def test_a_task_reads_one_transaction_time_across_its_statements(self):
        def two_nows():
            first = session.execute(sa.text("SELECT now()")).scalar_one()
            sleep(0.1)
            return first, session.execute(sa.text("SELECT now()")).scalar_one()

        with parallelq.scope():
            results = parallel(two_nows, two_nows)
        for first, second in results:
            self.assertEqual(first, second)

    def test_a_transaction_local_setting_holds_for_the_rest_of_the_task(self):
        # The row-level-security pattern: SET LOCAL a tenant, then query under it.
        def tenant():
            session.execute(sa.text("SELECT set_config('app.tenant', 'A', true)"))
            return session.execute(TENANT).scalar_one()

        with parallelq.scope():
            self.assertEqual(parallel(tenant), ["A"])

    @override_settings(PARALLELQ=WIDE)
    def test_an_uncommitted_session_setting_reaches_no_later_scope(self):
        with parallelq.scope():
            tainted = set(parallel(*[lambda: set_tenant(False)] * 8))
        self.assertEqual(len(tainted), 8)
        reused: set[int] = set()
        for _ in range(3):
            with parallelq.scope():
                seen = parallel(*[read_tenant] * 15)
                own = session.execute(TENANT).scalar_one()
            reused |= {pid for pid, _ in seen}
            self.assertLessEqual({tenant for _, tenant in seen} | {own}, {"", None}, seen)
        self.assertLessEqual(tainted, reused, "the later scopes never used the same connections")

    @override_settings(PARALLELQ={**WIDE, "STATEMENT_TIMEOUT": 30})
    def test_a_committed_session_setting_reaches_no_later_scope_and_limits_stay(self):
        with parallelq.scope():
            tainted = set(parallel(*[lambda: set_tenant(False, commit=True)] * 8))
        self.assertEqual(len(tainted), 8)
        reused: set[int] = set()
        for _ in range(3):
            with parallelq.scope():
                seen = parallel(*[read_tenant] * 15)
                limits = parallel(*[show_limits] * 15)
            reused |= {pid for pid, _ in seen}
            self.assertLessEqual({tenant for _, tenant in seen}, {"", None}, seen)
            # parallelq's own settings are made again after the reset.
            self.assertEqual(set(limits), {("30s", "1s")})
        self.assertLessEqual(tainted, reused, "the later scopes never used the same connections")

    @override_settings(PARALLELQ=WIDE, ROOT_URLCONF=__name__)
    def test_an_uncommitted_session_setting_reaches_no_later_request(self):
        tainted = set(self.client.get("/tenant/", {"set": "1"}).json()["pids"])
        self.assertEqual(len(tainted), 8)
        reused: set[int] = set()
        for _ in range(3):
            body = self.client.get("/tenant/").json()
            reused |= set(body["pids"])
            self.assertLessEqual(set(body["seen"]), {"", None}, body["seen"])
        self.assertLessEqual(tainted, reused, "the later requests never used the same connections")

    def test_an_uncommitted_write_is_rolled_back_and_a_committed_one_stays(self):
        def add(text: str, commit: bool) -> None:
            session.add(Note(text=text))
            session.flush()
            if commit:
                session.commit()

        with parallelq.scope(), self.assertLogs("parallelq", "WARNING") as logs:
            parallel(lambda: add("kept", True), lambda: add("dropped", False))
        self.assertEqual(len(logs.records), 1)
        self.assertIn("ended with uncommitted changes; they were rolled back", logs.output[0])
        with get_engine().connect() as connection:
            texts = connection.scalars(sa.select(Note.text)).all()
        self.assertEqual(texts, ["kept"])


class AdvisoryLockTests(PostgresTestCase):
    def setUp(self):
        super().setUp()
        with get_engine().begin() as connection:
            connection.exec_driver_sql("CREATE TABLE pq_test_counter (id int PRIMARY KEY, v int)")
            connection.exec_driver_sql("INSERT INTO pq_test_counter VALUES (1, 0)")
        self.addCleanup(self._drop_counter)

    def _drop_counter(self):
        with get_engine().begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS pq_test_counter")

    def counter(self) -> int:
        with get_engine().connect() as connection:
            return int(connection.exec_driver_sql("SELECT v FROM pq_test_counter").scalar_one())

    def test_an_advisory_xact_lock_serialises_two_tasks_read_modify_write(self):
        def increment():
            session.execute(sa.text("SELECT pg_advisory_xact_lock(4242)"))
            v = session.execute(sa.text("SELECT v FROM pq_test_counter WHERE id = 1")).scalar_one()
            sleep(0.2)
            session.execute(sa.text("UPDATE pq_test_counter SET v = :v WHERE id = 1"), {"v": v + 1})
            session.commit()  # ends the transaction, and the lock with it
            return v

        started = time.monotonic()
        with parallelq.scope():
            seen = parallel(increment, increment)
        self.assertEqual(sorted(seen), [0, 1], "both tasks read the same value: a lost update")
        self.assertEqual(self.counter(), 2)
        self.assertGreaterEqual(time.monotonic() - started, 0.4)
