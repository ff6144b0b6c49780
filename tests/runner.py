"""The tests' runner: Django's, plus a plain 'N passed, N failed' closing line for CI."""

from __future__ import annotations

import unittest
from typing import Any

from django.test.runner import DiscoverRunner


class Runner(DiscoverRunner):
    def suite_result(self, suite: Any, result: unittest.TestResult, **kwargs: Any) -> int:
        # A test whose subtests fail is one failed test, however many of them fail.
        broken = [test for test, _ in result.failures + result.errors]
        ids = {getattr(test, "test_case", test).id() for test in broken}
        failed = len(ids) + len(result.unexpectedSuccesses)
        skipped = len(result.skipped)
        passed = result.testsRun - failed - skipped - len(result.expectedFailures)
        print(f"{passed} passed, {failed} failed, {skipped} skipped")
        return super().suite_result(suite, result, **kwargs)
