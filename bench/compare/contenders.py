"""The contenders of the in-process scenarios; each times one repetition of a workload.

Every contender times what a request would do: open its Session(s), run the n
statements, end the Session(s). Concurrency is capped at MAX_WORKERS for all.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import psycopg2
import psycopg2.extras
from asgiref.sync import sync_to_async
from django.db import connections
from sqlalchemy import orm
from sqlalchemy.ext.asyncio import AsyncSession

import parallelq
from bench.compare import config
from bench.compare.workloads import Workload


class Contender(Protocol):
    name: str
    description: str

    def run(self, workload: Workload) -> tuple[float, list[Any]]:
        """Run the workload once; return the seconds it took and the results."""
        ...

    def close(self) -> None: ...


class Serial:
    """One Session on its own Engine; the statements run one after another."""

    name = "serial"
    description = "one Session, statements one after another"

    def __init__(self, db: dict[str, Any]) -> None:
        self.engine = config.sync_engine(db, self.name)

    def run(self, workload: Workload) -> tuple[float, list[Any]]:
        started = time.perf_counter()
        with orm.Session(self.engine) as session:
            results = [workload.sa_call(session, i) for i in range(workload.n)]
        return time.perf_counter() - started, results

    def close(self) -> None:
        self.engine.dispose()


class Parallelq:
    """``parallel()`` inside ``parallelq.scope()``: a task and a Session per statement."""

    name = "parallelq"
    description = "parallelq.parallel() in a parallelq.scope(), a Session per task"

    def run(self, workload: Workload) -> tuple[float, list[Any]]:
        calls = [functools.partial(_in_task_session, workload, i) for i in range(workload.n)]
        started = time.perf_counter()
        with parallelq.scope():
            results = parallelq.parallel(*calls)
        return time.perf_counter() - started, results

    def close(self) -> None:
        parallelq.get_engine().dispose()


def _in_task_session(workload: Workload, i: int) -> Any:
    return workload.sa_call(parallelq.session(), i)


class _OnThreads:
    """Run a workload's statements on a ThreadPoolExecutor of MAX_WORKERS threads."""

    def __init__(self, prefix: str) -> None:
        self.executor = ThreadPoolExecutor(config.MAX_WORKERS, thread_name_prefix=prefix)

    def run(self, workload: Workload) -> tuple[float, list[Any]]:
        task = functools.partial(self._task, workload)
        started = time.perf_counter()
        results = list(self.executor.map(task, range(workload.n)))
        return time.perf_counter() - started, results

    def _task(self, workload: Workload, i: int) -> Any:
        raise NotImplementedError


class Threads(_OnThreads):
    """A ThreadPoolExecutor of MAX_WORKERS threads; each task opens and closes a Session."""

    name = "threads"
    description = "ThreadPoolExecutor, a Session per task, same Engine options"

    def __init__(self, db: dict[str, Any]) -> None:
        super().__init__("bench")
        self.engine = config.sync_engine(db, self.name)

    def _task(self, workload: Workload, i: int) -> Any:
        with orm.Session(self.engine) as session:
            return workload.sa_call(session, i)

    def close(self) -> None:
        self.executor.shutdown()
        self.engine.dispose()


class RawThreads(_OnThreads):
    """The floor under any thread fan-out: raw SQL on psycopg2 connections, no SQLAlchemy.

    Not a peer (issue #4's goals name the thread and asyncio ones): it shows what
    the server, the driver and the thread hand-offs cost by themselves, so that
    the rest of a contender's time is what its Python layers add.
    """

    name = "raw-psycopg2"
    description = (
        "not a peer but the floor: the same ThreadPoolExecutor, raw SQL on MAX_WORKERS "
        "psycopg2 connections held open in autocommit, no SQLAlchemy"
    )

    def __init__(self, db: dict[str, Any]) -> None:
        super().__init__("bench-raw")
        self.connections: queue.LifoQueue[Any] = queue.LifoQueue()
        for _ in range(config.MAX_WORKERS):  # one per thread: a task never waits for one
            connection = psycopg2.connect(**config.psycopg2_params(db, self.name))
            connection.autocommit = True
            self.connections.put(connection)

    def _task(self, workload: Workload, i: int) -> Any:
        connection = self.connections.get_nowait()
        try:
            with connection.cursor(cursor_factory=psycopg2.extras.NamedTupleCursor) as cursor:
                return workload.raw_call(cursor, i)
        finally:
            self.connections.put(connection)

    def close(self) -> None:
        self.executor.shutdown()
        while not self.connections.empty():
            self.connections.get_nowait().close()


class _Gather:
    """Run a workload's statements as asyncio tasks, at most MAX_WORKERS at a time."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner

    def run(self, workload: Workload) -> tuple[float, list[Any]]:
        return self.runner.run(self._gather(workload))

    async def _gather(self, workload: Workload) -> tuple[float, list[Any]]:
        limit = asyncio.Semaphore(config.MAX_WORKERS)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(self._limited(limit, workload, i) for i in range(workload.n))
        )
        return time.perf_counter() - started, results

    async def _limited(self, limit: asyncio.Semaphore, workload: Workload, i: int) -> Any:
        async with limit:
            return await self.call(workload, i)

    async def call(self, workload: Workload, i: int) -> Any:
        raise NotImplementedError


class AsyncSessions(_Gather):
    """asyncio.gather of tasks that each open an AsyncSession on asyncpg."""

    name = "asyncio"
    description = "asyncio.gather, an AsyncSession (asyncpg) per task, same pool options"

    def __init__(self, db: dict[str, Any], runner: asyncio.Runner) -> None:
        super().__init__(runner)
        self.engine = config.async_engine(db, self.name)

    async def call(self, workload: Workload, i: int) -> Any:
        async with AsyncSession(self.engine) as session:
            return await workload.async_call(session, i)

    def close(self) -> None:
        self.runner.run(self.engine.dispose())


class DjangoAsync(_Gather):
    """asyncio.gather of Django async ORM calls (aget, afirst) on Django's own connection.

    The connection stays open between repetitions (no request ends to close it).
    """

    name = "django-async"
    description = "asyncio.gather of Django async ORM queries (aget/afirst)"

    async def call(self, workload: Workload, i: int) -> Any:
        return await workload.django_call(i)

    def close(self) -> None:
        # The ORM's queries ran in asgiref's thread-sensitive thread; its connection is there.
        self.runner.run(sync_to_async(connections.close_all)())
