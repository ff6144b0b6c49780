"""The demo's URLs and django-debug-toolbar's (ROOT_URLCONF of settings_toolbar)."""

from __future__ import annotations

from debug_toolbar.toolbar import debug_toolbar_urls

from demo_project.urls import urlpatterns as demo_urls

urlpatterns = [*demo_urls, *debug_toolbar_urls()]
