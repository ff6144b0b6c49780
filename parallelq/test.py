"""Test support: a Django test runner that lets the test database be dropped."""

from __future__ import annotations

from typing import Any

from django.test.runner import DiscoverRunner as DjangoDiscoverRunner

from parallelq.engine import dispose_engine


class DiscoverRunner(DjangoDiscoverRunner):
    """Django's runner, closing parallelq's pooled connections before the test databases go.

    PostgreSQL refuses to drop a database that has open connections, and the
    Engine's pool keeps some open between tests. Set
    ``TEST_RUNNER = "parallelq.test.DiscoverRunner"``.
    """

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        dispose_engine()
        super().teardown_databases(old_config, **kwargs)
