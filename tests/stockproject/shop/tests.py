"""Tests as a new user writes them: Django's TestCase, and parallelq's."""

from __future__ import annotations

import sqlalchemy as sa
from django.test import TestCase

import parallelq
from parallelq import parallel, session, submit
from parallelq import testing as pq_testing
from shop.models import Shelf
from shop.tables import Book


def titles() -> list[str]:
    return sorted(session.scalars(sa.select(Book.title)).all())


def shelves() -> list[str]:
    return sorted(Shelf.objects.values_list("name", flat=True))


class ParallelTests(TestCase):
    """Django's TestCase: the tasks run on parallelq's pool, which is open when the run ends."""

    def test_parallel_runs_its_tasks(self):
        with parallelq.scope():
            self.assertEqual(parallel(titles, lambda: session.scalar(sa.text("SELECT 2"))), [[], 2])


class SharedTests(pq_testing.TestCase):
    """parallelq's TestCase: the tasks see the test's rows, which go with the test."""

    def setUp(self):
        Shelf.objects.create(name="orm")
        with parallelq.scope():
            session.add(Book(title="sqlalchemy"))
            session.commit()

    def test_tasks_see_the_tests_rows(self):
        with parallelq.scope():
            self.assertEqual(parallel(shelves, titles), [["orm"], ["sqlalchemy"]])
            self.assertEqual(submit(titles).result(), ["sqlalchemy"])

    def test_the_last_tests_rows_are_gone(self):
        with parallelq.scope():
            self.assertEqual(parallel(shelves, titles), [["orm"], ["sqlalchemy"]])
