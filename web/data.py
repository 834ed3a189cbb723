"""Reads for the workbench: ClickHouse through the same gate as ``riskwatch query``.

* Embedded engine (``chdb://``, the default): the worker owns the directory, so every read goes
  to the worker's ``/query`` endpoint with the worker's query token (:mod:`sinks.query_token`);
  the worker runs it through the gate of :mod:`sinks.query` (the engine's parse tree decides).
  Parameters are bound client-side by clickhouse-connect's own quoting
  (:func:`clickhouse_connect.driver.binding.finalize_query`): values never reach SQL unquoted.
* ClickHouse server (``http(s)://``): a clickhouse-connect client and the same gate,
  :func:`sinks.query.run_read_query`, in a thread.

Either way a failure raises :class:`StoreDown` with a Chinese message the pages show.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from clickhouse_connect.driver.binding import finalize_query

from riskwatch.settings import Settings
from sinks.query_token import auth_headers

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client


class StoreDown(RuntimeError):
    """ClickHouse (or the worker that serves it) does not answer."""


class Reader:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.db = settings.clickhouse_database
        self.embedded = settings.clickhouse_url.startswith("chdb://")
        self._session: aiohttp.ClientSession | None = None
        self._client: Client | None = None  # the embedded store's client (chdb://), opened on first use
        self._cache: dict[tuple, tuple[float, list[dict]]] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._client is not None:
            self._client.close()

    async def rows(self, sql: str, **params: Any) -> list[dict]:
        """Rows as dicts; ``{db}`` in ``sql`` is the riskwatch database, ``%(name)s`` a parameter."""
        sql = finalize_query(sql.replace("{db}", self.db), params or None)
        if self.embedded:
            return await self._worker(sql)
        return await asyncio.to_thread(self._direct, sql)

    async def cached(self, ttl: float, sql: str, **params: Any) -> list[dict]:
        """``rows`` remembered for ``ttl`` seconds (navigation counts, filter choices: every page
        shows them, a few seconds' staleness is fine, a FINAL scan per page view is not)."""
        key = (sql, tuple(sorted(params.items(), key=lambda kv: kv[0])).__repr__())
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        rows = await self.rows(sql, **params)
        if len(self._cache) > 1000:
            self._cache.clear()
        self._cache[key] = (now, rows)
        return rows

    async def one(self, sql: str, **params: Any) -> dict | None:
        r = await self.rows(sql, **params)
        return r[0] if r else None

    async def _worker(self, sql: str) -> list[dict]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        url = f"http://{self.settings.web_host}:{self.settings.web_port}/query"
        try:
            async with self._session.post(url, data=sql.encode(), headers=auth_headers(self.settings)) as r:
                body = orjson.loads(await r.read())
        except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as e:
            raise StoreDown(
                f"数据服务(处理引擎 {url})无响应:{type(e).__name__}。请确认 riskwatch worker 正在运行"
            ) from None
        if "error" in body:
            raise StoreDown(f"查询失败:{body['error']}")
        cols = body["columns"]
        return [dict(zip(cols, row, strict=True)) for row in body["rows"]]

    def _direct(self, sql: str) -> list[dict]:
        from sinks.clickhouse import make_client
        from sinks.query import run_read_query

        try:
            if self._client is None:
                self._client = make_client(self.settings.clickhouse_url)
            cols, rows = run_read_query(self._client, sql)
        except Exception as e:  # noqa: BLE001 — any driver error means the store is unavailable
            self._client = None
            raise StoreDown(f"ClickHouse 无响应:{type(e).__name__}。请稍后重试或联系运维") from None
        return [dict(zip(cols, r, strict=True)) for r in rows]


def ts(v: Any) -> datetime | None:
    """A ClickHouse time as returned by either path (datetime, or text from the worker's JSON)."""
    if v is None or isinstance(v, datetime):
        return v
    s = str(v)
    if not s or s.startswith("1970-01-01"):
        return None
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        return None


def when(v: Any) -> datetime:
    """:func:`ts` of a time every row has (an alert's first_seen): a row without it is an error."""
    t = ts(v)
    if t is None:
        raise ValueError(f"not a time: {v!r}")
    return t
