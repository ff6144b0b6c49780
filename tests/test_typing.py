"""parallelq as a user's type checker sees it: mypy --strict on a project outside this checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from django.test import SimpleTestCase

# A user's project: its own module, with its own models, using parallelq's API.
# assert_type() is a mypy error unless the type is exactly the one named.
VIEWS = """\
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from django.http import HttpRequest
from sqlalchemy import orm
from typing_extensions import assert_type

import parallelq
from parallelq import Scope, parallel, request_scope, session


class Base(orm.DeclarativeBase):
    pass


class Book(Base):
    __tablename__ = "book"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    title: orm.Mapped[str]


def titles() -> Sequence[str]:
    return session.scalars(sa.select(Book.title)).all()


def dashboard(request: HttpRequest) -> int:
    assert_type(session(), orm.Session)
    assert_type(session.get(Book, 1), Book | None)
    assert_type(session.scalars(sa.select(Book)).all(), Sequence[Book])
    session.execute(sa.text("SELECT 1")).scalar_one()
    session.add(Book(title="t"))
    session.commit()
    with session.no_autoflush:
        assert_type(session.info, dict[Any, Any])
    panels = parallel(titles, titles)
    named = parallel(consistent=True, using="replica", **{"a": titles})
    assert_type(named, dict[str, Any])
    scope = request_scope(request)
    assert_type(scope, Scope)
    assert_type(parallelq.__version__, str)
    return len(panels) + scope.stats.tasks
"""

# The same project's mistakes, one a line; each must be mypy's error on that line.
MISUSE = """\
from __future__ import annotations

from parallelq import session


def misuse() -> None:
    session.no_such_method()
    session.execute("SELECT 1")
    session.autoflush = "yes"
"""

EXPECTED_ERRORS = [
    (7, '"SessionProxy" has no attribute "no_such_method"', "attr-defined"),
    (8, 'No overload variant of "execute" of "Session" matches argument type', "call-overload"),
    (9, 'Incompatible types in assignment (expression has type "str"', "assignment"),
]

CONFIG = """\
[mypy]
strict = True
"""

ERROR = re.compile(
    r"^(?P<file>[\w.]+):(?P<line>\d+): error: (?P<message>.*)  \[(?P<code>[\w-]+)\]$"
)


class UserProjectTypingTests(SimpleTestCase):
    """One mypy run, outside this checkout, so it finds parallelq as it is installed."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        with tempfile.TemporaryDirectory(prefix="parallelq-typing-") as project:
            Path(project, "views.py").write_text(VIEWS)
            Path(project, "misuse.py").write_text(MISUSE)
            Path(project, "mypy.ini").write_text(CONFIG)
            env = {k: v for k, v in os.environ.items() if k not in {"MYPYPATH", "PYTHONPATH"}}
            cls.mypy = subprocess.run(
                [sys.executable, "-m", "mypy", "--config-file", "mypy.ini"]
                + ["--cache-dir", str(Path(project, ".mypy_cache")), "views.py", "misuse.py"],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
        cls.errors: dict[str, list[tuple[int, str, str]]] = {}
        for line in cls.mypy.stdout.splitlines():
            if match := ERROR.match(line):
                cls.errors.setdefault(match["file"], []).append(
                    (int(match["line"]), match["message"], match["code"])
                )

    def test_parallelq_is_found_with_its_types_from_outside_the_checkout(self):
        self.assertNotIn("import-not-found", self.mypy.stdout, self.explain())
        self.assertNotIn("import-untyped", self.mypy.stdout, self.explain())

    def test_correct_use_passes_with_sessions_own_types(self):
        self.assertEqual(self.errors.get("views.py", []), [], self.explain())

    def test_each_misuse_is_an_error_on_its_line(self):
        found = self.errors.get("misuse.py", [])
        self.assertEqual(len(found), len(EXPECTED_ERRORS), self.explain())
        for (line, message, code), expected in zip(found, EXPECTED_ERRORS, strict=True):
            with self.subTest(line=line):
                self.assertEqual(line, expected[0])
                self.assertIn(expected[1], message)
                self.assertEqual(code, expected[2])

    def explain(self) -> str:
        return (
            f"mypy exited {self.mypy.returncode}:\n{self.mypy.stdout}{self.mypy.stderr}\n"
            "If parallelq is not found, it was installed with setuptools' default editable "
            "mode, an import hook mypy cannot follow: pip install -r requirements.txt "
            "(pip 24 or later) installs it in strict mode."
        )
