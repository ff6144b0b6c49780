"""Every Python block of docs/cookbook.md runs as it stands, against PostgreSQL."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from tests.base import PostgresTestCase

COOKBOOK = Path(__file__).resolve().parent.parent / "docs" / "cookbook.md"


def recipes() -> list[tuple[str, str]]:
    """Return (heading, code) for each Python block of the cookbook."""
    found, heading = [], ""
    for part in re.split(r"^(## .*|```python\n(?:.*\n)*?```)$", COOKBOOK.read_text(), flags=re.M):
        if part.startswith("## "):
            heading = part[3:]
        elif part.startswith("```python"):
            found.append((heading, part.removeprefix("```python\n").removesuffix("```")))
    return found


class CookbookTests(PostgresTestCase):
    def test_the_cookbook_has_its_three_recipes(self):
        self.assertEqual(len(recipes()), 3)

    def test_every_recipe_runs_and_prints_its_results(self):
        for heading, code in recipes():
            with self.subTest(heading):
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    exec(compile(code, f"cookbook: {heading}", "exec"), {"__name__": "cookbook"})
                self.assertTrue(out.getvalue().strip(), "the recipe printed nothing")
