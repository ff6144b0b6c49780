"""Stress parallelq over real HTTP while injecting faults, then check that nothing leaked.

Run from the repository root (not part of the test suite):

    python -m bench.stress [--requests N] [--clients C] [--seconds S] [--markdown]

What it does:

1. Starts a throwaway PostgreSQL cluster with ``tests.pg.database_settings()`` (or uses
   PARALLELQ_TEST_DATABASE_URL), creates a database for the run, configures Django in-process
   with ``ParallelQueryMiddleware`` and seeds the demo bookstore (``db``, ``app``).
2. Serves the URLs of ``app`` with a threaded ``wsgiref`` server on a free loopback port, through
   ``get_wsgi_application()``, so ``request_finished`` fires when the response is closed.
3. Drives it with C client threads (``http.client``) until N requests are sent or S seconds pass,
   mixing the demo dashboard, a committed write, a task that raises (fail-fast, 500), a
   ``parallel(timeout=0.2)`` over ``pg_sleep(5)`` (handled as 504), and a ``pg_sleep(2)`` task
   whose backend a fault thread kills with ``pg_terminate_backend`` (``load``).
4. Waits a bounded time for teardown, then checks: no leaked threads, no connection checked out,
   backends within the pool's capacity, no idle-in-transaction backend, every request's scope
   closed with no Session left, no ``pg_sleep`` still running, and no acknowledged write lost
   (``checks``). It also requires every response to have the status its view should give, every
   500 to carry the exception injected for it (not another), no client error, no ERROR logged by
   parallelq or SQLAlchemy's pool, and at least one terminated backend if ``/long/`` was
   requested (``report``).

It prints the figures (as a markdown table with ``--markdown``) and a last line ``stress: OK`` or
``stress: FAILED (reasons)``; the exit status is non-zero on failure. Every socket has a timeout
and every phase is bounded, so the run stops by itself.

Modules: ``db`` (the run's database), ``app`` (Django settings, views, URLconf, WSGI server and
what the server records), ``load`` (client threads, their budget, the fault thread), ``checks``
(the state left after the run), ``report`` (figures, invariants, verdict), ``__main__``.
"""

from __future__ import annotations
