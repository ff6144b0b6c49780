"""request.parallelq.timeline, the Server-Timing header, task_finished and the DEBUG records."""

from __future__ import annotations

import itertools
import logging
import re
import threading

from django.test import Client, SimpleTestCase, override_settings

import parallelq
from demo_project.bookstore import PANELS
from parallelq import parallel, submit
from parallelq.scoping import Scope
from parallelq.servertiming import FANOUT_METRIC, MAX_TASK_METRICS, metric_name, server_timing
from parallelq.signals import task_finished
from parallelq.timeline import MAX_RECORDS, TaskRecord, Timeline
from tests.base import PostgresTestCase, sleep
from tests.timeline_views import request_label

TIMING = {"MAX_WORKERS": 8, "SERVER_TIMING": True}
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_server_timing(value: str) -> list[tuple[str, dict[str, str]]]:
    """Parse a Server-Timing value by its grammar: quoted-strings may hold , ; and \\-pairs."""
    metrics: list[tuple[str, dict[str, str]]] = []
    i = 0
    while i < len(value):
        name = TOKEN.match(value, i)
        assert name is not None, f"no metric name at {value[i:]!r}"
        i, params = name.end(), {}
        while i < len(value) and value[i] == ";":
            key = TOKEN.match(value, i + 1)
            assert key is not None and value[key.end()] == "=", value[i:]
            i = key.end() + 1
            if value[i] == '"':
                text, i = [], i + 1
                while value[i] != '"':
                    if value[i] == "\\":
                        i += 1
                    text.append(value[i])
                    i += 1
                params[key.group()], i = "".join(text), i + 1
            else:
                token = TOKEN.match(value, i)
                assert token is not None, value[i:]
                params[key.group()], i = token.group(), token.end()
        metrics.append((name.group(), params))
        if i < len(value):
            assert value[i : i + 2] == ", ", value[i:]
            i += 2
    return metrics


class Observed:
    """What a request's tasks told: task_finished calls and DEBUG records on `parallelq`."""

    def __init__(self, test: PostgresTestCase) -> None:
        self.signals: list[dict] = []
        self._lock = threading.Lock()
        task_finished.connect(self.receive)
        test.addCleanup(task_finished.disconnect, self.receive)
        logs = test.assertLogs("parallelq", level="DEBUG")
        self.logs = logs.__enter__()
        test.addCleanup(logs.__exit__, None, None, None)

    def receive(self, sender, **kwargs):
        with self._lock:
            self.signals.append({"sender": sender, "label": request_label.get(), **kwargs})

    def finished_logs(self) -> list[logging.LogRecord]:
        return [r for r in self.logs.records if hasattr(r, "task_name")]


