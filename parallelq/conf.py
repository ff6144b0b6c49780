"""The PARALLELQ setting: defaults, validation and a cached, typed view of it."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,
    "ENGINE_OPTIONS": {},
    "MAX_WORKERS": 8,
    "TIMEOUT": None,
    "STATEMENT_TIMEOUT": None,
    "ENABLED": True,
    "TRANSACTION_POOLING": False,
    "REPLICAS": (),
    "SERVER_TIMING": False,
}

# Overlaid by ENGINE_OPTIONS key by key. Fifteen connections and no overflow: the
# request's own Session and MAX_WORKERS tasks fit with room for a second request,
# and SQLAlchemy closes an overflow connection on check-in, so under load a pool
# with overflow reconnected over and over (up to 6 new connections a second,
# each costing milliseconds of CPU, in the 4-client HTTP benchmark). Instead of
# pool_pre_ping's round trip per checkout, parallelq checks PostgreSQL
# connections itself (liveness.py; docs/design.md, *Liveness*). LIFO lends the
# connection used last, whose server process is warm (docs/profile.md).
ENGINE_DEFAULTS: dict[str, Any] = {
    "pool_size": 15,
    "max_overflow": 0,
    "pool_timeout": 30,
    "pool_pre_ping": False,
    "pool_use_lifo": True,
}


class Problem(NamedTuple):
    """One mistake in PARALLELQ, with the system check id that reports it."""

    id: str
    msg: str
    hint: str


@dataclass(frozen=True)
class Settings:
    """PARALLELQ merged over DEFAULTS, validated."""

    DATABASE_URL: str | None = None
    ENGINE_OPTIONS: dict[str, Any] = field(default_factory=dict)
    MAX_WORKERS: int = 8
    TIMEOUT: float | None = None
    STATEMENT_TIMEOUT: float | None = None
    ENABLED: bool = True
    TRANSACTION_POOLING: bool = False
    REPLICAS: Sequence[str] = ()
    SERVER_TIMING: bool = False

    @property
    def engine_options(self) -> dict[str, Any]:
        """Return ENGINE_DEFAULTS overlaid with ENGINE_OPTIONS.

        An ENGINE_OPTIONS that names a poolclass gets only pool_pre_ping from
        the defaults: the rest are QueuePool's, which other pools refuse.
        """
        defaults = ENGINE_DEFAULTS
        if "poolclass" in self.ENGINE_OPTIONS:
            defaults = {"pool_pre_ping": ENGINE_DEFAULTS["pool_pre_ping"]}
        return {**defaults, **self.ENGINE_OPTIONS}

    @property
    def pool_capacity(self) -> int | None:
        """Return the most connections the pool opens, or None if it sets no bound we know."""
        options = self.engine_options
        # pool_size 0 and max_overflow -1 are QueuePool's "no limit".
        if "poolclass" in options or options["pool_size"] == 0 or options["max_overflow"] < 0:
            return None
        return int(options["pool_size"]) + int(options["max_overflow"])


def validate(user: Any) -> list[Problem]:
    """Return every mistake in a PARALLELQ value; an empty list means it is usable."""
    if not isinstance(user, dict):
        return [
            Problem(
                "parallelq.E001",
                f"PARALLELQ must be a dict, not {type(user).__name__}.",
                "Set PARALLELQ = {'MAX_WORKERS': 8, ...} or remove it.",
            )
        ]
    problems = []
    if unknown := sorted(set(user) - set(DEFAULTS)):
        problems.append(
            Problem(
                "parallelq.E001",
                f"Unknown PARALLELQ key(s): {', '.join(map(str, unknown))}.",
                f"Valid keys: {', '.join(DEFAULTS)}.",
            )
        )
    merged = {**DEFAULTS, **user}
    problems += _check_values(merged)
    return problems


# The longest wait threading accepts (about 292 years on Linux); a longer one
# raises OverflowError deep inside a wait.
MAX_SECONDS = threading.TIMEOUT_MAX
# PostgreSQL's longest statement_timeout: 2147483647 ms, about 24.8 days.
MAX_STATEMENT_SECONDS = 2_147_483.647


def is_seconds(value: Any) -> bool:
    """Return True for a limit in seconds: None (no limit) or a number in (0, MAX_SECONDS]."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 < value <= MAX_SECONDS  # False for NaN and infinity too


