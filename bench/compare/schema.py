"""The table every contender reads: bench_item, as a SQLAlchemy model, and its seed rows."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm

ROWS = 1_000


class Base(orm.DeclarativeBase):
    pass


class Item(Base):
    """A row looked up by primary key; models.Item is the same table for Django."""

    __tablename__ = "bench_item"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(40))


def item_name(pk: int) -> str:
    """Return the name the seed gives row `pk`."""
    return f"item {pk}"


def seed(engine: sa.Engine) -> None:
    """Create bench_item and fill it with ROWS rows."""
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Item), [{"id": pk, "name": item_name(pk)} for pk in range(1, ROWS + 1)]
        )
        conn.exec_driver_sql("ANALYZE bench_item")
