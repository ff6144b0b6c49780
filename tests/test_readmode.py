"""Task reads run in autocommit; a task's first write, lock or savepoint gets a transaction."""

from __future__ import annotations

import psycopg2.extensions
import sqlalchemy as sa
from django.test import override_settings

import parallelq
from parallelq import parallel, session
from tests.base import PostgresTestCase
from tests.models import Note

IDLE, IN_TRANSACTION = 0, 2  # psycopg2's transaction_status values


def driver_state():
    """Return (autocommit, transaction status) of the task's psycopg2 connection."""
    dbapi = session.connection().connection.dbapi_connection
    return dbapi.autocommit, dbapi.info.transaction_status


def read_then_state():
    session.scalars(sa.select(Note)).all()
    session.execute(sa.text("SELECT pg_sleep(0)"))
    return driver_state()


class ReadModeTests(PostgresTestCase):
    def test_a_reading_task_runs_in_autocommit_without_a_transaction(self):
        with parallelq.scope():
            self.assertEqual(parallel(read_then_state), [(True, IDLE)])

    def test_a_flush_opens_a_transaction_that_the_task_end_rolls_back(self):
        def write():
            session.scalars(sa.select(Note)).all()
            session.add(Note(text="pending"))
            session.flush()
            return driver_state()

        with self.assertLogs("parallelq", "WARNING"), parallelq.scope():
            self.assertEqual(parallel(write), [(False, IN_TRANSACTION)])
        with parallelq.scope():
            self.assertEqual(session.scalars(sa.select(Note.text)).all(), [])

    def test_locking_reads_get_a_transaction(self):
        def lock_orm():
            session.scalars(sa.select(Note).with_for_update()).all()
            return driver_state()

        def lock_text():
            session.execute(sa.text("SELECT * FROM pq_test_note FOR NO KEY UPDATE"))
            return driver_state()

        def lock_query():  # the legacy Query reaches the Session by another path
            session.query(Note).with_for_update().all()
            return driver_state()

        with parallelq.scope():
            self.assertEqual(
                parallel(lock_orm, lock_text, lock_query), [(False, IN_TRANSACTION)] * 3
            )

    def test_streaming_reads_get_a_transaction(self):
        def stream():
            rows = session.execute(sa.select(Note).execution_options(yield_per=1))
            texts = [note.text for note in rows.scalars()]
            return texts, driver_state()

        def stream_by_argument():
            notes = session.scalars(sa.select(Note), execution_options={"yield_per": 1})
            return [note.text for note in notes], driver_state()

        with parallelq.scope():
            session.add_all([Note(text="a"), Note(text="b")])
            session.commit()
            self.assertEqual(
                parallel(stream, stream_by_argument), [(["a", "b"], (False, IN_TRANSACTION))] * 2
            )

    def test_a_savepoint_in_a_task_works_and_commits(self):
        def nested():
            with session.begin_nested():
                session.add(Note(text="saved"))
            session.commit()

        with parallelq.scope():
            parallel(nested)
            self.assertEqual(session.scalars(sa.select(Note.text)).all(), ["saved"])

    def test_a_savepoint_on_the_tasks_connection_gets_a_transaction(self):
        def nested_on_connection():
            connection = session.connection()
            session.scalars(sa.select(Note)).all()  # a read first: in autocommit
            with connection.begin_nested():
                connection.execute(sa.insert(Note.__table__).values(text="raw"))
            state = driver_state()
            session.commit()
            return state

        with parallelq.scope():
            self.assertEqual(parallel(nested_on_connection), [(False, IN_TRANSACTION)])
            self.assertEqual(session.scalars(sa.select(Note.text)).all(), ["raw"])

    def test_the_engine_has_no_connection_event_listeners(self):
        # One would make every statement on the Engine dispatch every Connection
        # event: about 45 µs of CPU per lookup. Users may add their own; parallelq adds none.
        engine = parallelq.get_engine()
        self.assertFalse(engine._has_events)

    def test_a_commit_ends_the_transaction_and_the_next_reads_autocommit_again(self):
        def write_then_read():
            session.add(Note(text="kept"))
            session.commit()
            return read_then_state()

        with parallelq.scope():
            self.assertEqual(parallel(write_then_read), [(True, IDLE)])
            self.assertEqual(session.scalars(sa.select(Note.text)).all(), ["kept"])

    def test_connections_leave_autocommit_before_the_request_session_gets_them(self):
        with parallelq.scope():
            parallel(*[read_then_state] * 12)  # most of the pool has served a task
        with self.assertLogs("parallelq", "WARNING"), parallelq.scope():
            for _ in range(12):
                session.add(Note(text="never committed"))
                session.flush()
                self.assertEqual(driver_state(), (False, IN_TRANSACTION))
                session.rollback()
            session.add(Note(text="never committed"))
            session.flush()
        with parallelq.scope():
            self.assertEqual(session.scalars(sa.select(Note.text)).all(), [])

    def test_a_task_that_asks_for_an_isolation_level_keeps_its_transaction(self):
        def repeatable():
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            level = session.scalar(sa.select(sa.func.current_setting("transaction_isolation")))
            return level, read_then_state()

        with parallelq.scope():
            self.assertEqual(parallel(repeatable), [("repeatable read", (False, IN_TRANSACTION))])

    @override_settings(PARALLELQ={"ENGINE_OPTIONS": {"isolation_level": "REPEATABLE READ"}})
    def test_reads_keep_their_transaction_under_repeatable_read(self):
        with parallelq.scope():
            self.assertEqual(parallel(read_then_state), [(False, IN_TRANSACTION)])


