"""conf.get_settings(): PARALLELQ merged over the defaults, validated, cached until it changes."""

from __future__ import annotations

import dataclasses
import os
import tempfile

import sqlalchemy as sa
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, override_settings

from parallelq.conf import ENGINE_DEFAULTS, Settings, get_settings
from parallelq.engine import dispose_engine, get_engine

# Never connected to: building an Engine opens no connection.
SQLITE = "sqlite:///" + os.path.join(tempfile.gettempdir(), "parallelq-conf-never-opened.sqlite3")

VALID_KEYS = (
    "Valid keys: DATABASE_URL, ENGINE_OPTIONS, MAX_WORKERS, TIMEOUT, STATEMENT_TIMEOUT, ENABLED, "
    "TRANSACTION_POOLING, REPLICAS, SERVER_TIMING."
)


class ValidSettingsTests(SimpleTestCase):
    @override_settings(PARALLELQ={})
    def test_empty_dict_gives_the_defaults(self):
        self.assertEqual(
            get_settings(),
            Settings(
                DATABASE_URL=None, ENGINE_OPTIONS={}, MAX_WORKERS=8, TIMEOUT=None, ENABLED=True
            ),
        )

    @override_settings(PARALLELQ={"MAX_WORKERS": 3, "TIMEOUT": 2.5, "ENABLED": False})
    def test_given_keys_override_the_defaults(self):
        conf = get_settings()
        self.assertEqual((conf.MAX_WORKERS, conf.TIMEOUT, conf.ENABLED), (3, 2.5, False))
        self.assertIsNone(conf.DATABASE_URL)

    @override_settings(PARALLELQ={"DATABASE_URL": "sqlite:////tmp/x.sqlite3"})
    def test_database_url_is_kept_as_given(self):
        self.assertEqual(get_settings().DATABASE_URL, "sqlite:////tmp/x.sqlite3")

    def test_timeout_may_be_none_an_int_or_a_float(self):
        for timeout in [None, 1, 0.25]:
            with self.subTest(timeout=timeout), override_settings(PARALLELQ={"TIMEOUT": timeout}):
                self.assertEqual(get_settings().TIMEOUT, timeout)

    @override_settings(PARALLELQ={"MAX_WORKERS": 1})
    def test_one_worker_is_allowed(self):
        self.assertEqual(get_settings().MAX_WORKERS, 1)

    @override_settings(PARALLELQ={"ENGINE_OPTIONS": {"pool_size": 20, "echo": True}})
    def test_engine_options_overlay_the_engine_defaults_key_by_key(self):
        self.assertEqual(
            get_settings().engine_options,
            {
                "pool_size": 20,
                "max_overflow": 0,
                "pool_timeout": 30,
                "pool_pre_ping": False,
                "pool_use_lifo": True,
                "echo": True,
            },
        )

    @override_settings(
        PARALLELQ={"ENGINE_OPTIONS": {"poolclass": sa.pool.NullPool}, "DATABASE_URL": SQLITE}
    )
    def test_another_poolclass_gets_none_of_queuepools_defaults_and_builds(self):
        self.assertEqual(
            get_settings().engine_options, {"poolclass": sa.pool.NullPool, "pool_pre_ping": False}
        )
        self.addCleanup(dispose_engine)
        self.assertIsInstance(get_engine().pool, sa.pool.NullPool)

    @override_settings(PARALLELQ={})
    def test_engine_options_default_to_the_engine_defaults(self):
        self.assertEqual(get_settings().engine_options, ENGINE_DEFAULTS)

    @override_settings(PARALLELQ={})
    def test_changing_returned_engine_options_changes_nothing(self):
        get_settings().engine_options.pop("pool_size")
        self.assertEqual(get_settings().engine_options["pool_size"], 15)
        self.assertEqual(ENGINE_DEFAULTS["pool_size"], 15)

    @override_settings(PARALLELQ={})
    def test_settings_are_frozen(self):
        with self.assertRaises(dataclasses.FrozenInstanceError):
            get_settings().MAX_WORKERS = 2  # type: ignore[misc]


