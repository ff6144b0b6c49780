"""The WSGI application gunicorn serves in the measured run (bench.capacity.measure)."""

from __future__ import annotations

import json
import os

from django.core.wsgi import get_wsgi_application

from bench.capacity.measure import SETTINGS_ENV
from bench.compare.config import DATABASE_ENV, configure_django

_settings = json.loads(os.environ[SETTINGS_ENV])
configure_django(
    json.loads(os.environ[DATABASE_ENV]),
    urlconf="bench.capacity.views",
    parallelq=_settings["parallelq"],
)
application = get_wsgi_application()
