"""Django app configuration for parallelq."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks, signals
from django.db.backends.signals import connection_created


class ParallelqConfig(AppConfig):
    name = "parallelq"
    verbose_name = "parallelq"

    def ready(self) -> None:
        from parallelq.checks import check_middleware, check_settings
        from parallelq.signals import close_pool_for_database_admin, close_request_sessions

        checks.register(check_settings)
        checks.register(check_middleware)
        signals.request_finished.connect(
            close_request_sessions, dispatch_uid="parallelq.close_request_sessions"
        )
        connection_created.connect(
            close_pool_for_database_admin, dispatch_uid="parallelq.close_pool_for_database_admin"
        )
