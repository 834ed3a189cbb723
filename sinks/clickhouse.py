"""A clickhouse-connect client from ``settings.clickhouse_url``.

* ``chdb://<dir>`` → ``clickhouse_connect.get_client(interface='chdb', path=<dir>)``: the real
  ClickHouse engine in-process, persisted to ``<dir>`` (relative to the working directory;
  ``chdb:///abs/dir`` for an absolute one). chDB hosts ONE engine path per process and the
  directory must not be opened by two processes at once: the worker owns it and serves
  analysts' reads over HTTP. Several clients (handles) on the same path inside one process are
  fine; the writer uses one for inserts and one for read-only queries.
* ``http(s)://user:pass@host:port[/db]`` → a server client. The database in the URL path is
  ignored (``settings.clickhouse_database`` names it, and migrations create it).

We never use clickhouse-connect's own ``chdb://`` DSN parsing: it reads ``chdb://var/clickhouse``
as location ``var`` + database ``clickhouse``, not as the relative directory ``var/clickhouse``.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

# Since ClickHouse 26.2 ``async_insert`` defaults to 1 (chDB 4.4 / engine 26.9 reports 1 too).
# With async inserts the server acknowledges before the data is in a part (or, with
# wait_for_async_insert=0, before it is even flushed), so a Kafka offset committed after the
# acknowledgement could lose rows on a crash. We already batch client-side (sink_batch_rows /
# sink_batch_seconds), so server-side buffering buys nothing: every insert is synchronous and
# returns only once the part is written. The writer acks Kafka only after that.
INSERT_SETTINGS: dict[str, Any] = {"async_insert": 0}

# Analysts' and the workbench's reads (sinks.query runs them after its gate): ``readonly=1`` makes the
# engine refuse writes, DDL and any SETTINGS in the statement; the limits keep one read from starving
# the worker (rows, bytes, memory, time, threads), and every one throws: a truncated answer would look complete.
# deploy/clickhouse/users.d/riskwatch.xml gives the server's ``analyst`` profile the same values.
READ_SETTINGS: dict[str, Any] = {
    "readonly": 1,
    "max_execution_time": 30,
    "timeout_overflow_mode": "throw",
    "max_result_rows": 500_000,
    "max_result_bytes": 200_000_000,
    "result_overflow_mode": "throw",
    "max_memory_usage": 2_000_000_000,
    "max_threads": 1,  # one core: on the worker's host a read must leave the other cores to the inserts
}


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc}", parts.path, parts.query, parts.fragment))


def check_database_name(database: str) -> str:
    """``database`` if it is a plain identifier (it is formatted into DDL), else ValueError."""
    if not database.replace("_", "").isalnum() or database[0].isdigit():
        raise ValueError(f"clickhouse_database must be a plain identifier, got {database!r}")
    return database


def chdb_path(url: str) -> str:
    """The directory of a ``chdb://`` URL: ``chdb://var/ch`` → ``var/ch``, ``chdb:///tmp/ch`` → ``/tmp/ch``."""
    if not url.startswith("chdb://"):
        raise ValueError(f"not a chdb:// URL: {url!r}")
    path = unquote(url[len("chdb://") :].split("?", 1)[0])
    if not path:
        raise ValueError(f"chdb:// URL without a directory: {url!r}; use e.g. chdb://var/clickhouse")
    return path


_LOCKS: dict[str, Any] = {}


def _lock_directory(path: str) -> None:
    """chDB allows one process per directory: hold an exclusive lock for this process's lifetime
    so a second process fails at once with a clear message instead of corrupting data."""
    import fcntl

    path = os.path.realpath(path)
    if path in _LOCKS:
        return
    f = open(os.path.join(path, ".riskwatch.lock"), "a+")  # noqa: SIM115 - held open: the lock lives as long as the process
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        owner = f.read().strip() or "another process"
        f.close()
        raise RuntimeError(
            f"the embedded ClickHouse directory {path} is in use by {owner} (chDB allows one process per "
            "directory). Query it through that process (`riskwatch query` asks the running worker), stop it, "
            "or point RISKWATCH_CLICKHOUSE_URL at another directory or a ClickHouse server."
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}")
    f.flush()
    _LOCKS[path] = f


def make_client(url: str, *, connect_timeout: float = 5, send_receive_timeout: float = 300, **settings: Any) -> Client:
    """Open a client for ``url`` (see module doc). ``settings`` are session-wide ClickHouse settings.

    Raises clickhouse-connect's ``OperationalError`` if a server is unreachable (the HTTP client
    connects eagerly) and ``ProgrammingError`` if this process already hosts another chDB path.
    """
    if url.startswith("chdb://"):
        path = chdb_path(url)
        os.makedirs(path, exist_ok=True)
        _lock_directory(path)
        return clickhouse_connect.get_client(interface="chdb", path=path, settings=settings or None)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"clickhouse_url must start with chdb://, http:// or https://, got {redact_url(url)!r}")
    return clickhouse_connect.get_client(
        interface=parts.scheme,
        host=parts.hostname or "localhost",
        port=parts.port or (8443 if parts.scheme == "https" else 8123),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else "",
        connect_timeout=connect_timeout,
        send_receive_timeout=send_receive_timeout,
        # Stateless requests: no server session to lock or expire; all state is in the SQL.
        autogenerate_session_id=False,
        settings=settings or None,
    )
