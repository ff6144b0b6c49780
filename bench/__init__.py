"""Benchmarks and stress runs for parallelq; not part of the package or the test suite."""

from __future__ import annotations
