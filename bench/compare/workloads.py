"""What one repetition runs: n independent statements, said in each contender's API.

Every contender runs the same SQL per task: ``SELECT pg_sleep(s)`` for the fan-outs,
a primary-key lookup of one bench_item row for the trivial queries.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from django.db.models import Func, TextField, Value
from sqlalchemy import orm
from sqlalchemy.ext.asyncio import AsyncSession

from bench.compare.schema import ROWS, Item, item_name


def _items() -> Any:
    # Imported on first use: a Django model needs the app registry loaded.
    from bench.compare.models import Item as DjangoItem

    return DjangoItem.objects


class Workload:
    """n independent statements; subclasses say them in SQLAlchemy, asyncio and Django."""

    def __init__(self, n: int) -> None:
        self.n = n

    def sa_call(self, session: orm.Session, i: int) -> Any:
        """Run statement `i` on a SQLAlchemy Session."""
        raise NotImplementedError

    async def async_call(self, session: AsyncSession, i: int) -> Any:
        """Run statement `i` on an AsyncSession."""
        raise NotImplementedError

    async def django_call(self, i: int) -> Any:
        """Run statement `i` with Django's async ORM."""
        raise NotImplementedError

    def raw_call(self, cursor: Any, i: int) -> Any:
        """Run statement `i` as SQL on a psycopg2 NamedTupleCursor, no SQLAlchemy."""
        raise NotImplementedError

    def check(self, results: list[Any]) -> None:
        """Raise AssertionError unless `results` are what the n statements return."""
        if len(results) != self.n:
            raise AssertionError(f"{len(results)} results for {self.n} statements")


class Sleeps(Workload):
    """n × ``SELECT pg_sleep(seconds)``: each task waits on the server, not in Python."""

    def __init__(self, n: int, seconds: float) -> None:
        super().__init__(n)
        self.seconds = seconds

    def sa_call(self, session: orm.Session, i: int) -> Any:
        return session.execute(sa.select(sa.func.pg_sleep(self.seconds))).scalar()

    async def async_call(self, session: AsyncSession, i: int) -> Any:
        return (await session.execute(sa.select(sa.func.pg_sleep(self.seconds)))).scalar()

    async def django_call(self, i: int) -> Any:
        # The ORM has no async raw cursor, so the sleep rides on a one-row query.
        sleep = Func(Value(self.seconds), function="pg_sleep", output_field=TextField())
        rows = _items().filter(pk=1).annotate(slept=sleep)
        return await rows.values_list("slept", flat=True).afirst()

    def raw_call(self, cursor: Any, i: int) -> Any:
        cursor.execute("SELECT pg_sleep(%s)", (self.seconds,))
        return cursor.fetchone()[0]


class Lookups(Workload):
    """n primary-key lookups of distinct bench_item rows, loaded as ORM objects."""

    def pk(self, i: int) -> int:
        return 1 + (i * 37) % ROWS

    def sa_call(self, session: orm.Session, i: int) -> Any:
        return session.get(Item, self.pk(i))

    async def async_call(self, session: AsyncSession, i: int) -> Any:
        return await session.get(Item, self.pk(i))

    async def django_call(self, i: int) -> Any:
        return await _items().aget(pk=self.pk(i))

    def raw_call(self, cursor: Any, i: int) -> Any:
        cursor.execute("SELECT id, name FROM bench_item WHERE id = %s", (self.pk(i),))
        return cursor.fetchone()  # a named tuple: .name, as the ORM's rows have

    def check(self, results: list[Any]) -> None:
        super().check(results)
        names = [row.name for row in results]
        if names != [item_name(self.pk(i)) for i in range(self.n)]:
            raise AssertionError(f"lookups returned the wrong rows: {names[:3]}...")