@override_settings(ROOT_URLCONF="tests.timeline_views", PARALLELQ=TIMING)
class AgreementTests(PostgresTestCase):
    def assertAgree(self, path: str, names: list[str], failing: str):
        observed = Observed(self)
        response = self.client.get(path)
        self.assertEqual(response.status_code, 200)
        scope = response.wsgi_request.parallelq
        records = {r.name: r for r in scope.timeline}
        self.assertEqual(sorted(records), sorted(names))
        signals = {s["name"]: s for s in observed.signals}
        logs = {r.task_name: r for r in observed.finished_logs()}
        header = dict(parse_server_timing(response.headers["Server-Timing"]))
        self.assertEqual(sorted(signals), sorted(names))
        self.assertEqual(sorted(logs), sorted(names))
        for name, record in records.items():
            with self.subTest(task=name):
                self.assertIs(signals[name]["sender"], scope)
                self.assertEqual(signals[name]["duration"], record.duration)
                self.assertEqual(signals[name]["start"], record.start)
                self.assertIs(signals[name]["error"], record.error)
                self.assertEqual(logs[name].duration, record.duration)
                self.assertIs(logs[name].error, record.error)
                self.assertEqual(logs[name].levelno, logging.DEBUG)
                self.assertIn(repr(name), logs[name].getMessage())
                metric = header[metric_name(name)]
                self.assertEqual(metric["desc"], name)
                self.assertEqual(float(metric["dur"]), round(record.duration * 1000, 3))
                self.assertGreaterEqual(record.start, 0)
        self.assertIsInstance(records[failing].error, ValueError)
        self.assertEqual(str(records[failing].error), "broken on purpose")
        self.assertIn("raised ValueError", logs[failing].getMessage())
        ok = [r for n, r in records.items() if n != failing]
        self.assertTrue(all(r.error is None for r in ok))
        # They ran at the same time: each started before any of them ended.
        self.assertLess(max(r.start for r in ok), min(r.end for r in ok))
        fanout = header[FANOUT_METRIC]
        self.assertEqual(float(fanout["dur"]), round(scope.stats.wall_seconds * 1000, 3))
        self.assertEqual(fanout["desc"].split(",")[0], f"{len(names)} tasks")
        return records

    def test_named_tasks_agree_everywhere(self):
        records = self.assertAgree("/named/", ["orders", "customers", "broken"], "broken")
        self.assertGreaterEqual(records["orders"].duration, 0.2)

    def test_positional_tasks_agree_everywhere(self):
        names = [f"#{i} positional.<locals>.<lambda>" for i in range(2)] + ["#2 fail"]
        records = self.assertAgree("/positional/", names, "#2 fail")
        self.assertGreaterEqual(records[names[0]].duration, 0.1)

    def test_a_task_error_that_reaches_the_view_still_gets_a_header(self):
        observed = Observed(self)
        response = Client(raise_request_exception=False).get("/raising/")
        self.assertEqual(response.status_code, 500)
        header = dict(parse_server_timing(response.headers["Server-Timing"]))
        (failed,) = [s for s in observed.signals if s["error"] is not None]
        self.assertEqual(failed["name"], "broken")
        self.assertEqual(
            float(header["parallelq-broken"]["dur"]), round(failed["duration"] * 1000, 3)
        )

    def test_receivers_run_in_the_tasks_context_before_parallel_returns(self):
        observed = Observed(self)
        response = self.client.get("/named/?label=request-1")
        scope = response.wsgi_request.parallelq
        self.assertEqual([s["label"] for s in observed.signals], ["request-1"] * 3)
        self.assertEqual(len(scope.timeline), 3)

    def test_a_receiver_that_raises_is_logged_and_the_request_goes_on(self):
        def broken_receiver(**kwargs):
            raise RuntimeError("receiver failed")

        task_finished.connect(broken_receiver)
        self.addCleanup(task_finished.disconnect, broken_receiver)
        with self.assertLogs("django.dispatch", "ERROR") as logs:
            response = self.client.get("/named/")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(len(logs.records), 3)
        self.assertIn("receiver failed", logs.output[0])

    def test_a_name_that_is_no_token_is_escaped_and_the_views_metric_kept(self):
        response = self.client.get("/renamed/")
        name = 'weird "name", é;\\'
        metrics = parse_server_timing(response.headers["Server-Timing"])
        self.assertEqual([m[0] for m in metrics], ["view", FANOUT_METRIC, "parallelq-weird_name_"])
        self.assertEqual(metrics[0][1], {"dur": "1.5"})
        self.assertEqual(metrics[2][1]["desc"], name.replace("é", "\\xe9"))

    def test_a_streaming_response_gets_the_tasks_done_before_it_streams(self):
        response = self.client.get("/streamed/")
        metrics = dict(parse_server_timing(response.headers["Server-Timing"]))
        self.assertEqual(sorted(metrics), ["parallelq", "parallelq-before"])
        self.assertEqual(b"".join(response.streaming_content), b"slept 0.1\nslept 0.1\n")
        scope = response.wsgi_request.parallelq
        self.assertEqual(len(scope.timeline), 3)  # the two submit()s finished while streaming


@override_settings(ROOT_URLCONF="tests.timeline_views")
class ServerTimingOffTests(PostgresTestCase):
    def test_no_header_by_default(self):
        response = self.client.get("/named/")
        self.assertEqual(response.status_code, 200)
        self.assertNotIn("Server-Timing", response.headers)
        self.assertEqual(len(response.wsgi_request.parallelq.timeline), 3)


class ScopeTimelineTests(PostgresTestCase):
    def test_a_scope_block_records_named_positional_submitted_and_nested_tasks(self):
        def outer():
            return parallel(inner=lambda: sleep(0.01))

        with parallelq.scope() as scope:
            parallel(first=lambda: sleep(0.05), second=outer)
            parallel(lambda: sleep(0.01))
            submit(sleep, 0.02).result()
        names = [r.name for r in sorted(scope.timeline, key=lambda r: r.start)]
        self.assertEqual(
            sorted(names),
            sorted(
                [
                    "first",
                    "second",
                    "inner",
                    "#0 ScopeTimelineTests."
                    "test_a_scope_block_records_named_positional_submitted_and_nested_tasks."
                    "<locals>.<lambda>",
                    "sleep",
                ]
            ),
        )
        inner = next(r for r in scope.timeline if r.name == "inner")
        second = next(r for r in scope.timeline if r.name == "second")
        self.assertGreaterEqual(inner.start, second.start)
        self.assertLessEqual(inner.end, second.end)
        self.assertEqual(scope.stats.tasks, 4)  # the nested task counts as part of `second`

    def test_a_task_cancelled_before_it_started_has_no_record(self):
        def fail():
            raise ValueError("first")

        with (
            override_settings(PARALLELQ={"MAX_WORKERS": 1}),
            parallelq.scope() as scope,
            self.assertRaises(ValueError),
        ):
            parallel(fail, lambda: sleep(0.01))
        self.assertEqual(
            [(r.name, type(r.error)) for r in scope.timeline],
            [(f"#0 {fail.__qualname__}", ValueError)],
        )


