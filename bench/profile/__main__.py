"""Command line of the profile: ``python -m bench.profile --help``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.profile import run

RECORD = Path("docs/profile.md")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description="Show where a parallelq task's time goes, on a throwaway PostgreSQL.",
    )
    parser.add_argument("--reps", type=int, default=30, help="timed repetitions (30)")
    parser.add_argument("--output", type=Path, default=RECORD, help=f"markdown file ({RECORD})")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    text = run.profile(args.reps)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
