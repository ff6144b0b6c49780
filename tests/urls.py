from __future__ import annotations

from django.db import transaction
from django.urls import include, path

from tests import views

urlpatterns = [
    path("backends/", views.backends),
    path("notes/", views.notes),
    path("atomic-notes/", transaction.atomic(views.notes)),  # as ATOMIC_REQUESTS does
    path("write/", views.write),
    path("stream/", views.stream),
    path("load/", views.load),
    path("stats/", views.stats),
    path("dashboard/", include("demo_project.urls")),
    path("sleeps/", views.sleeps),
    path("cheap/", views.cheap),
    path("async-sleeps/", views.async_sleeps),
    path("async-parallel/", views.async_parallel),
    path("ping/", views.ping),
    path("pool/", views.pool),
]
