"""The Server-Timing response header: a request's tasks, for the browser's developer tools."""

from __future__ import annotations

import re
from typing import TypeVar

from django.http import HttpResponseBase

from parallelq.conf import get_settings
from parallelq.scoping import Scope
from parallelq.timeline import TaskRecord

R = TypeVar("R", bound=HttpResponseBase)

HEADER = "Server-Timing"
# Proxies refuse responses whose headers outgrow a buffer (nginx's
# proxy_buffer_size: 4 or 8 KiB for all of them); a task's metric takes about 50 bytes.
MAX_TASK_METRICS = 30
FANOUT_METRIC = "parallelq"
TASK_PREFIX = "parallelq-"

# What RFC 9110 allows in a token, which a metric's name must be.
_NOT_TOKEN = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def add_server_timing(scope: Scope, response: R) -> R:
    """Add the Server-Timing metrics of `scope` to `response` if SERVER_TIMING is on.

    A Server-Timing header the response already has is kept, ours after it.
    """
    if get_settings().SERVER_TIMING:
        ours = server_timing(scope)
        theirs = response.headers.get(HEADER)
        response.headers[HEADER] = f"{theirs}, {ours}" if theirs else ours
    return response


def server_timing(scope: Scope) -> str:
    """Return the header's value: the fan-out, then each task that has finished, by start.

    The fan-out metric's `dur` is ``scope.stats.wall_seconds``, the time during
    which at least one task ran; its description counts the tasks and adds up
    their run times (``stats.db_seconds``). Each task's metric is named after
    the task (made a valid token), with its exact name as the description.
    Past MAX_TASK_METRICS tasks, one more metric counts the rest.
    """
    stats = scope.stats
    records = sorted(scope.timeline, key=lambda r: r.start)
    summary = f"{stats.tasks} tasks, {stats.db_seconds * 1000:.3f} ms of task time"
    metrics = [_metric(FANOUT_METRIC, stats.wall_seconds, summary)]
    metrics += [_task_metric(record) for record in records[:MAX_TASK_METRICS]]
    left = max(len(records) - MAX_TASK_METRICS, 0) + scope.timeline.dropped
    if left:
        metrics.append(f'{TASK_PREFIX}more;desc="{left} more tasks not listed"')
    return ", ".join(metrics)


def metric_name(task_name: str) -> str:
    """Return the metric name of a task: TASK_PREFIX and its name, non-token characters as _."""
    return TASK_PREFIX + _NOT_TOKEN.sub("_", task_name)


def _task_metric(record: TaskRecord) -> str:
    return _metric(metric_name(record.name), record.duration, record.name)


def _metric(name: str, seconds: float, desc: str) -> str:
    return f'{name};dur={seconds * 1000:.3f};desc="{_quoted(desc)}"'


def _quoted(text: str) -> str:
    # The inside of a quoted-string: ASCII only (a header is Latin-1 at best),
    # control characters as ?, and \ and " escaped as quoted-pairs.
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return _CONTROL.sub("?", text).replace("\\", "\\\\").replace('"', '\\"')
