"""pytest-django tests, with the parallelq_db fixture of parallelq's pytest plugin."""

from __future__ import annotations

import sqlalchemy as sa

import parallelq
from parallelq import parallel, session
from shop.models import Shelf
from shop.tables import Book


def test_parallel_on_the_pool(db):
    with parallelq.scope():
        assert parallel(lambda: session.scalar(sa.text("SELECT 1"))) == [1]


def test_tasks_see_the_tests_rows(parallelq_db):
    Shelf.objects.create(name="orm")
    with parallelq.scope():
        session.add(Book(title="sqlalchemy"))
        session.commit()
        seen = parallel(
            lambda: list(Shelf.objects.values_list("name", flat=True)),
            lambda: session.scalars(sa.select(Book.title)).all(),
        )
    assert seen == [["orm"], ["sqlalchemy"]]


def test_rows_of_the_test_before_are_gone(parallelq_db):
    with parallelq.scope():
        assert parallel(lambda: session.scalar(sa.select(sa.func.count(Book.id)))) == [0]
    assert Shelf.objects.count() == 0
