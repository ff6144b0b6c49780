"""parallelq touches only what it owns: its own Engine, its own Session classes, its threads."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import unittest

import sqlalchemy as sa
from django.db import connection
from sqlalchemy import orm

import parallelq
from parallelq import get_engine, parallel, session
from tests.base import ParallelqTestCase, PostgresTestCase, database_url

PACKAGE = pathlib.Path(parallelq.__file__).parent
# Classes whose listeners reach every instance, a user's included.
SHARED_CLASSES = {
    *("Pool", "QueuePool", "NullPool", "StaticPool", "SingletonThreadPool"),
    *("Engine", "Connection", "Dialect", "DefaultDialect", "Session", "Mapper"),
}
PINNABLE = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1
DIALECT_METHODS = ("do_commit", "do_rollback", "do_savepoint", "do_ping", "do_execute")


def listener_targets() -> list[str]:
    """Return 'file:line target' for every event.listen()/listens_for() call in parallelq/."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in ("listen", "listens_for"):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node.args[0])}")
    return found


def _from_parallelq(fn: object, depth: int = 0) -> bool:
    # SQLAlchemy wraps some listeners (retval=False, legacy signatures) in closures of its own.
    if str(getattr(fn, "__module__", "")).startswith("parallelq"):
        return True
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            inner = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if depth < 3 and callable(inner) and _from_parallelq(inner, depth + 1):
            return True
    return False


def parallelq_listeners(*dispatches: object) -> list[str]:
    """Return 'event: listener' for each of parallelq's listeners in `dispatches`.

    A dispatch's collections iterate over class-level listeners and the instance's own.
    """
    return [
        f"{name}: {fn!r}"
        for dispatch in dispatches
        for name in dispatch._event_names  # type: ignore[attr-defined]
        for fn in getattr(dispatch, name)
        if _from_parallelq(fn)
    ]


class SourceTests(unittest.TestCase):
    def test_parallelq_pins_no_thread_and_loads_no_c_library(self):
        for path in PACKAGE.rglob("*.py"):
            nodes = list(ast.walk(ast.parse(path.read_text(), str(path))))
            names = {getattr(n, "attr", getattr(n, "id", None)) for n in nodes}
            modules = {a.name for n in nodes if isinstance(n, ast.Import) for a in n.names}
            modules |= {n.module or "" for n in nodes if isinstance(n, ast.ImportFrom)}
            with self.subTest(path.name):
                self.assertFalse(names & {"sched_setaffinity", "sched_getcpu", "ctypes"})
                self.assertFalse({m for m in modules if m.split(".")[0] == "ctypes"})

    def test_parallelq_listens_on_no_sqlalchemy_base_class(self):
        targets = listener_targets()
        self.assertTrue(targets, "the scan found none of parallelq's own listeners")
        shared = [t for t in targets if t.rsplit(" ", 1)[1].split(".")[-1] in SHARED_CLASSES]
        self.assertEqual(shared, [])


class EngineChecks(ParallelqTestCase):
    """Checks that an Engine holds no listener of parallelq's, nor a dialect method it replaced."""

    def setUp(self):
        super().setUp()
        with parallelq.scope():  # parallelq has been used in this process
            parallel(lambda: session.execute(sa.text("SELECT 1")).scalar_one())

    def assert_untouched(self, engine: sa.Engine) -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        with orm.Session(engine) as user_session:
            user_session.execute(sa.text("SELECT 1"))
            dispatches = (engine.pool.dispatch, engine.dispatch, engine.dialect.dispatch)
            self.assertEqual(parallelq_listeners(*dispatches, user_session.dispatch), [])
        self.assert_dialect_is_sqlalchemys(engine.dialect)

    def assert_dialect_is_sqlalchemys(self, dialect: sa.Dialect) -> None:
        for name in DIALECT_METHODS:
            with self.subTest(name):
                self.assertNotIn(name, vars(dialect))
                self.assertIs(getattr(dialect, name).__func__, getattr(type(dialect), name))


class UserEngineTests(EngineChecks):
    def test_a_users_sqlite_engine_carries_nothing_of_parallelq(self):
        tmp = tempfile.mkdtemp(prefix="parallelq-own-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        engine = sa.create_engine(f"sqlite:///{os.path.join(tmp, 'own.sqlite3')}")
        self.addCleanup(engine.dispose)
        self.assert_untouched(engine)

    def test_parallelq_listens_on_its_own_engine_and_replaces_no_dialect_method(self):
        # The check above would see these: parallelq's pool bookkeeping is on its Engine.
        self.assertTrue(parallelq_listeners(get_engine().pool.dispatch))
        self.assert_dialect_is_sqlalchemys(get_engine().dialect)


class UserPostgresEngineTests(PostgresTestCase, EngineChecks):
    def test_a_users_postgresql_engine_carries_nothing_of_parallelq(self):
        engine = sa.create_engine(database_url())
        self.addCleanup(engine.dispose)
        self.assert_untouched(engine)


# Pins itself to one core after importing parallelq, then reports each thread's CPU set.
PINNED = """
import json, os, sys, threading
sys.path.insert(0, sys.argv[1])
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["parallelq"], USE_TZ=True,
    DATABASES={"default": json.loads(os.environ["PARALLELQ_PINNED_DB"])},
    PARALLELQ={"MAX_WORKERS": 4},
)
django.setup()
import sqlalchemy as sa
import parallelq
os.sched_setaffinity(0, {int(sys.argv[2])})

def where():
    parallelq.session.execute(sa.text("SELECT pg_sleep(0.05)"))
    return threading.current_thread().name, sorted(os.sched_getaffinity(0))

with parallelq.scope():
    seen = [where()] + parallelq.parallel(*[where] * 4)
    seen += [parallelq.submit(where).result(timeout=10) for _ in range(3)]
    seen += parallelq.parallel(*[where] * 4)
print(json.dumps(seen))
"""


@unittest.skipUnless(PINNABLE, "needs os.sched_setaffinity() and two usable CPUs to pin to one")
class PinnedProcessTests(PostgresTestCase):
    def test_every_thread_keeps_the_cpu_set_its_process_pinned_after_import(self):
        cpu = min(os.sched_getaffinity(0))
        keys = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
        db = {key: connection.settings_dict[key] for key in keys}
        result = subprocess.run(
            [sys.executable, "-c", PINNED, str(PACKAGE.parent), str(cpu)],
            env={**os.environ, "PARALLELQ_PINNED_DB": json.dumps(db)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        seen = json.loads(result.stdout)
        self.assertEqual(len(seen), 12)
        self.assertTrue(any(name.startswith("parallelq") for name, _ in seen), seen)
        self.assertEqual([cpus for _, cpus in seen], [[cpu]] * 12, seen)
