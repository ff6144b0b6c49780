from __future__ import annotations

import os

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self) -> None:
        if os.environ.get("STOCK_CONTROL"):
            # The suite's control run: parallelq as it was before it closed its
            # pool when Django drops the test database.
            connection_created.disconnect(dispatch_uid="parallelq.close_pool_for_database_admin")
