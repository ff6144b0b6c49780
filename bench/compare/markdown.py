"""Markdown building blocks of the report."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    """Return a markdown table; `align` has one letter per column, l or r (default r after 1)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"
