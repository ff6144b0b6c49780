"""The demo with django-debug-toolbar and parallelq's panel.

pip install -r requirements-dev.txt (or "parallelq[debug-toolbar]"), then
DJANGO_SETTINGS_MODULE=demo_project.settings_toolbar python manage.py runserver
and open http://127.0.0.1:8000/?latency_ms=100: the toolbar's "parallelq" panel.
"""

from __future__ import annotations

from demo_project.settings import *  # noqa: F403
from demo_project.settings import INSTALLED_APPS, MIDDLEWARE

DEBUG = True
INTERNAL_IPS = ["127.0.0.1"]  # the toolbar shows for requests from here only
INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles", "debug_toolbar"]
# The toolbar first, as its docs ask: it then sees the whole response.
MIDDLEWARE = ["debug_toolbar.middleware.DebugToolbarMiddleware", *MIDDLEWARE]
ROOT_URLCONF = "demo_project.urls_toolbar"
STATIC_URL = "/static/"
DEBUG_TOOLBAR_PANELS = [
    "debug_toolbar.panels.history.HistoryPanel",
    "debug_toolbar.panels.timer.TimerPanel",
    "debug_toolbar.panels.headers.HeadersPanel",
    "debug_toolbar.panels.request.RequestPanel",
    "debug_toolbar.panels.sql.SQLPanel",
    "parallelq.panels.ParallelQueryPanel",
    "debug_toolbar.panels.templates.TemplatesPanel",
]
