"""Run and watch worker processes: start, wait until ready, wait until caught up, stop.

Used by ``riskwatch demo``, the benchmark and the tests (real processes, real broker). Every wait
polls a condition with a deadline and says what to check when it expires.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from riskwatch.settings import Settings


class WaitTimeout(RuntimeError):
    pass


def wait_for(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """Poll ``cond`` until it returns a truthy value; raise :class:`WaitTimeout` naming ``what``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001
            last_exc = e
        time.sleep(interval)
    raise WaitTimeout(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see exactly these settings."""
    env = {}
    for name in Settings.model_fields:
        v = getattr(settings, name)
        if v is None:
            continue  # unset: the child's default (None) too
        if isinstance(v, (list, dict)):  # pydantic-settings reads complex values as JSON
            env[f"RISKWATCH_{name.upper()}"] = orjson.dumps(v).decode()
            continue
        env[f"RISKWATCH_{name.upper()}"] = v.get_secret_value() if hasattr(v, "get_secret_value") else str(v)
    return env


class WebPortTaken(RuntimeError):
    """Something other than this configuration's worker answers on the web port (one-line reason)."""


def identify_worker(settings: Settings, timeout: float = 5.0) -> bool:
    """Whether this configuration's worker answers on its web port.

    ``GET /identity`` must return this configuration's :meth:`Settings.worker_identity` (service,
    app id, data location). False when nothing listens; :class:`WebPortTaken` when something else
    answers: another program, or a riskwatch worker of another app id or data location.
    """
    import urllib.error
    import urllib.request

    where = f"{settings.web_host}:{settings.web_port}"
    try:
        with urllib.request.urlopen(f"http://{where}/identity", timeout=timeout) as r:
            raw = r.read(65536)
    except urllib.error.HTTPError as e:
        raise WebPortTaken(
            f"port {where} is answered by a program that is not a riskwatch worker "
            f"(GET /identity: HTTP {e.code} {e.reason})"
        ) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
    try:
        ident = orjson.loads(raw)
        service = ident.get("service")
    except (orjson.JSONDecodeError, AttributeError):
        raise WebPortTaken(
            f"port {where} is answered by a program that is not a riskwatch worker "
            "(GET /identity did not return riskwatch's JSON)"
        ) from None
    mine = settings.worker_identity()
    if service != mine["service"]:
        raise WebPortTaken(
            f"port {where} is answered by a program that is not a riskwatch worker (service {service!r})"
        )
    theirs = {k: ident.get(k) for k in ("app_id", "data")}
    if theirs != {k: mine[k] for k in ("app_id", "data")}:
        raise WebPortTaken(
            f"port {where} is answered by another riskwatch worker (app id {theirs['app_id']}, data "
            f"{theirs['data']}), not this configuration's (app id {mine['app_id']}, data {mine['data']})"
        )
    return True


class QueryFailed(RuntimeError):
    """The worker answered ``/query`` with an error (one-line message)."""


CRASH_ONLY_EXIT = 70  # the worker exits with this code to have a batch redelivered (streams/runtime/app.py)


@dataclass
class WorkerProcess:
    """A ``riskwatch worker`` child process with the given settings.

    Like compose's ``restart: unless-stopped``, a supervisor thread restarts the worker when it
    exits with code 70 (crash-only: a failed or stuck batch; its events are redelivered). Other
    exits, ``stop()`` and ``kill9()`` are left alone. ``restarts`` counts the restarts."""

    settings: Settings
    log_path: Path | None = None
    supervise: bool = True
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    restarts: int = field(default=0, init=False)
    _stopping: bool = field(default=False, init=False)

    def start(self, timeout: float = 120.0) -> WorkerProcess:
        self._stopping = False
        self._spawn()
        wait_for(
            self._ready,
            timeout,
            f"the worker on port {self.settings.web_port} to answer /identity and /query"
            + (f"; see {self.log_path}" if self.log_path else ""),
        )
        if self.supervise:
            import threading

            threading.Thread(target=self._supervisor, args=(self.proc,), daemon=True, name="worker-supervisor").start()
        return self

    def _supervisor(self, proc: subprocess.Popen[bytes]) -> None:
        while True:
            code = proc.wait()
            if self._stopping or proc is not self.proc or code != CRASH_ONLY_EXIT:
                return
            self.restarts += 1
            print(
                f"riskwatch: worker exited with code {code} (crash-only: a batch is redelivered); restarting it"
                + (f" — see {self.log_path}" if self.log_path else ""),
                file=sys.stderr,
            )
            self._spawn()
            proc = self.proc

    def _spawn(self) -> None:
        env = {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        loglevel = os.environ.get("RISKWATCH_WORKER_LOGLEVEL", "warn")  # e.g. info when debugging a test
        with contextlib.ExitStack() as stack:  # the worker writes to its own descriptor of the log
            log = stack.enter_context(open(self.log_path, "ab")) if self.log_path else subprocess.DEVNULL
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "riskwatch.cli.main", "worker", "--loglevel", loglevel],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The worker's process id (once started)."""
        return self._started().pid

    def _started(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError("the worker has not been started")
        return self.proc

    def _ready(self) -> bool:
        proc = self._started()
        if proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path and self.log_path.exists() else ""
            raise SystemExit(f"worker exited with code {proc.returncode} during start-up:\n{tail}")
        return identify_worker(self.settings) and self.query("SELECT 1") is not None

    def query(self, sql: str) -> list[dict] | None:
        """Rows as dicts from the worker's read-only /query endpoint, or None if it does not answer."""
        import urllib.error
        import urllib.request

        from sinks.query_token import auth_headers

        req = urllib.request.Request(
            f"http://{self.settings.web_host}:{self.settings.web_port}/query",
            data=sql.encode(),
            method="POST",
            headers=auth_headers(self.settings),
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                body = orjson.loads(r.read())
        except urllib.error.HTTPError as e:
            from sinks.query import engine_error_line

            body = e.read().decode(errors="replace")
            try:
                msg = orjson.loads(body)["error"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                msg = f"HTTP {e.code} {e.reason}"
            raise QueryFailed(engine_error_line(msg)) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]

    def stop(self, timeout: float = 60.0) -> int | None:
        self._stopping = True
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def dump_stacks(self) -> None:
        """Ask a live worker to log the stack of every thread and asyncio task (mode's SIGUSR1)."""
        log_path = self.log_path
        if self.proc is None or self.proc.poll() is not None or log_path is None:
            return
        size = log_path.stat().st_size if log_path.exists() else 0
        os.kill(self.proc.pid, signal.SIGUSR1)  # mode: threads and tasks (async generators truncated)
        os.kill(self.proc.pid, signal.SIGUSR2)  # riskwatch: each task's await chain to the innermost frame
        with contextlib.suppress(WaitTimeout):
            wait_for(lambda: log_path.stat().st_size > size, 10, "the worker to log its stacks")

    def kill9(self) -> None:
        self._stopping = True
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class OpenClients:
    """Kafka clients kept open between polls of one connection configuration: the lag of a group, and
    topics read from the beginning.

    A new admin client or consumer per poll costs 0.1–1 s (bootstrap, API versions, the metadata of
    every topic: the more topics the broker holds, the longer), a query on open ones ~5 ms; tests poll
    both every fraction of a second. Requests time out after 10 s; any error closes the clients and the
    next call opens new ones (a restarted or stopped broker: no call blocks longer than a new client's
    30 s bootstrap would). Calls from several threads take turns (kafka-python's clients are not
    thread-safe)."""

    REQUEST_TIMEOUT_MS = 10_000

    def __init__(self, kafka_kwargs: dict) -> None:
        import threading

        self.kafka_kwargs = kafka_kwargs
        self.lock = threading.Lock()
        self.admin: Any = None
        self.consumer: Any = None

    def _open(self, consumer: bool = False) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer

        kw = dict(self.kafka_kwargs, client_id="riskwatch-lag", request_timeout_ms=self.REQUEST_TIMEOUT_MS)
        if self.admin is None:
            self.admin = KafkaAdminClient(**kw)
        if consumer and self.consumer is None:
            self.consumer = KafkaConsumer(**kw, enable_auto_commit=False)

    def _partitions(self, topics: list[str]) -> dict[str, list[int]]:
        """The partitions of those ``topics`` that exist: one metadata request for just them (a consumer's
        ``partitions_for_topic`` fetches the metadata of every topic whenever it does not know one)."""
        return {
            t["name"]: [p["partition_index"] for p in t["partitions"]]
            for t in self.admin.describe_topics(topics)
            if t["error_code"] == 0
        }

    def _ends(self, tps: list) -> dict:
        """The end offset of each partition (asked of the admin client: kafka-python 3.0's
        ``KafkaConsumer.end_offsets`` leaves out partitions whose leader its metadata does not know yet)."""
        from kafka.admin import OffsetSpec

        if not tps:
            return {}
        got = self.admin.list_partition_offsets(
            {tp: OffsetSpec.LATEST for tp in tps}, timeout_ms=self.REQUEST_TIMEOUT_MS
        )
        return {tp: o.offset for tp, o in got.items()}

    def lag(self, group: str, topics: list[str]) -> int:
        """Messages of ``topics`` not yet committed by consumer group ``group``."""
        from kafka.structs import TopicPartition

        with self.lock:
            try:
                self._open()
                committed = self.admin.list_group_offsets(group).get(group, {})
                ends = self._ends([TopicPartition(t, p) for t, ps in self._partitions(topics).items() for p in ps])
            except BaseException:
                self.close()
                raise
        lag = 0
        for tp, end in ends.items():
            c = committed.get(tp)
            lag += end - (c.offset if c is not None and c.offset >= 0 else 0)
        return lag

    def read(self, topic: str) -> list:
        """Every record currently in ``topic``, from the beginning of each partition (the consumer is
        assigned this topic's partitions alone; records fetched for earlier ones are dropped)."""
        from kafka.structs import TopicPartition

        with self.lock:
            try:
                self._open(consumer=True)
                c = self.consumer
                tps = [TopicPartition(topic, p) for p in self._partitions([topic]).get(topic, ())]
                if not tps:
                    return []
                c.assign(tps)
                c.seek_to_beginning(*tps)
                ends = self._ends(tps)
                out = []
                while any(c.position(tp) < ends[tp] for tp in tps):
                    for recs in c.poll(timeout_ms=1000, max_records=10000).values():
                        out.extend(recs)
                return out
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        for client in (self.admin, self.consumer):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self.admin = self.consumer = None


_OPEN_CLIENTS: dict[str, OpenClients] = {}


def open_clients(settings: Settings) -> OpenClients:
    """The :class:`OpenClients` of this configuration's broker (made at the first call, closed at exit)."""
    kw = settings.kafka_kwargs()
    key = orjson.dumps(kw, option=orjson.OPT_SORT_KEYS).decode()
    clients = _OPEN_CLIENTS.get(key)
    if clients is None:
        import atexit

        clients = OpenClients(kw)
        if _OPEN_CLIENTS.setdefault(key, clients) is clients:
            atexit.register(clients.close)
        clients = _OPEN_CLIENTS[key]
    return clients


def consumer_lag(settings: Settings, topics: list[str]) -> int | None:
    """Messages not yet committed by the worker's consumer group on ``topics`` (None: no group yet)."""
    return open_clients(settings).lag(settings.app_id, topics)


def group_assignment(settings: Settings) -> dict[str, int]:
    """member id → number of input-topic partitions assigned, when the worker group is Stable (else {})."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**settings.kafka_kwargs(), client_id="riskwatch-group")
    try:
        g = admin.describe_groups([settings.app_id]).get(settings.app_id) or {}
    finally:
        admin.close()
    if g.get("group_state") != "Stable":
        return {}
    out = {}
    for m in g.get("members", []):
        a = m.get("member_assignment") or {}
        parts = a.get("assigned_partitions", []) if isinstance(a, dict) else []
        out[m.get("member_id", "?")] = sum(
            len(p.get("partitions", ()))
            for p in parts
            if p.get("topic", "").startswith(settings.topic_prefix + "events.")
        )
    return out


def read_all(settings: Settings, topic: str) -> list:
    """Every record currently in ``topic`` (full name), from the beginning of each partition."""
    return open_clients(settings).read(topic)
