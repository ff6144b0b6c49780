"""parallel(): tasks run at once, each on its own Session and connection, results in order."""

from __future__ import annotations

import threading
import time
import traceback

import sqlalchemy as sa
from django.test import override_settings

import parallelq
from parallelq import parallel, session
from tests.base import PostgresTestCase, backend_pid, sleep
from tests.models import Note, Writer


class ParallelTests(PostgresTestCase):
    def test_five_sleeps_run_at_once_and_return_in_order(self):
        with parallelq.scope():
            started = time.perf_counter()
            results = parallel(*[lambda i=i: (i, sleep(0.3)) for i in range(5)])
            elapsed = time.perf_counter() - started
        self.assertEqual(results, [(i, 0.3) for i in range(5)])
        self.assertLess(elapsed, 0.6)

    def test_named_callables_return_a_dict(self):
        with parallelq.scope():
            results = parallel(one=lambda: 1, two=lambda: sleep(0.05) * 40)
        self.assertEqual(results, {"one": 1, "two": 2.0})

    def test_each_task_has_its_own_session_and_backend(self):
        def identify():
            sleep(0.2)  # all five hold their connections at the same time
            return id(session()), backend_pid(), threading.get_ident()

        with parallelq.scope():
            request_pid = backend_pid()
            request_session = id(session())
            seen = parallel(*[identify] * 5)
        sessions, pids, threads = zip(*seen, strict=True)
        self.assertEqual(len(set(sessions)), 5)
        self.assertEqual(len(set(pids)), 5)
        self.assertNotIn(request_session, sessions)
        self.assertNotIn(request_pid, pids)
        self.assertNotIn(threading.get_ident(), threads)

    def test_returned_orm_objects_stay_readable(self):
        with parallelq.scope():
            writer = Writer(name="Ursula", notes=[Note(text="a"), Note(text="b")])
            session.add(writer)
            session.commit()
            loaded = parallel(
                lambda: session.scalars(sa.select(Writer)).one(),
                lambda: session.scalars(sa.select(Note).order_by(Note.text)).all(),
            )
            found, notes = loaded
            self.assertEqual(found.name, "Ursula")
            self.assertEqual([n.text for n in notes], ["a", "b"])
            self.assertEqual(found.id, writer.id)

    def test_mixing_positional_and_named_is_a_type_error(self):
        with parallelq.scope(), self.assertRaisesMessage(TypeError, "not both"):
            parallel(lambda: 1, two=lambda: 2)

    def test_no_callables_returns_an_empty_list(self):
        with parallelq.scope():
            self.assertEqual(parallel(), [])

    def test_a_task_named_like_an_option_is_refused_not_dropped(self):
        panels = {"totals": lambda: 1, "return_exceptions": lambda: 2}
        with (
            parallelq.scope(),
            self.assertRaisesMessage(
                TypeError, "'return_exceptions' is parallel()'s own: give the task another name."
            ),
        ):
            parallel(**panels)

    def test_timeout_must_be_a_number_of_seconds(self):
        for timeout in ("5", 0, -1, True):
            with (
                self.subTest(timeout=timeout),
                parallelq.scope(),
                self.assertRaisesMessage(
                    TypeError,
                    "parallel() argument 'timeout' must be a positive, finite number of "
                    f"seconds (at most 9223372036) or None, not {timeout!r}.",
                ),
            ):
                parallel(lambda: 1, timeout=timeout)

    def test_non_callable_names_its_position(self):
        with (
            parallelq.scope(),
            self.assertRaisesMessage(
                TypeError,
                "parallel() positional argument 1 must be a callable taking no arguments, not int.",
            ),
        ):
            parallel(lambda: 1, 42)


class ErrorTests(PostgresTestCase):
    def test_exception_surfaces_with_its_type_message_and_traceback(self):
        class LedgerError(Exception):
            pass

        def failing_panel():
            raise LedgerError("ledger is off by 3")

        with parallelq.scope():
            try:
                parallel(lambda: 1, failing_panel)
            except LedgerError as exc:
                caught = exc
        self.assertEqual(str(caught), "ledger is off by 3")
        frames = [f.name for f in traceback.extract_tb(caught.__traceback__)]
        self.assertEqual(frames[0], "test_exception_surfaces_with_its_type_message_and_traceback")
        self.assertEqual(frames[-1], "failing_panel")

    def test_database_error_surfaces_as_itself(self):
        with parallelq.scope(), self.assertRaises(sa.exc.ProgrammingError) as caught:
            parallel(lambda: session.execute(sa.text("SELECT * FROM no_such_table")))
        self.assertIn("no_such_table", str(caught.exception))

    @override_settings(PARALLELQ={"MAX_WORKERS": 1})
    def test_tasks_not_yet_started_are_not_run(self):
        ran = []

        def fail():
            raise ValueError("first")

        with parallelq.scope(), self.assertRaises(ValueError):
            parallel(fail, lambda: ran.append("second"), lambda: ran.append("third"))
        self.assertEqual(ran, [])

    def test_return_exceptions_puts_them_in_place(self):
        with parallelq.scope():
            results = parallel(lambda: 1, lambda: 1 / 0, lambda: sleep(0.1), return_exceptions=True)
        self.assertEqual(results[0], 1)
        self.assertIsInstance(results[1], ZeroDivisionError)
        self.assertEqual(results[2], 0.1)

    def test_timeout_raises_timeout_naming_the_unfinished_task(self):
        with parallelq.scope():
            started = time.perf_counter()
            with self.assertRaises(parallelq.Timeout) as caught:
                parallel(fast=lambda: 1, slow=lambda: sleep(5), timeout=0.3)
            elapsed = time.perf_counter() - started
        self.assertIsInstance(caught.exception, TimeoutError)
        self.assertIn("slow", str(caught.exception))
        self.assertNotIn("fast", str(caught.exception))
        self.assertLess(elapsed, 2.5)

    @override_settings(PARALLELQ={"TIMEOUT": 0.3})
    def test_timeout_setting_is_the_default(self):
        with parallelq.scope(), self.assertRaises(parallelq.Timeout):
            parallel(lambda: sleep(5))
