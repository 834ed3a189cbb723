"""``ClickHouseWriter``: batched, retried, never-dropping inserts on ONE dedicated thread.

Every blocking clickhouse-connect call for writes (connect, migrate, insert) runs on a single
``ThreadPoolExecutor(max_workers=1)`` thread, so the asyncio loop of a Faust agent never blocks
and a chDB engine directory is written from one place in the one process that owns it.

Rows handed to :meth:`ClickHouseWriter.submit` / :meth:`write` are buffered per table and flushed
when ``batch_rows`` rows are pending or the oldest pending row is ``batch_seconds`` old. The
future of a submission resolves only once its rows are durably inserted (synchronous insert,
``async_insert=0``), so the caller commits Kafka offsets after it::

    writer = ClickHouseWriter(settings)
    await writer.start()                              # connect + migrate (retried)
    await writer.write("events_sensor", rows)          # returns once inserted
    cols, rows = await writer.aquery("SELECT count() FROM riskwatch.events_sensor FINAL")
    await writer.aclose()

A failed insert is retried forever with exponential back-off (tenacity, capped at
``sink_retry_max_seconds``); every retry is logged with what to do. Rows are never dropped:
only :meth:`close` with a timeout gives up, failing the pending futures with
:class:`WriterClosed` so their Kafka offsets are not committed and Kafka redelivers them. An
insert that succeeded but whose acknowledgement was lost is re-sent; the ReplacingMergeTree keys
make that duplicate vanish under ``FINAL``.

Read-only queries (:meth:`query`, :meth:`aquery`: the worker's ``/query``) run on a thread and a
client of their own, through the gate of :mod:`sinks.query` (one read, ``readonly=1``, limits on
rows, bytes, memory and time), one at a time, at most ``MAX_WAITING_READS`` waiting: a heavy read
never queues an insert behind it, inserts never hold a read up, and reads keep working while
inserts are failing (``python -m riskwatch.tools.bench.query`` measures the insert latency).

Fault injection for drills and tests: with ``settings.fault_clickhouse_down_file`` set, every
insert attempt made while that file exists fails with ``OperationalError`` (before touching
ClickHouse), exactly as if the server were unreachable: the normal retry, back-off, logging and
back-pressure path runs; reads keep working. Remove the file and the next retry stores the rows.
Retries are counted in the Prometheus counter ``riskwatch_clickhouse_retries_total``.
With ``settings.fault_failpoint_dir`` set (off by default), a file ``clickhouse_insert`` there holding
N makes the next N insert attempts raise :class:`InsertFailpoint` inside the engine call's place, as an
engine error would (``riskwatch soak`` uses it); the same retry path stores the rows afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError, ProgrammingError
from prometheus_client import Counter as PCounter
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from sinks import migrations
from sinks.clickhouse import INSERT_SETTINGS, make_client, redact_url
from sinks.query import run_read_query
from sinks.rows import COLUMNS, event_rows

log = logging.getLogger(__name__)

RETRIES = PCounter(
    "riskwatch_clickhouse_retries_total",
    "Failed ClickHouse attempts retried with back-off (rows wait, Kafka offsets are not committed)",
    ["operation"],
)


# One insert carries up to this many rows (a commit's rows of one table go in one insert). An
# insert's fixed cost dominates small ones: 28,000 sensor rows cost 2.9 µs of CPU per row in one
# insert and 13.2 µs per row in inserts of 2,000 (chDB; `python -m riskwatch.tools.bench.inserts`).
INSERT_MAX_ROWS = 200_000

# Reads beyond one running and this many waiting are refused at once (ReadsBusy) instead of queueing.
MAX_WAITING_READS = 8


class ReadsBusy(RuntimeError):
    """Too many reads are running or waiting; try again shortly."""


class WriterClosed(RuntimeError):
    """The writer was closed before these rows could be inserted; they were NOT stored."""


@dataclass(frozen=True)
class RetryInfo:
    """Passed to ``on_retry`` before each back-off sleep."""

    what: str  # e.g. "insert into events_sensor (2000 rows)"
    attempt: int  # attempts made so far
    wait: float  # seconds until the next attempt
    error: BaseException | None  # None if tenacity recorded no outcome
    message: str  # the logged line


@dataclass
class _Batch:
    rows: list = field(default_factory=list)
    futures: list = field(default_factory=list)  # (Future, n_rows)
    since: float = field(default_factory=time.monotonic)
    scheduled: bool = False


class ClickHouseWriter:
    """Batched, retried inserts and read-only queries on one dedicated ClickHouse thread.

    :param settings: riskwatch Settings (default: :func:`riskwatch.settings.load_settings`)
    :param url, database, batch_rows, batch_seconds, retry_max_seconds: override the settings
    :param retry_initial_seconds: first back-off; doubles per attempt up to retry_max_seconds
    :param client_factory: ``() -> clickhouse_connect Client``; default ``make_client(url)``.
        Called on the writer thread, once for the write client and once for the read client.
    :param on_retry: ``(RetryInfo) -> None``, called (on the writer thread) before each back-off
    :param migrate: apply :mod:`sinks.migrations` when the write client connects
    """

    def __init__(
        self,
        settings: Any = None,
        *,
        url: str | None = None,
        database: str | None = None,
        batch_rows: int | None = None,
        batch_seconds: float | None = None,
        retry_max_seconds: float | None = None,
        retry_initial_seconds: float = 0.5,
        client_factory: Callable[[], Any] | None = None,
        on_retry: Callable[[RetryInfo], None] | None = None,
        migrate: bool = True,
    ):
        if settings is None:
            from riskwatch.settings import load_settings

            settings = load_settings()
        self.url = url or settings.clickhouse_url
        self.database = database or settings.clickhouse_database
        self.batch_rows = batch_rows or settings.sink_batch_rows
        self.batch_seconds = batch_seconds or settings.sink_batch_seconds
        self.retry_max_seconds = retry_max_seconds or settings.sink_retry_max_seconds
        self.retry_initial_seconds = min(retry_initial_seconds, self.retry_max_seconds)
        self.insert_settings: dict[str, Any] = dict(INSERT_SETTINGS)
        self._factory = client_factory or (lambda: make_client(self.url))
        self._on_retry = on_retry
        self._migrate = migrate
        self._client: Any = None
        self._read_client: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self._cond = threading.Condition()
        self._pending: dict[str, _Batch] = {}
        self._closed = False  # no new submissions
        self._abort = threading.Event()  # give up retrying (close timeout)
        self._timer: threading.Thread | None = None
        self.rows_written = 0
        self.retries = 0
        self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-read")
        self._read_slots = threading.BoundedSemaphore(1 + MAX_WAITING_READS)
        self._wake = threading.Event()  # the writer is closing: interrupts a back-off
        self.failpoint_dir = getattr(settings, "fault_failpoint_dir", None)
        self.fault_down_file = getattr(settings, "fault_clickhouse_down_file", None)
        if self.fault_down_file is not None:
            log.warning(
                "fault injection enabled: every ClickHouse insert fails while %s exists "
                "(setting fault_clickhouse_down_file; drills and tests only)",
                self.fault_down_file,
            )

    # --- life cycle ------------------------------------------------------------------------------
    def open(self) -> None:
        """Connect and migrate now (retried until it works), instead of on the first insert."""
        self._executor.submit(self._retrying, "connect", self._write_client).result()

    async def start(self) -> None:
        await asyncio.wrap_future(self._executor.submit(self._retrying, "connect", self._write_client))

    def close(self, timeout: float | None = None) -> None:
        """Flush what is pending (retrying), then release the clients and the thread.

        With ``timeout``, pending rows that are not inserted by then are given up: their futures
        fail with :class:`WriterClosed` (not acknowledged, so Kafka redelivers them).
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            tables = list(self._pending)
            for t in tables:
                self._schedule(t)
            futures = [f for b in self._pending.values() for f, _ in b.futures]
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for f in futures:
            try:
                f.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except Exception:
                break
        self._abort.set()
        self._wake.set()
        self._read_executor.shutdown(wait=True, cancel_futures=True)
        self._executor.submit(self._close_clients)
        self._executor.shutdown(wait=True)
        if self._timer is not None:
            self._timer.join(timeout=5)

    async def aclose(self, timeout: float | None = None) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close, timeout)

    def __enter__(self) -> ClickHouseWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writes ----------------------------------------------------------------------------------
    def submit(self, table: str, rows: Sequence[tuple]) -> Future:
        """Queue rows (tuples in ``sinks.rows.COLUMNS[table]`` order); the future resolves to the
        number of rows once they are inserted. Never blocks."""
        if table not in COLUMNS:
            raise ValueError(f"unknown table {table!r}; known: {', '.join(COLUMNS)}")
        fut: Future = Future()
        if not rows:
            fut.set_result(0)
            return fut
        with self._cond:
            if self._closed:
                raise WriterClosed("ClickHouseWriter is closed")
            batch = self._pending.get(table)
            if batch is None:
                batch = self._pending[table] = _Batch()
                self._ensure_timer()
                self._cond.notify_all()
            batch.rows.extend(rows)
            batch.futures.append((fut, len(rows)))
            if len(batch.rows) >= self.batch_rows:
                self._schedule(table)
        return fut

    async def write(self, table: str, rows: Sequence[tuple]) -> int:
        """Queue rows and wait until they are durably inserted (then ack the Kafka offsets)."""
        return await asyncio.wrap_future(self.submit(table, rows))

    async def write_now(self, batches: Mapping[str, Sequence[tuple]]) -> int:
        """Insert already-batched rows per table now (no waiting for the size/time bound) and
        return once all are stored. The stream agents batch with ``take_events``; this is their
        path, so an agent batch costs one insert per table, not a wait of ``batch_seconds``."""
        futures = []
        for table, rows in batches.items():
            futures.append(self.submit(table, rows))
            with self._cond:
                if table in self._pending:
                    self._schedule(table)
        return sum(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))

    def write_sync(self, table: str, rows: Sequence[tuple], timeout: float | None = None) -> int:
        """Insert rows now (flushing that table's batch) and wait; for the CLI and tests."""
        fut = self.submit(table, rows)
        with self._cond:
            if table in self._pending:
                self._schedule(table)
        return fut.result(timeout)

    def submit_events(self, events: Iterable[Any]) -> list[Future]:
        return [self.submit(t, rows) for t, rows in event_rows(events).items()]

    async def write_events(self, events: Iterable[Any]) -> int:
        """Map validated input events to their tables and write them; returns once all are stored."""
        futures = self.submit_events(events)
        return sum(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))

    def flush(self, timeout: float | None = None) -> None:
        """Insert everything pending now and wait for it."""
        with self._cond:
            futures = [f for b in self._pending.values() for f, _ in b.futures]
            for t in list(self._pending):
                self._schedule(t)
        for f in futures:
            f.result(timeout)

    async def aflush(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.flush)

    # --- reads -----------------------------------------------------------------------------------
    def query(self, sql: str, params: dict | None = None, *, limit: int | None = None) -> tuple[list[str], list[tuple]]:
        """Run a read-only query (:func:`sinks.query.run_read_query`) on the read thread; ``(columns, rows)``."""
        return self._submit_read(sql, params, limit).result()

    async def aquery(
        self, sql: str, params: dict | None = None, *, limit: int | None = None
    ) -> tuple[list[str], list[tuple]]:
        return await asyncio.wrap_future(self._submit_read(sql, params, limit))

    def _submit_read(self, sql: str, params: dict | None, limit: int | None) -> Future:
        """Queue a read for the read thread (ReadsBusy at once if too many are waiting)."""
        if not self._read_slots.acquire(blocking=False):
            raise ReadsBusy(f"{1 + MAX_WAITING_READS} reads are already running or waiting; try again in a few seconds")
        fut = self._read_executor.submit(self._query, sql, params, limit)
        fut.add_done_callback(lambda _: self._read_slots.release())
        return fut

    # --- internals (writer thread) -----------------------------------------------------------------
    def _write_client(self) -> Any:
        if self._client is None:
            client = self._factory()
            if self._migrate:
                applied = migrations.migrate(client, self.database)
                if applied:
                    log.info("ClickHouse %s: applied migrations %s", redact_url(self.url), applied)
            self._client = client
        return self._client

    def _query(self, sql: str, params: dict | None, limit: int | None) -> tuple[list[str], list[tuple]]:  # read thread
        if self._read_client is None:
            if self._client is None:  # the schema exists before the first read (connect + migrate, writer thread)
                self._executor.submit(self._write_client).result()
            self._read_client = self._factory()  # own handle: its reads and settings never touch the writes
        return run_read_query(self._read_client, sql, params, limit=limit)

    def _close_clients(self) -> None:
        for c in (self._read_client, self._client):
            if c is not None:
                try:
                    c.close()
                except Exception:  # pragma: no cover - best effort at shutdown
                    log.debug("error closing ClickHouse client", exc_info=True)
        self._client = self._read_client = None

    def _flush(self, table: str) -> None:
        with self._cond:
            batch = self._pending.pop(table, None)
        if batch is None:
            return
        rows, done = batch.rows, 0
        try:
            while done < len(rows):
                chunk = rows[done : done + max(self.batch_rows, INSERT_MAX_ROWS)]
                self._retrying(f"insert into {table} ({len(chunk)} rows)", self._insert, table, chunk)
                done += len(chunk)
        except BaseException as e:
            err = e if isinstance(e, WriterClosed) else WriterClosed(f"rows for {table} not inserted: {e}")
            for f, _ in batch.futures:
                f.set_exception(err)
            return
        self.rows_written += len(rows)
        for f, n in batch.futures:
            f.set_result(n)

    def _insert(self, table: str, rows: list) -> None:
        if self.failpoint_dir is not None:
            take_failpoint(os.path.join(self.failpoint_dir, "clickhouse_insert"), f"insert into {table}")
        f = self.fault_down_file
        if f is not None and os.path.exists(f):
            raise OperationalError(
                f"simulated outage: fault-injection file {f} exists (fault_clickhouse_down_file); "
                "remove it to let inserts through"
            )
        self._write_client().insert(
            table, rows, column_names=COLUMNS[table], database=self.database, settings=self.insert_settings
        )

    def _retrying(self, what: str, fn: Callable, *args: Any) -> Any:
        retrying = Retrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=self.retry_initial_seconds, max=self.retry_max_seconds),
            stop=lambda state: self._abort.is_set(),
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(what, state),
            reraise=True,
        )
        result = retrying(fn, *args)
        attempts = retrying.statistics.get("attempt_number", 1)
        if attempts > 1:
            log.warning("ClickHouse at %s is back: %s succeeded at attempt %d", redact_url(self.url), what, attempts)
        return result

    def _sleep(self, seconds: float) -> None:
        """Back off for ``seconds`` (interrupted when the writer is closed)."""
        deadline = time.monotonic() + seconds
        while True:
            if self._abort.is_set():
                raise WriterClosed("ClickHouseWriter closed while retrying; rows not inserted")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._wake.clear()

    def _log_retry(self, what: str, state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        where = redact_url(self.url)
        detail = str(err).strip().splitlines()[0][:300] if err and str(err).strip() else type(err).__name__
        if isinstance(err, OperationalError):
            msg = (
                f"ClickHouse unreachable at {where}: {what} failed ({detail}); retry {state.attempt_number} in "
                f"{wait:.1f}s — check that the server is up and reachable, and its disk"
            )
        elif isinstance(err, ProgrammingError) and "chdb" in str(err).lower():
            msg = (
                f"chDB engine at {where} cannot be opened ({detail}); retry {state.attempt_number} in {wait:.1f}s — "
                "only one engine directory per process: is another component of this process using a different "
                "chdb:// path?"
            )
        else:
            msg = (
                f"ClickHouse at {where} refused {what} ({type(err).__name__}: {detail}); retry {state.attempt_number} "
                f"in {wait:.1f}s — if it repeats: is the disk full, did migrations run, do sinks/rows.py and the "
                "table agree?"
            )
        self.retries += 1
        RETRIES.labels("connect" if what == "connect" else "insert").inc()
        log.warning(msg)
        if self._on_retry is not None:
            try:
                self._on_retry(RetryInfo(what, state.attempt_number, wait, err, msg))
            except Exception:
                log.exception("on_retry callback failed")

    # --- batching timer ----------------------------------------------------------------------------
    def _schedule(self, table: str) -> None:  # caller holds self._cond
        batch = self._pending.get(table)
        if batch is not None and not batch.scheduled:
            batch.scheduled = True
            self._executor.submit(self._flush, table)

    def _ensure_timer(self) -> None:  # caller holds self._cond
        if self._timer is None:
            self._timer = threading.Thread(target=self._tick, name="clickhouse-batch-timer", daemon=True)
            self._timer.start()

    def _tick(self) -> None:
        """Schedule a flush for every batch whose oldest row is batch_seconds old."""
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                next_due = None
                for table, b in list(self._pending.items()):
                    if b.scheduled:
                        continue
                    due = b.since + self.batch_seconds
                    if due <= now:
                        self._schedule(table)
                    else:
                        next_due = due if next_due is None else min(next_due, due)
                self._cond.wait(None if next_due is None else next_due - now)


class InsertFailpoint(RuntimeError):
    """An insert failed on purpose (failpoint file; drills and ``riskwatch soak`` only)."""


def take_failpoint(path: str, what: str) -> None:
    """If ``path`` holds N > 0, count it down by one and raise :class:`InsertFailpoint`; else nothing.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "clickhouse_insert"
    >>> _ = p.write_text("1")
    >>> take_failpoint(str(p), "insert")
    Traceback (most recent call last):
    ...
    sinks.writer.InsertFailpoint: failpoint ... insert failed on purpose (0 more to fail)
    >>> take_failpoint(str(p), "insert"), p.exists()
    (None, False)
    """
    try:
        with open(path) as fh:
            n = int(fh.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return
    if n <= 1:
        os.unlink(path)
    else:
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(str(n - 1))
        os.replace(tmp, path)
    if n > 0:
        raise InsertFailpoint(f"failpoint {path}: {what} failed on purpose ({max(0, n - 1)} more to fail)")
