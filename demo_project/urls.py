from __future__ import annotations

from django.urls import path

from demo_project import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("panels/", views.panels, name="panels"),
]
