"""The WSGI application gunicorn serves: Django configured from BENCH_COMPARE_DATABASE."""

from __future__ import annotations

import json
import os

from django.core.wsgi import get_wsgi_application

from bench.compare.config import DATABASE_ENV, configure_django

configure_django(json.loads(os.environ[DATABASE_ENV]), urlconf="bench.compare.httpviews")
application = get_wsgi_application()
