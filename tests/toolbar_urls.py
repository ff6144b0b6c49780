"""The timeline views with django-debug-toolbar's URLs (ROOT_URLCONF of tests.test_panel)."""

from __future__ import annotations

from debug_toolbar.toolbar import debug_toolbar_urls

from tests.timeline_views import urlpatterns as timeline_urls

urlpatterns = [*timeline_urls, *debug_toolbar_urls()]
