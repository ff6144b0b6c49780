"""get_engine(): one Engine per process, on Django's test database, rebuilt when settings change."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import sqlalchemy as sa
from django.db import connection
from django.test import override_settings

import parallelq
from parallelq import get_engine, parallel, session
from tests.base import ParallelqTestCase, PostgresTestCase, database_url


def current_database() -> str:
    return str(session.execute(sa.text("SELECT current_database()")).scalar_one())


class OneEngineTests(ParallelqTestCase):
    def test_same_engine_every_time(self):
        self.assertIs(get_engine(), get_engine())

    def test_same_engine_in_every_thread(self):
        barrier = threading.Barrier(8)
        seen = []

        def fetch():
            barrier.wait(timeout=10)
            seen.append(get_engine())

        threads = [threading.Thread(target=fetch) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        self.assertEqual(len(seen), 8)
        self.assertTrue(all(engine is get_engine() for engine in seen))

    def test_sessions_of_the_caller_and_tasks_share_the_engine(self):
        with parallelq.scope():
            engines = parallel(lambda: session.get_bind(), lambda: session.get_bind())
            self.assertIs(session.get_bind(), get_engine())
        self.assertEqual(engines, [get_engine(), get_engine()])

    def test_engine_points_at_djangos_default_database(self):
        self.assertEqual(get_engine().url.database, connection.settings_dict["NAME"])

    def test_default_pool_holds_max_workers_plus_the_callers_session_without_overflow(self):
        pool = get_engine().pool
        self.assertEqual(pool.size(), 15)
        self.assertEqual(pool._max_overflow, 0)  # no public reader; overflow would reconnect


class RebuildTests(ParallelqTestCase):
    def test_rebuilt_when_engine_options_change(self):
        original = get_engine()
        with override_settings(PARALLELQ={"MAX_WORKERS": 2, "ENGINE_OPTIONS": {"pool_size": 3}}):
            rebuilt = get_engine()
            self.assertIsNot(rebuilt, original)
            self.assertEqual(rebuilt.pool.size(), 3)
            self.assertIs(get_engine(), rebuilt)
        restored = get_engine()
        self.assertIsNot(restored, rebuilt)
        self.assertEqual(restored.pool.size(), 15)

    def test_kept_when_an_override_changes_nothing(self):
        original = get_engine()
        with override_settings(PARALLELQ={"MAX_WORKERS": 8}):
            self.assertIs(get_engine(), original)

    def test_rebuilt_engine_is_used_by_new_scopes(self):
        with override_settings(PARALLELQ={"ENGINE_OPTIONS": {"pool_size": 4}}):
            with parallelq.scope():
                binds = parallel(lambda: session.get_bind())
                self.assertIs(session.get_bind(), get_engine())
            self.assertEqual(binds, [get_engine()])
            self.assertEqual(get_engine().pool.size(), 4)

    def test_database_url_wins_over_databases(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "x.sqlite3"
            with override_settings(PARALLELQ={"DATABASE_URL": f"sqlite:///{path}"}):
                engine = get_engine()
                self.assertEqual(engine.url.get_backend_name(), "sqlite")
                self.assertEqual(engine.url.database, str(path))
                with parallelq.scope():
                    self.assertEqual(session.execute(sa.text("SELECT 1")).scalar_one(), 1)
                self.assertTrue(path.exists())
                engine.dispose()
        self.assertEqual(get_engine().url.database, connection.settings_dict["NAME"])


class PostgresEngineTests(PostgresTestCase):
    def test_engine_points_at_djangos_test_database(self):
        name = connection.settings_dict["NAME"]
        self.assertTrue(name.startswith("test_"), name)
        url = get_engine().url
        self.assertEqual(url.get_backend_name(), "postgresql")
        self.assertEqual(url.database, name)
        self.assertEqual(url.host, connection.settings_dict["HOST"] or None)
        self.assertEqual(str(url.port or ""), str(connection.settings_dict["PORT"]))

    def test_caller_and_tasks_query_the_test_database(self):
        with parallelq.scope():
            caller = current_database()
            tasks = parallel(current_database, current_database)
        name = connection.settings_dict["NAME"]
        self.assertEqual([caller, *tasks], [name, name, name])

    def test_database_url_to_another_database_wins_over_databases(self):
        url = database_url(database="postgres")
        with override_settings(
            PARALLELQ={"DATABASE_URL": url.render_as_string(hide_password=False)}
        ):
            with parallelq.scope():
                caller = current_database()
                tasks = parallel(current_database)
            get_engine().dispose()
        self.assertEqual([caller, *tasks], ["postgres", "postgres"])
        with parallelq.scope():
            self.assertEqual(current_database(), connection.settings_dict["NAME"])
