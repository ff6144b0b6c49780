#!/usr/bin/env python
"""Run the parallelq demo (``manage.py demo``, ``runserver``) and its tests (``manage.py test``)."""

import os
import sys


def main() -> None:
    # The tests bring their own settings: a throwaway PostgreSQL cluster instead
    # of the demo's SQLite file.
    default = "tests.settings" if sys.argv[1:2] == ["test"] else "demo_project.settings"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", default)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
