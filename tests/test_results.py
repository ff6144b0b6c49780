"""What a task may return: rows and objects yes; its Session, a Query or a lazy result no."""

from __future__ import annotations

import sqlalchemy as sa

import parallelq
from parallelq import parallel, session
from tests.base import PostgresTestCase
from tests.models import Note


class ReturnedValueTests(PostgresTestCase):
    def setUp(self):
        super().setUp()
        with parallelq.scope():
            session.add_all([Note(text="a"), Note(text="b")])
            session.commit()

    def test_a_returned_result_is_read_in_the_task_and_usable_after(self):
        with parallelq.scope():
            rows, notes = parallel(
                lambda: session.execute(sa.text("SELECT text FROM pq_test_note ORDER BY id")),
                lambda: session.execute(sa.select(Note).order_by(Note.id)),
            )
            self.assertEqual(rows.scalars().all(), ["a", "b"])
            self.assertEqual([n.text for n in notes.scalars()], ["a", "b"])

    def test_returning_a_scalar_result_is_a_clear_error(self):
        with (
            parallelq.scope(),
            self.assertRaisesMessage(
                parallelq.ParallelQueryError,
                "Task 'notes' returned a ScalarResult, which would read rows from a connection "
                "the task has given back. Return its rows: .all(), .first() or .one().",
            ),
        ):
            parallel(notes=lambda: session.scalars(sa.select(Note)))

    def test_returning_a_query_is_a_clear_error(self):
        with (
            parallelq.scope(),
            self.assertRaisesMessage(parallelq.ParallelQueryError, "Return query.all()"),
        ):
            parallel(notes=lambda: session.query(Note))

    def test_returning_the_session_is_a_clear_error(self):
        with (
            parallelq.scope(),
            self.assertRaisesMessage(
                parallelq.ParallelQueryError, "Task 'mine' returned its Session, which ends"
            ),
        ):
            parallel(mine=session)

    def test_the_result_of_a_write_without_rows_is_returned_as_it_is(self):
        def insert():
            result = session.execute(sa.text("INSERT INTO pq_test_note (text) VALUES ('c')"))
            session.commit()
            return result

        with parallelq.scope():
            (result,) = parallel(insert)
            self.assertFalse(result.returns_rows)
            self.assertEqual(result.rowcount, 1)
