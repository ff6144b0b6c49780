"""Where a parallelq task's time goes: ``python -m bench.profile``.

Times 50 trivial primary-key lookups per repetition, interleaved, as serial
code, as parallelq tasks run in the caller's thread, as tasks on worker
threads, as plain SQLAlchemy Sessions (one thread, and threads held on one
core), and on a plain ThreadPoolExecutor; counts the CPU time and context
switches of each, and profiles parallelq's own functions. It starts its own
throwaway PostgreSQL (tests/pg.py) and writes docs/profile.md.
"""
