"""pytest fixtures for projects tested with pytest-django (the pytest11 entry point 'parallelq').

pytest-django's own database setup drops the test database at the end of the
run with nothing more: parallelq closes its pooled connections when Django
opens the connection that drops it (signals.py). This plugin adds the fixture
that runs parallelq inside a test's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import sqlalchemy as sa


@pytest.fixture
def parallelq_db(db: None) -> Iterator[sa.Connection]:
    """Run parallelq on the test's own connection, in the transaction pytest-django rolls back.

    Tasks see the rows the test wrote, with Django's ORM or SQLAlchemy, and
    everything written is rolled back with the test; tasks run one by one in
    the test's thread. Yields the SQLAlchemy Connection all Sessions join (see
    parallelq.sharing.shared_connection()).
    """
    from parallelq.sharing import shared_connection  # Django is set up by now

    with shared_connection() as connection:
        yield connection
