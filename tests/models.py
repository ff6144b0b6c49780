"""SQLAlchemy models of the tests, on their own MetaData."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData()


class Note(Base):
    __tablename__ = "pq_test_note"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    text: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    author_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("pq_test_author.id"))
    author: orm.Mapped[Writer | None] = orm.relationship(back_populates="notes")


class Writer(Base):
    __tablename__ = "pq_test_author"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    notes: orm.Mapped[list[Note]] = orm.relationship(back_populates="author")
