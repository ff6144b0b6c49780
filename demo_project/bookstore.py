"""The demo bookstore: SQLAlchemy models, seed data and the dashboard's panel queries."""

from __future__ import annotations

import datetime
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from parallelq import get_engine, session

GENRES = ["fiction", "history", "science", "poetry", "travel", "cooking", "children", "crime"]
COUNTRIES = ["NZ", "FR", "JP", "BR", "NG", "CA", "DE", "IN"]
SEED_SIZES = {"authors": 400, "books": 4_000, "reviews": 40_000, "orders": 30_000}


class Base(orm.DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "bookstore_author"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    country: orm.Mapped[str] = orm.mapped_column(sa.String(2))
    books: orm.Mapped[list[Book]] = orm.relationship(back_populates="author")


class Book(Base):
    __tablename__ = "bookstore_book"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    title: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    genre: orm.Mapped[str] = orm.mapped_column(sa.String(20), index=True)
    price_cents: orm.Mapped[int]
    author_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey(Author.id), index=True)
    author: orm.Mapped[Author] = orm.relationship(back_populates="books")


class Review(Base):
    __tablename__ = "bookstore_review"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    book_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey(Book.id), index=True)
    rating: orm.Mapped[int]


class Order(Base):
    __tablename__ = "bookstore_order"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    book_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey(Book.id), index=True)
    quantity: orm.Mapped[int]
    ordered_on: orm.Mapped[datetime.date] = orm.mapped_column(index=True)


_seed_lock = threading.Lock()
_seeded: set[str] = set()


def ensure_seeded(engine: sa.Engine | None = None) -> bool:
    """Create the tables and fill them on first use; return True if it seeded now."""
    engine = engine or get_engine()
    key = engine.url.render_as_string()
    if key in _seeded:
        return False
    with _seed_lock:
        if key in _seeded:
            return False
        Base.metadata.create_all(engine)
        if engine.dialect.name == "sqlite":
            with engine.connect() as connection:
                # Kept by the file: the tasks' readers run beside a writer.
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        with orm.Session(engine) as db:
            fresh = db.scalar(sa.select(sa.func.count()).select_from(Author)) == 0
            if fresh:
                _seed(db)
                db.commit()
        _seeded.add(key)
        return fresh


def _seed(db: orm.Session) -> None:
    rnd = random.Random(2026)
    n = SEED_SIZES
    db.execute(
        sa.insert(Author),
        [
            {"id": i, "name": f"Author {i}", "country": rnd.choice(COUNTRIES)}
            for i in range(1, n["authors"] + 1)
        ],
    )
    db.execute(
        sa.insert(Book),
        [
            {
                "id": i,
                "title": f"Book {i}",
                "genre": rnd.choice(GENRES),
                "price_cents": rnd.randrange(500, 6000),
                "author_id": rnd.randrange(1, n["authors"] + 1),
            }
            for i in range(1, n["books"] + 1)
        ],
    )
    db.execute(
        sa.insert(Review),
        [
            {"book_id": rnd.randrange(1, n["books"] + 1), "rating": rnd.randrange(1, 6)}
            for _ in range(n["reviews"])
        ],
    )
    start = datetime.date(2025, 1, 1)
    db.execute(
        sa.insert(Order),
        [
            {
                "book_id": rnd.randrange(1, n["books"] + 1),
                "quantity": rnd.randrange(1, 4),
                "ordered_on": start + datetime.timedelta(days=rnd.randrange(0, 365)),
            }
            for _ in range(n["orders"])
        ],
    )


def pause(latency: float) -> None:
    """Stand in for a slow query: make the database wait `latency` seconds."""
    if latency > 0:
        connection = session.connection()
        if connection.dialect.name == "sqlite":
            # SQLite has no pg_sleep(): this connection gets one, which waits with
            # the GIL released, as a database server would, so the same SQL runs on both.
            dbapi_connection = connection.connection.dbapi_connection
            assert dbapi_connection is not None
            dbapi_connection.create_function("pg_sleep", 1, time.sleep)
        session.execute(sa.select(sa.func.pg_sleep(latency)))


def totals(latency: float = 0) -> dict[str, int]:
    """Count each table."""
    pause(latency)
    counts = [
        sa.select(sa.func.count()).select_from(m).scalar_subquery()
        for m in (Author, Book, Review, Order)
    ]
    row = session.execute(sa.select(*counts)).one()
    return dict(zip(["authors", "books", "reviews", "orders"], row, strict=True))


def top_authors(latency: float = 0) -> list[tuple[str, int]]:
    """Return the five authors who sold the most copies."""
    pause(latency)
    sold = sa.func.sum(Order.quantity).label("sold")
    query = (
        sa.select(Author.name, sold)
        .join(Book, Book.author_id == Author.id)
        .join(Order, Order.book_id == Book.id)
        .group_by(Author.id, Author.name)
        .order_by(sold.desc(), Author.name)
        .limit(5)
    )
    return [(name, int(n)) for name, n in session.execute(query)]


def best_rated(latency: float = 0) -> list[tuple[str, float, int]]:
    """Return the five best-rated books with at least 15 reviews."""
    pause(latency)
    avg = sa.func.avg(Review.rating).label("avg")
    query = (
        sa.select(Book.title, avg, sa.func.count().label("n"))
        .join(Review, Review.book_id == Book.id)
        .group_by(Book.id, Book.title)
        .having(sa.func.count() >= 15)
        .order_by(avg.desc(), Book.title)
        .limit(5)
    )
    return [(title, round(float(a), 2), int(n)) for title, a, n in session.execute(query)]


def sales_by_genre(latency: float = 0) -> list[tuple[str, int, float]]:
    """Return copies sold and revenue per genre."""
    pause(latency)
    copies = sa.func.sum(Order.quantity)
    revenue = sa.func.sum(Order.quantity * Book.price_cents)
    query = (
        sa.select(Book.genre, copies, revenue)
        .join(Order, Order.book_id == Book.id)
        .group_by(Book.genre)
        .order_by(revenue.desc())
    )
    return [(g, int(c), int(r) / 100) for g, c, r in session.execute(query)]


def busiest_days(latency: float = 0) -> list[tuple[str, int]]:
    """Return the five days with the most orders."""
    pause(latency)
    n = sa.func.count().label("n")
    query = (
        sa.select(Order.ordered_on, n)
        .group_by(Order.ordered_on)
        .order_by(n.desc(), Order.ordered_on)
        .limit(5)
    )
    return [(str(day), int(count)) for day, count in session.execute(query)]


PANELS: dict[str, Callable[[float], Any]] = {
    "totals": totals,
    "top_authors": top_authors,
    "best_rated": best_rated,
    "sales_by_genre": sales_by_genre,
    "busiest_days": busiest_days,
}
