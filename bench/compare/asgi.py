"""The asyncio peer of the HTTP scenario: a bare ASGI app for uvicorn, no framework.

Each request gathers 5 × 10 ms queries, each on an AsyncSession (asyncpg) of its
own, at most MAX_WORKERS at a time, on an Engine with parallelq's pool options.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bench.compare import config

_engine: AsyncEngine | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every HTTP request with the queries' count; build the Engine at startup."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    limit = asyncio.Semaphore(config.MAX_WORKERS)
    results = await asyncio.gather(*(_sleep(limit) for _ in range(config.HTTP_QUERIES)))
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": f"{len(results)} queries\n".encode()})


async def _sleep(limit: asyncio.Semaphore) -> Any:
    assert _engine is not None, "the lifespan startup builds the Engine"
    async with limit, AsyncSession(_engine) as session:
        statement = sa.select(sa.func.pg_sleep(config.HTTP_QUERY_SECONDS))
        return (await session.execute(statement)).scalar()


async def _lifespan(receive: Any, send: Any) -> None:
    global _engine
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _engine = config.async_engine(json.loads(os.environ[config.DATABASE_ENV]), "asyncio")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _engine is not None:
                await _engine.dispose()
            await send({"type": "lifespan.shutdown.complete"})
            return