class TimelineUnitTests(SimpleTestCase):
    def test_records_start_from_the_timeline_opening(self):
        timeline = Timeline()
        record = timeline.add("a", timeline.opened + 0.5, 0.25, None)
        self.assertEqual(record, TaskRecord("a", 0.5, 0.25, None))
        self.assertEqual(record.end, 0.75)
        self.assertEqual(list(timeline), [record])
        self.assertEqual(timeline[0], record)

    def test_threads_may_add_at_once(self):
        timeline = Timeline()

        def add(n):
            for i in range(500):
                timeline.add(f"{n}-{i}", timeline.opened, 0.0, None)

        threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(len({r.name for r in timeline}), 4000)

    def test_past_the_limit_one_metric_counts_the_rest(self):
        scope = Scope()
        self.addCleanup(scope.close)
        for i in range(MAX_TASK_METRICS + 5):
            scope.timeline.add(f"t{i}", scope.timeline.opened + i, 0.001, None)
        metrics = parse_server_timing(server_timing(scope))
        self.assertEqual(len(metrics), MAX_TASK_METRICS + 2)
        self.assertEqual(metrics[-1], ("parallelq-more", {"desc": "5 more tasks not listed"}))


class DemoWaterfallTests(PostgresTestCase):
    def test_the_demo_draws_both_runs_on_one_axis_one_by_one_and_overlapping(self):
        response = self.client.get("/dashboard/?latency_ms=100")
        self.assertEqual(response.status_code, 200)
        serial, overlapping = response.context["serial_bars"], response.context["parallel_bars"]
        self.assertEqual([bar["name"] for bar in serial], list(PANELS))
        self.assertEqual(sorted(bar["name"] for bar in overlapping), sorted(PANELS))
        for before, after in itertools.pairwise(serial):
            self.assertGreaterEqual(after["start_ms"], before["start_ms"] + before["duration_ms"])
        ends = [bar["start_ms"] + bar["duration_ms"] for bar in overlapping]
        self.assertLess(max(bar["start_ms"] for bar in overlapping), min(ends))
        self.assertGreaterEqual(min(bar["duration_ms"] for bar in serial + overlapping), 100)
        # The parallel run's bars are its tasks' timeline records, shifted to start near 0.
        records = {r.name: r for r in response.wsgi_request.parallelq.timeline}
        for bar in overlapping:
            self.assertEqual(bar["duration_ms"], records[bar["name"]].duration * 1000)
            self.assertLess(bar["start_ms"], 50)
        self.assertEqual(response.context["span_ms"], response.context["run"].serial_seconds * 1000)
        self.assertContains(response, '<tr class="parallelq-task">', count=10)


class BoundTests(SimpleTestCase):
    def test_a_timeline_keeps_the_first_records_and_counts_the_rest(self):
        with override_settings(PARALLELQ={"SERVER_TIMING": True}):
            scope = Scope()
        self.addCleanup(scope.close)
        for i in range(MAX_RECORDS + 3):
            record = scope.timeline.add(f"t{i}", scope.timeline.opened, 0.001, None)
        self.assertEqual(
            record.name, f"t{MAX_RECORDS + 2}"
        )  # still made, for the signal and the log
        self.assertEqual(len(scope.timeline), MAX_RECORDS)
        self.assertEqual(scope.timeline[-1].name, f"t{MAX_RECORDS - 1}")
        self.assertEqual(scope.timeline.dropped, 3)
        self.assertIn("3 more dropped", repr(scope.timeline))
        last = parse_server_timing(server_timing(scope))[-1]
        self.assertEqual(
            last[1]["desc"], f"{MAX_RECORDS - MAX_TASK_METRICS + 3} more tasks not listed"
        )
