"""Test support: a TestCase whose tasks see, and roll back with, what the test writes."""

from __future__ import annotations

import contextlib

from django import test

from parallelq.sharing import shared_connection


class TestCase(test.TestCase):
    """Django's TestCase, with parallelq on the test's own database connection.

    Tasks see the rows the test wrote and not committed, with Django's ORM or
    SQLAlchemy, and everything they and the test write is rolled back with the
    test. Tasks run one by one in the test's thread, on the test's connection
    (see parallelq.sharing.shared_connection()); setUpTestData() runs before
    that, so wrap SQLAlchemy writes there in ``with shared_connection():``.
    """

    _parallelq_sharing: contextlib.ExitStack

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # opens the class's transaction; runs setUpTestData()
        cls._parallelq_sharing = contextlib.ExitStack()
        try:
            cls._parallelq_sharing.enter_context(shared_connection())
        except BaseException:
            super().tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            cls._parallelq_sharing.close()
        finally:
            super().tearDownClass()