class CountingConnection(psycopg2.extensions.connection):
    """A real psycopg2 connection that counts autocommit switches, commits and rollbacks.

    Each of them releases the GIL, even when psycopg2 then sends nothing.
    """

    switches = 0
    ends = 0

    def commit(self):
        type(self).ends += 1
        super().commit()

    def rollback(self):
        type(self).ends += 1
        super().rollback()

    @property
    def autocommit(self):
        return super().autocommit

    @autocommit.setter
    def autocommit(self, value):
        type(self).switches += 1
        psycopg2.extensions.connection.autocommit.__set__(self, value)


COUNTING = {"ENGINE_OPTIONS": {"connect_args": {"connection_factory": CountingConnection}}}


def read():
    return session.scalars(sa.select(Note.text)).all()


class PooledAutocommitTests(PostgresTestCase):
    """Connections stay in autocommit in the pool between task reads, and only then."""

    def setUp(self):
        super().setUp()
        CountingConnection.switches = CountingConnection.ends = 0

    def warm_pool(self) -> None:
        with parallelq.scope():
            parallel(*[read] * 12)  # most of the pool has served a task

    @override_settings(PARALLELQ=COUNTING)
    def test_task_reads_after_task_reads_switch_nothing(self):
        self.warm_pool()
        switched = CountingConnection.switches
        self.assertGreater(switched, 0)  # the counter counts
        for _ in range(3):
            with parallelq.scope():
                parallel(*[read] * 5)
        self.assertEqual(CountingConnection.switches, switched)

    @override_settings(PARALLELQ=COUNTING)
    def test_reads_end_without_commit_or_rollback_and_writes_with_them(self):
        def read_and_commit():
            rows = read()
            session.commit()
            return rows

        def write_and_commit():
            session.add(Note(text="kept"))
            session.commit()

        def write_and_drop():
            session.add(Note(text="rolled back"))
            session.flush()

        self.warm_pool()
        CountingConnection.ends = 0  # SQLAlchemy's first connect rolls back its own queries
        with parallelq.scope():
            parallel(*[read] * 5, *[read_and_commit] * 5)
            self.assertEqual(CountingConnection.ends, 0)
            parallel(write_and_commit)
            self.assertEqual(CountingConnection.ends, 1)
            with self.assertLogs("parallelq", "WARNING"):
                parallel(write_and_drop)
            self.assertEqual(CountingConnection.ends, 2)
            self.assertEqual(session.scalars(sa.select(Note.text)).all(), ["kept"])

    @override_settings(PARALLELQ=COUNTING)
    def test_a_write_leaves_autocommit_and_the_next_read_enters_it_again(self):
        def write():
            session.add(Note(text="kept"))
            session.flush()
            state = driver_state()
            session.commit()
            return state

        self.warm_pool()
        with parallelq.scope():
            self.assertEqual(parallel(write), [(False, IN_TRANSACTION)])
            self.assertEqual(parallel(read_then_state), [(True, IDLE)])
            self.assertEqual(session.scalars(sa.select(Note.text)).all(), ["kept"])

    def test_raw_connections_and_engine_connect_get_a_transaction(self):
        self.warm_pool()
        engine = parallelq.get_engine()
        raws = [engine.raw_connection() for _ in range(12)]
        for raw in raws:
            self.assertFalse(raw.dbapi_connection.autocommit)
            with raw.cursor() as cursor:
                cursor.execute("INSERT INTO pq_test_note (text) VALUES ('never committed')")
        for raw in raws:
            raw.close()
        self.warm_pool()
        connections = [engine.connect() for _ in range(12)]
        for connection in connections:
            connection.execute(sa.text("INSERT INTO pq_test_note (text) VALUES ('rolled back')"))
            self.assertFalse(connection.connection.dbapi_connection.autocommit)
        for connection in connections:
            connection.close()
        with parallelq.scope():
            self.assertEqual(session.scalars(sa.select(Note.text)).all(), [])

    def test_a_connection_a_task_opens_itself_gets_a_transaction(self):
        def own_connection():
            read()  # the task's Session holds one connection in autocommit
            with parallelq.get_engine().connect() as connection:
                connection.execute(sa.text("INSERT INTO pq_test_note (text) VALUES ('dropped')"))
                return connection.connection.dbapi_connection.autocommit

        self.warm_pool()
        with parallelq.scope():
            self.assertEqual(parallel(*[own_connection] * 4), [False] * 4)
            self.assertEqual(session.scalars(sa.select(Note.text)).all(), [])


