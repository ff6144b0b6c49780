"""The project's SQLAlchemy tables, created by migration 0002."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData()


class Book(Base):
    __tablename__ = "shop_book"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    title: orm.Mapped[str] = orm.mapped_column(sa.String(100))
