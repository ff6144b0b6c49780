"""Benchmark parallelq against the alternatives, interleaved, on a throwaway PostgreSQL.

Run from the repository root (not part of the test suite)::

    python -m bench.compare                      # everything, written to docs/benchmarks.md
    python -m bench.compare --quick              # a short run, written to a temp directory
    python -m bench.compare --scenario fanout    # one scenario (fanout, waves, trivial, http)

See ``python -m bench.compare --help`` and docs/benchmarks.md for what is measured.
"""
