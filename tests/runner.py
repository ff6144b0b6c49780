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
        # A class skipped in setUpClass is one entry of `skipped`, and none of its tests ran.
        ran_skipped = [test for test, _ in result.skipped if isinstance(test, unittest.TestCase)]
        passed = result.testsRun - failed - len(ran_skipped) - len(result.expectedFailures)
        skipped = len(result.skipped)
        print(f"{passed} passed, {failed} failed, {skipped} skipped")
        return super().suite_result(suite, result, **kwargs)
