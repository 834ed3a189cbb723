"""Shared fixtures: a real Kafka broker (started once, reused) and isolated pipelines.

Each ``pipeline`` gets its own topic prefix, consumer group, worker port and ClickHouse
directory, so tests never see each other's data, and runs a real ``riskwatch worker`` process.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from pathlib import Path

import orjson
import pytest

from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from riskwatch.tools.broker import Broker
from riskwatch.tools.runner import WaitTimeout, WorkerProcess, consumer_lag, wait_for
from streams.runtime import topics as T

# Workers in tests commit every second (production: every 5 s, and at once after a person's
# action): tests wait for sensor rows in ClickHouse, and the suite stays short. Their consumers commit
# the released offsets every 0.5 s (production: 2.8 s): ``wait_consumed`` waits for those.
os.environ.setdefault("RISKWATCH_COMMIT_INTERVAL_SECONDS", "1")
os.environ.setdefault("RISKWATCH_OFFSET_COMMIT_INTERVAL_SECONDS", "0.5")

_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free listening port for a worker, chosen *below* the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) lies in the ephemeral range, so between this call
    and the worker's own bind any outgoing connection (a Kafka client, say) may take it. Ports
    below the range are only ever taken by listeners.
    """
    rng = random.Random()
    s = Settings()
    reserved = {s.kafka_port, s.kafka_controller_port}
    for _ in range(2000):
        port = rng.randrange(20000, _ephemeral_low())
        if port in _HANDED_OUT or port in reserved:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range; free some listeners and rerun")


@pytest.fixture(scope="session")
def broker() -> Settings:
    s = Settings()
    Broker(s).start()
    return s


_CH_TEMPLATE: list[Path] = []


def seed_clickhouse(settings: Settings) -> None:
    """Give a new embedded ClickHouse directory the product's tables at once: a copy of one migrated in a child
    process once per session. A worker migrates its directory when it starts (``sinks/writer.py``): ~2–4 s of the
    shared cores for a fresh one, nothing for a migrated one (the migrations not yet recorded are still applied).
    A directory that exists already, another database name or a server URL is left alone."""
    url, db = settings.clickhouse_url, settings.clickhouse_database
    if not url.startswith("chdb://") or db != "riskwatch":
        return
    target = Path(url.removeprefix("chdb://"))
    if target.exists():
        return
    if not _CH_TEMPLATE:
        import atexit
        import shutil
        import subprocess
        import sys
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="riskwatch-ch-template-"))
        atexit.register(shutil.rmtree, root, True)
        code = (
            "import sys\nfrom sinks.clickhouse import make_client\nfrom sinks.migrations import migrate\n"
            "migrate(make_client('chdb://' + sys.argv[1]), 'riskwatch')"
        )
        repo = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": repo}
        subprocess.run([sys.executable, "-c", code, str(root / "ch")], check=True, env=env, cwd=repo, timeout=300)
        _CH_TEMPLATE.append(root / "ch")
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(_CH_TEMPLATE[0], target, symlinks=True)  # its symlinks are relative (data/ → store/)


class Pipeline:
    """Topics + one or more worker processes + helpers to produce and observe."""

    def __init__(self, settings: Settings, tmp: Path):
        self.settings = settings
        self.tmp = tmp
        seed_clickhouse(settings)
        self.catalog = load_catalog()
        T.ensure_topics(settings, self.catalog)
        self.workers: list[WorkerProcess] = []
        from kafka import KafkaProducer

        self.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)

    def start_worker(self, **overrides) -> WorkerProcess:
        s = self.settings.model_copy(update=overrides) if overrides else self.settings
        w = WorkerProcess(s, log_path=self.tmp / f"worker-{len(self.workers)}.log").start()
        self.workers.append(w)
        return w

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[0]

    def send(self, topic: str, value: bytes | dict, key: str | bytes | None = None) -> None:
        if isinstance(value, dict):
            key = key if key is not None else value.get("entity_id")
            value = orjson.dumps(value)
        if isinstance(key, str):
            key = key.encode()
        self.producer.send(self.settings.topic(topic), value=value, key=key)

    def flush(self) -> None:
        self.producer.flush(120)  # a busy shared machine can stall the broker for a while

    def wait_consumed(self, timeout: float = 120.0, topics: list[str] | None = None) -> None:
        names = [self.settings.topic(t) for t in (topics or [*T.INPUT_TOPICS, T.ALERTS_ALL, T.DEADLETTER])]
        try:
            wait_for(
                lambda: consumer_lag(self.settings, names) == 0, timeout, f"worker to consume {names}", interval=0.2
            )
        except WaitTimeout:
            for w in self.workers:  # leave every task's stack in the worker logs for the post-mortem
                w.dump_stacks()
            raise

    def read_topic(self, topic: str, timeout: float = 10.0) -> list[tuple[bytes | None, bytes]]:
        """Every message currently in a topic (from the beginning), as (key, value)."""
        from riskwatch.tools.runner import read_all

        return [(r.key, r.value) for r in read_all(self.settings, self.settings.topic(topic))]

    def close(self) -> None:
        # the run is over and its topics and directories are thrown away: a clean shutdown (leaving the group,
        # a last commit, ~3 s) would only be waited for. Tests of a clean stop call ``stop()`` themselves.
        for w in self.workers:
            w.kill9()
        self.producer.close()


