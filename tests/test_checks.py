"""System checks: each PARALLELQ mistake is reported by `manage.py check` with its own id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.core.checks import ERROR, WARNING, CheckMessage, Error, Warning, run_checks
from django.test import SimpleTestCase, override_settings

from parallelq.checks import check_middleware, check_settings

ROOT = Path(__file__).resolve().parent.parent
MIDDLEWARE = "parallelq.middleware.ParallelQueryMiddleware"

# Runs the checks in a new process whose default database has the ENGINE given as
# argv[1]: override_settings(DATABASES=...) does not reach django.db.connections,
# which parallelq reads.
CHECKS_WITH_ENGINE = """
import json, sys
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["parallelq"],
    MIDDLEWARE=["parallelq.middleware.ParallelQueryMiddleware"],
    DATABASES={"default": {"ENGINE": sys.argv[1], "NAME": "bookstore"}},
)
django.setup()
from django.core.checks import run_checks
print(json.dumps([[m.level, m.msg, m.hint, m.id] for m in run_checks()]))
"""


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


class SettingsCheckTests(SimpleTestCase):
    def assertChecks(self, *expected: CheckMessage) -> None:
        self.assertEqual(check_settings(), list(expected))

    def test_default_test_settings_have_no_issues(self):
        self.assertEqual(check_settings(), [])
        self.assertEqual(check_middleware(), [])
        self.assertEqual(run_checks(), [])

    @override_settings(PARALLELQ={"MAX_WORKER": 4})
    def test_unknown_key_is_e001(self):
        self.assertChecks(
            Error(
                "Unknown PARALLELQ key(s): MAX_WORKER.",
                hint="Valid keys: DATABASE_URL, ENGINE_OPTIONS, MAX_WORKERS, TIMEOUT, "
                "STATEMENT_TIMEOUT, ENABLED, TRANSACTION_POOLING, REPLICAS, SERVER_TIMING.",
                id="parallelq.E001",
            )
        )

    @override_settings(PARALLELQ=["MAX_WORKERS"])
    def test_parallelq_that_is_not_a_dict_is_e001(self):
        self.assertChecks(
            Error(
                "PARALLELQ must be a dict, not list.",
                hint="Set PARALLELQ = {'MAX_WORKERS': 8, ...} or remove it.",
                id="parallelq.E001",
            )
        )

    @override_settings(PARALLELQ={"MAX_WORKERS": 0})
    def test_max_workers_below_one_is_e002(self):
        self.assertChecks(
            Error(
                "PARALLELQ['MAX_WORKERS'] must be an integer of at least 1, not 0.",
                hint="Set it to the most tasks one request may run at once, e.g. 8.",
                id="parallelq.E002",
            )
        )

    @override_settings(PARALLELQ={"TIMEOUT": -1})
    def test_negative_timeout_is_e003(self):
        self.assertChecks(
            Error(
                "PARALLELQ['TIMEOUT'] must be a positive, finite number of seconds "
                "(at most 9223372036) or None, not -1.",
                hint="Use None for no limit.",
                id="parallelq.E003",
            )
        )

    @override_settings(PARALLELQ={"ENABLED": "yes"})
    def test_enabled_that_is_not_a_bool_is_e004(self):
        self.assertChecks(
            Error(
                "PARALLELQ['ENABLED'] must be True or False, not 'yes'.",
                hint="False runs tasks one by one in the calling thread.",
                id="parallelq.E004",
            )
        )

    @override_settings(PARALLELQ={"TRANSACTION_POOLING": 1})
    def test_transaction_pooling_that_is_not_a_bool_is_e004(self):
        self.assertChecks(
            Error(
                "PARALLELQ['TRANSACTION_POOLING'] must be True or False, not 1.",
                hint="True when the database URL points at a pooler in transaction pooling "
                "mode, such as PgBouncer's pool_mode = transaction.",
                id="parallelq.E004",
            )
        )

    @override_settings(PARALLELQ={"SERVER_TIMING": 1})
    def test_server_timing_that_is_not_a_bool_is_e004(self):
        self.assertChecks(
            Error(
                "PARALLELQ['SERVER_TIMING'] must be True or False, not 1.",
                hint="True adds a Server-Timing header with each task's time to every response.",
                id="parallelq.E004",
            )
        )

    @override_settings(PARALLELQ={"ENGINE_OPTIONS": []})
    def test_engine_options_that_are_not_a_dict_are_e005(self):
        self.assertChecks(
            Error(
                "PARALLELQ['ENGINE_OPTIONS'] must be a dict of sqlalchemy.create_engine() "
                "arguments, not list.",
                hint="For example {'pool_size': 10, 'max_overflow': 5}.",
                id="parallelq.E005",
            )
        )

    @override_settings(PARALLELQ={"DATABASE_URL": 5432})
    def test_database_url_that_is_not_a_string_is_e006(self):
        self.assertChecks(
            Error(
                "PARALLELQ['DATABASE_URL'] must be a string, not int.",
                hint="For example 'postgresql+psycopg2://user:password@host/dbname', "
                "or None to derive it from DATABASES['default'].",
                id="parallelq.E006",
            )
        )

    @override_settings(PARALLELQ={"MAX_WORKERS": 0, "TIMEOUT": -1, "ENABLED": "yes", "BOGUS": 1})
    def test_every_mistake_is_reported_at_once(self):
        ids = [message.id for message in check_settings()]
        self.assertEqual(
            ids, ["parallelq.E001", "parallelq.E002", "parallelq.E003", "parallelq.E004"]
        )

    @override_settings(PARALLELQ={"DATABASE_URL": "not a url"})
    def test_unparseable_database_url_is_e007(self):
        self.assertChecks(
            Error(
                "PARALLELQ['DATABASE_URL'] is not a SQLAlchemy database URL (Could not parse "
                "SQLAlchemy URL from given URL string).",
                hint="Use the form 'postgresql+psycopg2://user:password@host:5432/dbname' "
                "or 'sqlite:///path/to/file.sqlite3'.",
                id="parallelq.E007",
            )
        )

    @override_settings(PARALLELQ={"DATABASE_URL": "nosuchdb://db.example/bookstore"})
    def test_database_url_with_an_unknown_driver_is_e007(self):
        self.assertChecks(
            Error(
                "PARALLELQ['DATABASE_URL'] names the driver 'nosuchdb', which SQLAlchemy "
                "cannot load.",
                hint="Install the driver's package, or use 'postgresql://…' (psycopg2) or "
                "'sqlite:///…'.",
                id="parallelq.E007",
            )
        )

    def test_unsupported_databases_engine_is_e007(self):
        result = run("-c", CHECKS_WITH_ENGINE, "django.db.backends.dummy")
        self.assertEqual(result.returncode, 0, result.stderr)
        kinds = {ERROR: Error, WARNING: Warning}
        messages = [
            kinds[level](msg, hint=hint, id=id)
            for level, msg, hint, id in json.loads(result.stdout)
        ]
        self.assertEqual(
            messages,
            [
                Error(
                    "parallelq cannot derive a SQLAlchemy URL from DATABASES['default'], whose "
                    "ENGINE is 'django.db.backends.dummy': it knows the postgresql and sqlite3 "
                    "backends.",
                    hint="Set PARALLELQ['DATABASE_URL'] to the database's SQLAlchemy URL.",
                    id="parallelq.E007",
                )
            ],
        )

    def test_sqlite_databases_engine_has_no_issues(self):
        result = run("-c", CHECKS_WITH_ENGINE, "django.db.backends.sqlite3")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout), [])

    @override_settings(
        PARALLELQ={"MAX_WORKERS": 8, "ENGINE_OPTIONS": {"pool_size": 2, "max_overflow": 0}}
    )
    def test_pool_smaller_than_max_workers_plus_one_is_w002(self):
        self.assertChecks(
            Warning(
                "PARALLELQ['MAX_WORKERS'] is 8 but the connection pool holds 2 (pool_size 2 + "
                "max_overflow 0): a request's tasks would wait for each other's connections, "
                "and under concurrent requests they would wait up to pool_timeout.",
                hint="Make pool_size + max_overflow in ENGINE_OPTIONS at least 9 (one "
                "connection per task, one for the request), or lower MAX_WORKERS.",
                id="parallelq.W002",
            )
        )

    @override_settings(
        PARALLELQ={"MAX_WORKERS": 8, "ENGINE_OPTIONS": {"pool_size": 5, "max_overflow": 4}}
    )
    def test_pool_of_exactly_max_workers_plus_one_is_enough(self):
        self.assertEqual(check_settings(), [])

    @override_settings(PARALLELQ={"MAX_WORKERS": 20})
    def test_default_pool_is_too_small_for_twenty_workers(self):
        self.assertEqual([m.id for m in check_settings()], ["parallelq.W002"])

    @override_settings(PARALLELQ={"ENGINE_OPTIONS": {"pool_size": 4, "max_overflow": -1}})
    def test_unbounded_overflow_is_no_w002(self):
        self.assertEqual(check_settings(), [])

    @override_settings(PARALLELQ={"ENGINE_OPTIONS": {"pool_size": None, "max_overflow": "5"}})
    def test_pool_sizes_that_are_not_numbers_are_e005(self):
        self.assertChecks(
            Error(
                "PARALLELQ['ENGINE_OPTIONS']['pool_size'] must be a whole number of "
                "connections of at least 0, not None.",
                hint="For example {'pool_size': 10, 'max_overflow': 5}; 0 means no limit.",
                id="parallelq.E005",
            ),
            Error(
                "PARALLELQ['ENGINE_OPTIONS']['max_overflow'] must be a whole number of "
                "connections of at least -1, not '5'.",
                hint="For example {'pool_size': 10, 'max_overflow': 5}; -1 means no limit.",
                id="parallelq.E005",
            ),
        )

    @override_settings(PARALLELQ={"DATABASE_URL": "sqlite://"})
    def test_private_in_memory_sqlite_is_e007(self):
        self.assertChecks(
            Error(
                "parallelq cannot share a private in-memory SQLite database between threads: "
                "each connection would see its own empty database.",
                hint="Use a file database, or a shared-cache URI such as "
                "'sqlite:///file:name?mode=memory&cache=shared&uri=true'.",
                id="parallelq.E007",
            )
        )

    @override_settings(PARALLELQ={"DATABASE_URL": "sqlite:///x.sqlite3", "STATEMENT_TIMEOUT": 5})
    def test_statement_timeout_off_postgresql_is_w003(self):
        self.assertChecks(
            Warning(
                "PARALLELQ['STATEMENT_TIMEOUT'] has no effect on sqlite: only PostgreSQL "
                "enforces it.",
                hint="Use parallel(timeout=...) or PARALLELQ['TIMEOUT'], which cancel "
                "statements on every database.",
                id="parallelq.W003",
            )
        )

    @override_settings(PARALLELQ={"STATEMENT_TIMEOUT": 0})
    def test_statement_timeout_of_zero_is_e003(self):
        self.assertChecks(
            Error(
                "PARALLELQ['STATEMENT_TIMEOUT'] must be a positive, finite number of seconds "
                "(at most 2147483) or None, not 0.",
                hint="Use None for no limit.",
                id="parallelq.E003",
            )
        )

    @override_settings(PARALLELQ={"MAX_WORKER": 4}, MIDDLEWARE=[])
    def test_run_checks_reports_parallelqs_messages(self):
        ids = sorted(message.id for message in run_checks())
        self.assertEqual(ids, ["parallelq.E001", "parallelq.W001"])


class MiddlewareCheckTests(SimpleTestCase):
    @override_settings(MIDDLEWARE=[])
    def test_missing_middleware_is_w001(self):
        self.assertEqual(
            check_middleware(),
            [
                Warning(
                    f"{MIDDLEWARE} is not in MIDDLEWARE, so views have no parallelq scope and "
                    "parallel() raises NoScopeError in them.",
                    hint=f"Add '{MIDDLEWARE}' to MIDDLEWARE, or silence parallelq.W001 if you "
                    "use parallelq only inside `with parallelq.scope():`.",
                    id="parallelq.W001",
                )
            ],
        )

    @override_settings(MIDDLEWARE=[MIDDLEWARE])
    def test_present_middleware_has_no_issues(self):
        self.assertEqual(check_middleware(), [])

    @override_settings(MIDDLEWARE=[], SILENCED_SYSTEM_CHECKS=["parallelq.W001"])
    def test_w001_can_be_silenced(self):
        self.assertEqual([m.id for m in run_checks()], ["parallelq.W001"])
        self.assertEqual([m for m in run_checks() if not m.is_silenced()], [])


class ManagePyCheckTests(SimpleTestCase):
    def test_demo_settings_pass_manage_py_check(self):
        result = run("manage.py", "check", DJANGO_SETTINGS_MODULE="demo_project.settings")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("System check identified no issues", result.stdout)

    def test_demo_settings_with_a_bad_database_url_fail_manage_py_check(self):
        result = run(
            "manage.py",
            "check",
            DJANGO_SETTINGS_MODULE="demo_project.settings",
            DATABASE_URL="not a url",
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn("parallelq.E007", result.stderr)
