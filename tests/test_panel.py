"""ParallelQueryPanel, with django-debug-toolbar installed for these tests only."""

from __future__ import annotations

import json
import re

import sqlalchemy as sa
from django.conf import settings
from django.core import checks
from django.test import modify_settings, override_settings
from sqlalchemy import orm

import parallelq
from parallelq import parallel, session, sessions
from parallelq.engine import get_engine
from tests.base import PostgresTestCase

PANEL = "parallelq.panels.ParallelQueryPanel"


# Two steps, as Django applies them: override_settings first, then
# modify_settings, which installs the apps before it sends setting_changed
# (debug_toolbar's receiver for DEBUG_TOOLBAR_PANELS imports its models, and
# its ready() needs STATIC_URL).
@modify_settings(
    INSTALLED_APPS={"append": ["django.contrib.staticfiles", "debug_toolbar"]},
    MIDDLEWARE={"prepend": "debug_toolbar.middleware.DebugToolbarMiddleware"},
    DEBUG_TOOLBAR_PANELS={"append": ["debug_toolbar.panels.timer.TimerPanel", PANEL]},
)
@override_settings(
    DEBUG=True, INTERNAL_IPS=["127.0.0.1"], ROOT_URLCONF="tests.toolbar_urls", STATIC_URL="/static/"
)
class PanelTests(PostgresTestCase):
    @classmethod
    def setUpClass(cls):
        # Installing debug_toolbar registers its system checks for good: take
        # them out again, so that later run_checks() see this project's alone.
        registered = set(checks.registry.registry.registered_checks)
        cls.addClassCleanup(cls._restore_checks, registered)
        super().setUpClass()

    @staticmethod
    def _restore_checks(registered):
        checks.registry.registry.registered_checks = registered

    def get_with_toolbar(self, path):
        from debug_toolbar.toolbar import DebugToolbar

        toolbars = []

        def created(sender, toolbar, **kwargs):
            toolbars.append(toolbar)

        DebugToolbar._created.connect(created)
        self.addCleanup(DebugToolbar._created.disconnect, created)
        response = self.client.get(path)
        self.assertEqual(response.status_code, 200)
        (toolbar,) = toolbars
        self.assertContains(response, 'id="djDebug"')
        return response, toolbar

    def render_panel(self, request_id):
        response = self.client.get(
            "/__debug__/render_panel/", {"request_id": request_id, "panel_id": "ParallelQueryPanel"}
        )
        self.assertEqual(response.status_code, 200)
        return json.loads(response.content)["content"]

    def test_the_panel_draws_each_task_with_its_sql(self):
        response, toolbar = self.get_with_toolbar("/named/")
        stats = toolbar.stats["ParallelQueryPanel"]
        tasks = {bar["name"]: bar for bar in stats["tasks"]}
        self.assertEqual(sorted(tasks), ["broken", "customers", "orders"])
        timeline = {r.name: r for r in response.wsgi_request.parallelq.timeline}
        for name, bar in tasks.items():
            with self.subTest(task=name):
                self.assertEqual(bar["duration_ms"], timeline[name].duration * 1000)
                # The task's own statement, then the check for unsaved writes as its Session ends.
                sql = [statement["sql"] for statement in bar["statements"]]
                self.assertEqual(
                    sql, ["SELECT pg_sleep(%(s)s)", "SELECT txid_current_if_assigned()"]
                )
                for statement in bar["statements"]:
                    self.assertGreaterEqual(statement["start_ms"], bar["start_ms"])
                    end = statement["start_ms"] + statement["duration_ms"]
                    self.assertLessEqual(end, bar["start_ms"] + bar["duration_ms"])
        self.assertEqual(tasks["broken"]["error"], "ValueError('broken on purpose')")
        self.assertEqual(tasks["orders"]["statements"][0]["params"], "{'s': 0.2}")
        (own,) = stats["outside"]
        self.assertEqual(len(own["statements"]), 1)
        self.assertIn("SELECT", own["statements"][0]["sql"])

        content = self.render_panel(toolbar.request_id)
        for name in ("orders", "customers", "broken", "pg_sleep", "the request&#x27;s own Session"):
            self.assertIn(name, content)
        self.assertEqual(len(re.findall('class="parallelq-task', content)), 4)
        self.assertEqual(len(re.findall('class="parallelq-statement"', content)), 3 * 2 + 1)

    def test_its_data_round_trips_through_the_toolbars_store(self):
        from debug_toolbar.store import get_store

        _, toolbar = self.get_with_toolbar("/positional/")
        live = toolbar.stats["ParallelQueryPanel"]
        stored = get_store().panel(toolbar.request_id, "ParallelQueryPanel")
        self.assertEqual(stored, live)
        self.assertEqual(len(stored["tasks"]), 3)
        self.assertEqual(json.loads(json.dumps(live)), live)

    def test_only_connections_of_captured_requests_get_listeners(self):
        from parallelq import panels

        captured = []

        def remember(session, transaction, connection):
            captured.append(connection)

        for factory in (sessions.TaskSession, sessions.RequestSession):
            sa.event.listen(factory, "after_begin", remember)
            self.addCleanup(sa.event.remove, factory, "after_begin", remember)
        self.get_with_toolbar("/named/")
        self.assertEqual(len(captured), 4)  # the request's own Session and three tasks'
        for connection in captured:
            self.assertTrue(
                sa.event.contains(connection, "after_cursor_execute", panels._after_cursor_execute)
            )
        for target in (get_engine(), sa.Engine, sa.Connection):
            self.assertFalse(
                sa.event.contains(target, "after_cursor_execute", panels._after_cursor_execute)
            )
        self.assertFalse(
            sa.event.contains(orm.Session, "after_begin", panels._listen_to_connection)
        )
        # Outside the toolbar's requests, parallelq's connections get none.
        with parallelq.scope():
            parallel(lambda: session.execute(sa.select(1)).all())
            session.execute(sa.select(1)).all()
        self.assertEqual(len(captured), 6)
        for connection in captured[4:]:
            self.assertFalse(
                sa.event.contains(connection, "after_cursor_execute", panels._after_cursor_execute)
            )

    @override_settings(PARALLELQ={**settings.PARALLELQ, "SERVER_TIMING": True})
    def test_the_toolbar_keeps_parallelqs_server_timing(self):
        response, _ = self.get_with_toolbar("/named/")
        header = response.headers["Server-Timing"]
        self.assertIn("TimerPanel_", header)
        self.assertIn("parallelq-orders;dur=", header)
