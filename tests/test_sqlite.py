"""SQLite: parallelq on a file database, the in-memory refusal, and the demo's speedup."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, TransactionTestCase, override_settings

import parallelq
from demo_project.bookstore import pause
from parallelq import get_engine, parallel, session
from parallelq.engine import dispose_engine
from tests.models import Base, Note

ROOT = Path(__file__).resolve().parent.parent


def pg_sleep(seconds: float) -> tuple[int, int]:
    """Sleep in SQLite; return the thread and the DBAPI connection it ran on."""
    pause(seconds)
    return threading.get_ident(), id(session.connection().connection.dbapi_connection)


class SqliteFileTests(TransactionTestCase):
    databases = {"default"}

    def setUp(self):
        super().setUp()
        tmp = tempfile.mkdtemp(prefix="parallelq-sqlite-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        self.path = os.path.join(tmp, "x.sqlite3")
        overridden = override_settings(PARALLELQ={"DATABASE_URL": f"sqlite:///{self.path}"})
        overridden.enable()
        self.addCleanup(overridden.disable)
        self.addCleanup(dispose_engine)
        Base.metadata.create_all(get_engine())
        self.addCleanup(
            lambda: self.assertEqual(get_engine().pool.checkedout(), 0, "a connection was left out")
        )

    def test_engine_is_the_sqlite_file(self):
        engine = get_engine()
        self.assertEqual(engine.url.get_backend_name(), "sqlite")
        self.assertEqual(engine.url.database, self.path)
        self.assertIsInstance(engine.pool, sa.QueuePool)

    def test_tasks_write_rows_and_other_tasks_read_them(self):
        def add(text):
            session.add(Note(text=text))
            session.commit()
            return text

        with parallelq.scope():
            written = parallel(*[lambda t=t: add(t) for t in ["a", "b", "c", "d", "e"]])
            count, texts = parallel(
                lambda: session.scalar(sa.select(sa.func.count()).select_from(Note)),
                lambda: session.scalars(sa.select(Note.text).order_by(Note.text)).all(),
            )
            seen_by_caller = session.scalars(sa.select(Note.text).order_by(Note.text)).all()
        self.assertEqual(written, ["a", "b", "c", "d", "e"])
        self.assertEqual(count, 5)
        self.assertEqual(texts, ["a", "b", "c", "d", "e"])
        self.assertEqual(seen_by_caller, texts)

    def test_returned_orm_objects_stay_readable(self):
        with parallelq.scope():
            session.add_all([Note(text="one"), Note(text="two")])
            session.commit()
            (notes,) = parallel(lambda: session.scalars(sa.select(Note).order_by(Note.id)).all())
        self.assertEqual([n.text for n in notes], ["one", "two"])

    def test_uncommitted_task_writes_are_rolled_back(self):
        def add_without_commit():
            session.add(Note(text="forgotten"))
            session.flush()

        with self.assertLogs("parallelq", "WARNING"), parallelq.scope():
            parallel(add_without_commit)
            count = session.scalar(sa.select(sa.func.count()).select_from(Note))
        self.assertEqual(count, 0)

    def test_five_sleeps_run_at_once(self):
        with parallelq.scope():
            started = time.perf_counter()
            seen = parallel(*[lambda: pg_sleep(0.3)] * 5)
            elapsed = time.perf_counter() - started
        threads, connections = zip(*seen, strict=True)
        self.assertLess(elapsed, 0.6)
        self.assertEqual(len(set(threads)), 5)
        self.assertEqual(len(set(connections)), 5)

    def test_task_error_surfaces_as_itself(self):
        with parallelq.scope(), self.assertRaises(sa.exc.OperationalError) as caught:
            parallel(lambda: session.execute(sa.text("SELECT * FROM no_such_table")))
        self.assertIn("no_such_table", str(caught.exception))


class SharedMemorySqliteTests(TransactionTestCase):
    databases = {"default"}

    def test_shared_cache_memory_uri_is_shared_between_tasks(self):
        url = "sqlite:///file:pq_shared?mode=memory&cache=shared&uri=true"
        with override_settings(PARALLELQ={"DATABASE_URL": url}):
            self.addCleanup(dispose_engine)
            with parallelq.scope():
                # The memory database lives while a connection to it is open.
                session.execute(sa.text("CREATE TABLE shelf (title TEXT)"))
                session.execute(sa.text("INSERT INTO shelf VALUES ('Dune')"))
                session.commit()
                titles = parallel(
                    lambda: session.execute(sa.text("SELECT title FROM shelf")).scalar_one(),
                    lambda: session.execute(sa.text("SELECT title FROM shelf")).scalar_one(),
                )
                session.execute(sa.text("DROP TABLE shelf"))
                session.commit()
        self.assertEqual(titles, ["Dune", "Dune"])


class PrivateMemorySqliteTests(SimpleTestCase):
    def test_private_in_memory_url_is_improperly_configured(self):
        for url in ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://"]:
            with (
                self.subTest(url=url),
                override_settings(PARALLELQ={"DATABASE_URL": url}),
                self.assertRaisesMessage(ImproperlyConfigured, "Use a file database"),
            ):
                get_engine()

    def test_message_explains_why(self):
        with (
            override_settings(PARALLELQ={"DATABASE_URL": "sqlite://"}),
            self.assertRaises(ImproperlyConfigured) as caught,
        ):
            get_engine()
        self.assertIn("each connection would see its own empty database", str(caught.exception))
        self.assertIn("cache=shared", str(caught.exception))

    def test_engine_works_again_once_the_setting_is_fixed(self):
        with (
            override_settings(PARALLELQ={"DATABASE_URL": "sqlite://"}),
            self.assertRaises(ImproperlyConfigured),
        ):
            get_engine()
        self.assertIs(get_engine(), get_engine())


class DemoCommandTests(SimpleTestCase):
    def test_demo_runs_the_dashboard_at_least_three_times_faster(self):
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
            env.update(
                DEMO_SQLITE_PATH=os.path.join(tmp, "demo.sqlite3"),
                DJANGO_SETTINGS_MODULE="demo_project.settings",
            )
            result = subprocess.run(
                [sys.executable, "manage.py", "demo", "--latency-ms", "100", "--repeat", "3"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"Database: sqlite+pysqlite:///{tmp}/demo.sqlite3", result.stdout)
        row = re.search(
            r"^\s*100 ms\s+(?P<serial>[\d.]+) ms\s+(?P<parallel>[\d.]+) ms\s+(?P<speedup>[\d.]+)x$",
            result.stdout,
            re.MULTILINE,
        )
        self.assertIsNotNone(row, result.stdout)
        serial, par, speedup = (float(row[k]) for k in ("serial", "parallel", "speedup"))
        self.assertGreaterEqual(serial, 500)  # five panels, each waiting 100 ms
        self.assertGreaterEqual(par, 100)
        # About 4x on an idle machine; 2x leaves room for a loaded one.
        self.assertGreaterEqual(speedup, 2, result.stdout)
