"""Tasks see the caller's context variables, language and time zone, and cannot change them."""

from __future__ import annotations

import contextvars
import threading

from django.conf import settings
from django.test import override_settings
from django.utils import timezone, translation

import parallelq
from parallelq import parallel, submit
from tests.base import ParallelqTestCase

tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")

DISABLED = override_settings(PARALLELQ={"ENABLED": False})


def in_worker(fn):
    """Return fn's result and whether it ran on a thread other than the caller's."""
    caller = threading.get_ident()

    def run():
        return fn(), threading.get_ident() != caller

    return run


class InheritedContextTests(ParallelqTestCase):
    def test_task_sees_the_callers_context_var(self):
        token = tenant.set("acme")
        self.addCleanup(tenant.reset, token)
        with parallelq.scope():
            results = parallel(in_worker(tenant.get), in_worker(tenant.get))
            submitted = submit(tenant.get).result(timeout=10)
        self.assertEqual(results, [("acme", True), ("acme", True)])
        self.assertEqual(submitted, "acme")

    def test_task_sees_the_value_at_the_time_it_was_created(self):
        with parallelq.scope():
            token = tenant.set("first")
            self.addCleanup(tenant.reset, token)
            future = submit(tenant.get)
            tenant.set("second")
            self.assertEqual(future.result(timeout=10), "first")

    def test_task_sees_the_callers_language(self):
        with translation.override("fr"), parallelq.scope():
            results = parallel(in_worker(translation.get_language))
            submitted = submit(translation.get_language).result(timeout=10)
        self.assertEqual(results, [("fr", True)])
        self.assertEqual(submitted, "fr")

    def test_task_sees_the_callers_time_zone(self):
        with timezone.override("Asia/Tokyo"), parallelq.scope():
            results = parallel(in_worker(timezone.get_current_timezone_name))
            submitted = submit(timezone.get_current_timezone_name).result(timeout=10)
        self.assertEqual(results, [("Asia/Tokyo", True)])
        self.assertEqual(submitted, "Asia/Tokyo")

    def test_tasks_of_one_scope_see_each_callers_own_language(self):
        with parallelq.scope():
            with translation.override("de"):
                german = submit(translation.get_language)
            with translation.override("ja"):
                japanese = submit(translation.get_language)
            self.assertEqual([german.result(timeout=10), japanese.result(timeout=10)], ["de", "ja"])

    def test_nested_task_sees_the_outer_tasks_context(self):
        def outer():
            tenant.set("outer")
            with translation.override("it"):
                return parallel(tenant.get, translation.get_language)

        with parallelq.scope():
            self.assertEqual(parallel(outer), [["outer", "it"]])

    @DISABLED
    def test_disabled_task_sees_the_callers_context(self):
        token = tenant.set("acme")
        self.addCleanup(tenant.reset, token)
        with translation.override("fr"), timezone.override("Asia/Tokyo"), parallelq.scope():
            results = parallel(
                tenant.get, translation.get_language, timezone.get_current_timezone_name
            )
        self.assertEqual(results, ["acme", "fr", "Asia/Tokyo"])


class IsolatedContextTests(ParallelqTestCase):
    def change_everything(self):
        tenant.set("changed by a task")
        translation.activate("de")
        timezone.activate("America/Lima")
        return tenant.get(), translation.get_language(), timezone.get_current_timezone_name()

    def assertCallerUnchanged(self):
        self.assertEqual(tenant.get(), "caller")
        self.assertEqual(translation.get_language(), "fr")
        self.assertEqual(timezone.get_current_timezone_name(), "Asia/Tokyo")

    def run_in_callers_context(self, run_tasks):
        token = tenant.set("caller")
        self.addCleanup(tenant.reset, token)
        with translation.override("fr"), timezone.override("Asia/Tokyo"), parallelq.scope():
            results = run_tasks()
            self.assertCallerUnchanged()
        return results

    def test_task_changing_context_leaves_the_callers_alone(self):
        results = self.run_in_callers_context(lambda: parallel(self.change_everything))
        self.assertEqual(results, [("changed by a task", "de", "America/Lima")])

    def test_submitted_task_changing_context_leaves_the_callers_alone(self):
        results = self.run_in_callers_context(
            lambda: submit(self.change_everything).result(timeout=10)
        )
        self.assertEqual(results, ("changed by a task", "de", "America/Lima"))

    def test_task_changing_context_leaves_its_siblings_alone(self):
        def later():
            return tenant.get(), translation.get_language()

        with parallelq.scope(), translation.override("fr"):
            token = tenant.set("caller")
            self.addCleanup(tenant.reset, token)
            first = submit(self.change_everything)
            first.result(timeout=10)
            second = submit(later)
            self.assertEqual(second.result(timeout=10), ("caller", "fr"))

    def test_task_deactivating_its_language_and_timezone_leaves_the_callers_alone(self):
        def deactivate():
            translation.deactivate()
            timezone.deactivate()
            return translation.get_language(), timezone.get_current_timezone_name()

        results = self.run_in_callers_context(lambda: parallel(deactivate, deactivate))
        self.assertEqual(results, [(settings.LANGUAGE_CODE, settings.TIME_ZONE)] * 2)

    def test_tasks_after_one_that_changed_its_language_start_from_the_defaults(self):
        def state():
            return translation.get_language(), timezone.get_current_timezone_name()

        defaults = (settings.LANGUAGE_CODE, settings.TIME_ZONE)
        with parallelq.scope():
            self.assertEqual(state(), defaults)
            for _ in range(3):  # every worker thread has run a task that activated others
                parallel(*[self.change_everything] * 16)
                self.assertEqual(parallel(*[state] * 16), [defaults] * 16)
            self.assertEqual(state(), defaults)

    def test_nested_task_changing_context_leaves_the_outer_task_alone(self):
        def outer():
            tenant.set("outer")
            with translation.override("it"):
                parallel(self.change_everything)
                return tenant.get(), translation.get_language()

        results = self.run_in_callers_context(lambda: parallel(outer))
        self.assertEqual(results, [("outer", "it")])

    @DISABLED
    def test_disabled_task_changing_context_leaves_the_callers_alone(self):
        results = self.run_in_callers_context(lambda: parallel(self.change_everything))
        self.assertEqual(results, [("changed by a task", "de", "America/Lima")])

    @DISABLED
    def test_disabled_tasks_after_one_that_changed_context_see_the_callers(self):
        def state():
            return tenant.get(), translation.get_language(), timezone.get_current_timezone_name()

        results = self.run_in_callers_context(
            lambda: parallel(self.change_everything, state, self.change_everything, state)
        )
        changed = ("changed by a task", "de", "America/Lima")
        callers = ("caller", "fr", "Asia/Tokyo")
        self.assertEqual(results, [changed, callers, changed, callers])

    @DISABLED
    def test_disabled_submit_changing_context_leaves_the_callers_alone(self):
        results = self.run_in_callers_context(
            lambda: submit(self.change_everything).result(timeout=0)
        )
        self.assertEqual(results, ("changed by a task", "de", "America/Lima"))
