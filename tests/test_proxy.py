"""The `session` proxy at run time: attributes reach the current Session; none stay on it."""

from __future__ import annotations

import sqlalchemy as sa

import parallelq
from parallelq import parallel, session
from tests.base import PostgresTestCase
from tests.models import Note


class SessionProxyTests(PostgresTestCase):
    def test_declared_methods_run_on_the_current_session(self):
        with parallelq.scope():
            note = Note(text="a")
            session.add(note)
            self.assertIn(note, session)
            self.assertEqual(list(session), [note])
            session.flush()
            self.assertIs(session.get(Note, note.id), note)
            self.assertEqual(session.scalars(sa.select(Note.text)).all(), ["a"])
            self.assertEqual(parallel(lambda: list(session)), [[]])  # the task's own Session

    def test_setting_an_attribute_sets_it_on_the_current_session_not_the_proxy(self):
        with parallelq.scope():
            session.autoflush = False
            self.assertIs(session().autoflush, False)
            self.assertEqual(parallel(lambda: session.autoflush), [True])
            self.assertNotIn("autoflush", vars(session))
        with parallelq.scope():
            self.assertIs(session.autoflush, True)

    def test_attributes_the_types_do_not_declare_still_reach_the_current_session(self):
        with parallelq.scope():
            self.assertIs(session.in_transaction(), False)
            session.execute(sa.text("SELECT 1"))
            self.assertIs(session.in_transaction(), True)
            self.assertIs(session.get_transaction(), session().get_transaction())
