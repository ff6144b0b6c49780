"""Deprecated: Django's own test runner drops the test database now (docs/testing.md)."""

from __future__ import annotations

import warnings
from typing import Any

from django.test.runner import DiscoverRunner as DjangoDiscoverRunner


class DiscoverRunner(DjangoDiscoverRunner):
    """Django's DiscoverRunner, and nothing more: remove the TEST_RUNNER setting naming it.

    parallelq closes its pooled connections itself when Django drops the test
    database (signals.py), whatever runs the tests.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(
            "parallelq.test.DiscoverRunner is no longer needed and will be removed: Django's "
            "own runner drops the test database now. Remove TEST_RUNNER = "
            "'parallelq.test.DiscoverRunner' from your settings.",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(*args, **kwargs)