def isolated_settings(broker: Settings, tmp: Path, **update) -> Settings:
    """The broker's settings with a run of their own: topic prefix, consumer group, worker port, ClickHouse
    directory and state directory (``update`` overrides any of them, or adds others)."""
    run = uuid.uuid4().hex[:8]
    base = dict(
        topic_prefix=f"t{run}.",
        app_id=f"riskwatch-test-{run}",
        web_port=free_port(),
        clickhouse_url=f"chdb://{tmp / 'clickhouse'}",
        state_dir=tmp / "state",
        partitions=4,
        stall_exit_seconds=45.0,
        commit_stall_exit_seconds=60.0,  # a stuck worker exits (70); the harness restarts it, like compose
    )
    return broker.model_copy(update={**base, **update})


def drop_topics(s: Settings) -> None:
    """Delete a run's ~30 topics × partitions and Faust's own: a broker holding thousands slows down every later
    test."""
    from streams.runtime.topics import delete_topics

    delete_topics(s, [s.topic_prefix, s.app_id + "-"])


@pytest.fixture
def pipeline(broker: Settings, tmp_path: Path):
    s = isolated_settings(broker, tmp_path)
    p = Pipeline(s, tmp_path)
    yield p
    p.close()
    drop_topics(s)


# --- one web stack for the browser modules ------------------------------------------------------------------
# A worker, a workbench and a Chromium take 30–60 s to start on the shared machine. The browser modules whose
# flows use entities, alerts and notices of their own (and assert nothing about the store as a whole) share one
# stack: ``web_stack``. Their tests are run one after another (``pytest_collection_modifyitems``) and the stack
# is stopped after the last of them (``pytest_runtest_teardown``), not at the end of the session, so it does
# not idle beside the rest of the suite. Modules that restart or reconfigure the worker or the app, or count
# rows of the whole store (test_web_office, test_web_outcomes' precision page), keep stacks of their own.


class WebStack:
    """The shared stack: ``(pipeline, worker, web, browser)`` when unpacked, as the modules' ``shared`` was."""

    def __init__(self, broker: Settings, tmp: Path):
        from tests.webtools import chromium, start_web

        # public pages are rendered at most every 2 s (production: 60 s): a page one module read is not
        # waited out by a later one that expects new data on it (caching and its emptying on publication
        # are checked in web/cache.py's doctest and tests/test_public_pages.py)
        self.settings = isolated_settings(broker, tmp, workbench_public_cache_seconds=2.0)
        self.pipeline = Pipeline(self.settings, tmp)
        self.web = start_web(self.settings, tmp)
        self.worker = self.pipeline.start_worker(web_public_url=self.web.url)
        self.browser = chromium(tmp)
        self.closed = False

    def __iter__(self):
        return iter((self.pipeline, self.worker, self.web, self.browser))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.browser.quit()
        finally:
            self.web.stop()
            self.pipeline.close()
            drop_topics(self.settings)


_WEB_STACK: list[WebStack] = []


@pytest.fixture(scope="session")
def web_stack(broker: Settings, tmp_path_factory) -> object:
    stack = WebStack(broker, tmp_path_factory.mktemp("webstack"))
    _WEB_STACK.append(stack)
    yield stack
    stack.close()


def pytest_collection_modifyitems(session, config, items) -> None:
    """Run the tests that use ``web_stack`` one after another, where the first of them was."""
    users = [i for i in items if "web_stack" in getattr(i, "fixturenames", ())]
    if not users:
        return
    first = items.index(users[0])
    rest = [i for i in items if "web_stack" not in getattr(i, "fixturenames", ())]
    items[:] = rest[:first] + users + rest[first:]


def pytest_runtest_teardown(item, nextitem) -> None:
    """Stop the shared web stack as soon as no later test uses it."""
    if not _WEB_STACK or "web_stack" not in getattr(item, "fixturenames", ()):
        return
    if nextitem is None or "web_stack" not in getattr(nextitem, "fixturenames", ()):
        _WEB_STACK[0].close()