class CheckinResetTests(PostgresTestCase):
    """At check-in parallelq, not SQLAlchemy, rolls back what a connection left open."""

    def count_notes(self) -> int:
        with parallelq.get_engine().connect() as connection:
            return int(connection.scalar(sa.select(sa.func.count()).select_from(Note)))

    def assert_no_backend_idle_in_transaction(self) -> None:
        states = [state for _, state, _ in self.other_backends()]
        self.assertNotIn("idle in transaction", states)

    def test_an_uncommitted_write_on_a_raw_connection_is_rolled_back_at_checkin(self):
        raw = parallelq.get_engine().raw_connection()
        with raw.cursor() as cursor:
            cursor.execute("INSERT INTO pq_test_note (text) VALUES ('never committed')")
        raw.close()  # back to the pool with the transaction open
        self.assert_no_backend_idle_in_transaction()
        self.assertEqual(self.count_notes(), 0)

    def test_a_begin_sent_as_text_in_autocommit_is_rolled_back_at_checkin(self):
        raw = parallelq.get_engine().raw_connection()
        # Nothing turns autocommit off that parallelq did not turn on: close the connection.
        self.addCleanup(parallelq.get_engine().dispose)
        raw.dbapi_connection.autocommit = True
        with raw.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("INSERT INTO pq_test_note (text) VALUES ('never committed')")
        raw.close()
        self.assert_no_backend_idle_in_transaction()
        self.assertEqual(self.count_notes(), 0)

    @override_settings(PARALLELQ={"ENGINE_OPTIONS": {"pool_reset_on_return": "rollback"}})
    def test_with_sqlalchemys_reset_asked_for_the_write_is_rolled_back_too(self):
        raw = parallelq.get_engine().raw_connection()
        with raw.cursor() as cursor:
            cursor.execute("INSERT INTO pq_test_note (text) VALUES ('never committed')")
        raw.close()
        self.assertEqual(self.count_notes(), 0)