class CacheTests(SimpleTestCase):
    def test_settings_are_cached(self):
        self.assertIs(get_settings(), get_settings())

    def test_cache_is_cleared_when_parallelq_changes(self):
        before = get_settings()
        with override_settings(PARALLELQ={"MAX_WORKERS": 2}):
            self.assertEqual(get_settings().MAX_WORKERS, 2)
        self.assertEqual(get_settings(), before)
        self.assertEqual(get_settings().MAX_WORKERS, 8)

    def test_nested_overrides_each_take_effect(self):
        with override_settings(PARALLELQ={"MAX_WORKERS": 2}):
            with override_settings(PARALLELQ={"MAX_WORKERS": 3}):
                self.assertEqual(get_settings().MAX_WORKERS, 3)
            self.assertEqual(get_settings().MAX_WORKERS, 2)


class InvalidSettingsTests(SimpleTestCase):
    def assertImproperlyConfigured(self, parallelq, message):
        with (
            override_settings(PARALLELQ=parallelq),
            self.assertRaisesMessage(ImproperlyConfigured, message),
        ):
            get_settings()

    def test_unknown_key_is_an_error_naming_it_and_the_valid_keys(self):
        self.assertImproperlyConfigured(
            {"MAX_WORKER": 4}, f"Unknown PARALLELQ key(s): MAX_WORKER. {VALID_KEYS}"
        )

    def test_every_unknown_key_is_named(self):
        self.assertImproperlyConfigured(
            {"TIMEOUT": 1, "ZEBRA": 1, "APPLE": 2}, "Unknown PARALLELQ key(s): APPLE, ZEBRA."
        )

    def test_lowercase_key_is_unknown(self):
        self.assertImproperlyConfigured({"max_workers": 4}, "max_workers")

    def test_parallelq_that_is_not_a_dict_is_an_error(self):
        self.assertImproperlyConfigured([("MAX_WORKERS", 4)], "PARALLELQ must be a dict, not list.")

    def test_max_workers_below_one_is_an_error(self):
        for workers in [0, -1]:
            with self.subTest(workers=workers):
                self.assertImproperlyConfigured(
                    {"MAX_WORKERS": workers},
                    f"PARALLELQ['MAX_WORKERS'] must be an integer of at least 1, not {workers}.",
                )

    def test_max_workers_that_is_not_an_int_is_an_error(self):
        for workers in [2.0, "8", True, None]:
            with self.subTest(workers=workers):
                self.assertImproperlyConfigured(
                    {"MAX_WORKERS": workers}, "PARALLELQ['MAX_WORKERS'] must be an integer"
                )

    def test_negative_or_zero_timeout_is_an_error(self):
        for timeout in [-1, 0, 0.0]:
            with self.subTest(timeout=timeout):
                self.assertImproperlyConfigured(
                    {"TIMEOUT": timeout},
                    "PARALLELQ['TIMEOUT'] must be a positive, finite number of seconds "
                    f"(at most 9223372036) or None, not {timeout!r}. Use None for no limit.",
                )

    def test_timeout_that_is_not_a_number_is_an_error(self):
        for timeout in ["5", True]:
            with self.subTest(timeout=timeout):
                self.assertImproperlyConfigured({"TIMEOUT": timeout}, "PARALLELQ['TIMEOUT']")

    def test_enabled_that_is_not_a_bool_is_an_error(self):
        for enabled in ["yes", 1, None]:
            with self.subTest(enabled=enabled):
                self.assertImproperlyConfigured(
                    {"ENABLED": enabled},
                    f"PARALLELQ['ENABLED'] must be True or False, not {enabled!r}.",
                )

    def test_transaction_pooling_that_is_not_a_bool_is_an_error(self):
        self.assertImproperlyConfigured(
            {"TRANSACTION_POOLING": "transaction"},
            "PARALLELQ['TRANSACTION_POOLING'] must be True or False, not 'transaction'.",
        )

    def test_engine_options_that_are_not_a_dict_are_an_error(self):
        for options in [[], None, "pool_size=5"]:
            with self.subTest(options=options):
                self.assertImproperlyConfigured(
                    {"ENGINE_OPTIONS": options},
                    "PARALLELQ['ENGINE_OPTIONS'] must be a dict of sqlalchemy.create_engine() "
                    f"arguments, not {type(options).__name__}.",
                )

    def test_database_url_that_is_not_a_string_is_an_error(self):
        self.assertImproperlyConfigured(
            {"DATABASE_URL": 5432}, "PARALLELQ['DATABASE_URL'] must be a string, not int."
        )

    def test_an_error_is_raised_again_until_the_setting_is_fixed(self):
        with override_settings(PARALLELQ={"MAX_WORKERS": 0}):
            for _ in range(2):
                with self.assertRaises(ImproperlyConfigured):
                    get_settings()
        self.assertEqual(get_settings().MAX_WORKERS, 8)
