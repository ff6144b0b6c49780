"""Capacity model: connection demand and request latency of parallelq for 1 to 100 app servers.

``python -m bench.capacity --help``; the model is described in docs/scaling.md.
"""