_BOOLS = {
    "ENABLED": "False runs tasks one by one in the calling thread.",
    "TRANSACTION_POOLING": "True when the database URL points at a pooler in transaction "
    "pooling mode, such as PgBouncer's pool_mode = transaction.",
    "SERVER_TIMING": "True adds a Server-Timing header with each task's time to every response.",
}


def _check_values(merged: dict[str, Any]) -> list[Problem]:
    problems = []
    workers = merged["MAX_WORKERS"]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        problems.append(
            Problem(
                "parallelq.E002",
                f"PARALLELQ['MAX_WORKERS'] must be an integer of at least 1, not {workers!r}.",
                "Set it to the most tasks one request may run at once, e.g. 8.",
            )
        )
    for key, most in (("TIMEOUT", MAX_SECONDS), ("STATEMENT_TIMEOUT", MAX_STATEMENT_SECONDS)):
        seconds = merged[key]
        if not is_seconds(seconds) or (seconds is not None and seconds > most):
            problems.append(
                Problem(
                    "parallelq.E003",
                    f"PARALLELQ['{key}'] must be a positive, finite number of seconds "
                    f"(at most {int(most)}) or None, not {seconds!r}.",
                    "Use None for no limit.",
                )
            )
    problems += [
        Problem("parallelq.E004", f"PARALLELQ['{key}'] must be True or False, not {value!r}.", hint)
        for key, hint in _BOOLS.items()
        if not isinstance(value := merged[key], bool)
    ]
    problems += _check_engine_options(merged["ENGINE_OPTIONS"])
    replicas = merged["REPLICAS"]
    if not isinstance(replicas, list | tuple) or not all(isinstance(u, str) for u in replicas):
        problems.append(
            Problem(
                "parallelq.E008",
                f"PARALLELQ['REPLICAS'] must be a list of database URLs, not {replicas!r}.",
                "For example ['postgresql://user:password@replica1/dbname']; [] for none.",
            )
        )
    url = merged["DATABASE_URL"]
    if url is not None and not isinstance(url, str):
        problems.append(
            Problem(
                "parallelq.E006",
                f"PARALLELQ['DATABASE_URL'] must be a string, not {type(url).__name__}.",
                "For example 'postgresql+psycopg2://user:password@host/dbname', "
                "or None to derive it from DATABASES['default'].",
            )
        )
    return problems


def _check_engine_options(options: Any) -> list[Problem]:
    if not isinstance(options, dict):
        return [
            Problem(
                "parallelq.E005",
                "PARALLELQ['ENGINE_OPTIONS'] must be a dict of sqlalchemy.create_engine() "
                f"arguments, not {type(options).__name__}.",
                "For example {'pool_size': 10, 'max_overflow': 5}.",
            )
        ]
    # parallelq sizes its worker threads and W002 from these two. QueuePool reads
    # pool_size 0 and max_overflow -1 as "no limit"; below those it misbehaves.
    return [
        Problem(
            "parallelq.E005",
            f"PARALLELQ['ENGINE_OPTIONS']['{key}'] must be a whole number of connections "
            f"of at least {least}, not {options[key]!r}.",
            f"For example {{'pool_size': 10, 'max_overflow': 5}}; {least} means no limit.",
        )
        for key, least in (("pool_size", 0), ("max_overflow", -1))
        if key in options
        and (
            isinstance(options[key], bool)
            or not isinstance(options[key], int)
            or options[key] < least
        )
    ]


@functools.cache
def get_settings() -> Settings:
    """Return the validated PARALLELQ settings.

    Raises:
        ImproperlyConfigured: PARALLELQ has an unknown key or an unusable value.
    """
    user = getattr(django_settings, "PARALLELQ", {})
    if problems := validate(user):
        first = problems[0]
        raise ImproperlyConfigured(f"{first.msg} {first.hint}")
    return Settings(**{**DEFAULTS, **user})


# Drop the cached settings when a test changes PARALLELQ or DATABASES with
# override_settings. The Engine (engine.py) and the worker threads (executor.py)
# are rebuilt when they next find the settings they were made from changed.
@receiver(setting_changed)
def _reset_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in ("PARALLELQ", "DATABASES"):
        get_settings.cache_clear()
