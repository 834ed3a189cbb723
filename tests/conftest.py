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
# action): tests wait for sensor rows in ClickHouse, and the suite stays short.
os.environ.setdefault("RISKWATCH_COMMIT_INTERVAL_SECONDS", "1")

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


class Pipeline:
    """Topics + one or more worker processes + helpers to produce and observe."""

    def __init__(self, settings: Settings, tmp: Path):
        self.settings = settings
        self.tmp = tmp
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
                lambda: consumer_lag(self.settings, names) == 0, timeout, f"worker to consume {names}", interval=0.5
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
        for w in self.workers:
            w.stop()
        self.producer.close()


@pytest.fixture
def pipeline(broker: Settings, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    s = broker.model_copy(
        update=dict(
            topic_prefix=f"t{run}.",
            app_id=f"riskwatch-test-{run}",
            web_port=free_port(),
            clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}",
            state_dir=tmp_path / "state",
            partitions=4,
            stall_exit_seconds=45.0,
            commit_stall_exit_seconds=60.0,  # a stuck worker exits (70); the harness restarts it, like compose
        )
    )
    p = Pipeline(s, tmp_path)
    yield p
    p.close()
    # its ~30 topics × 4 partitions and Faust's own: a broker holding thousands slows down every later test
    from streams.runtime.topics import delete_topics

    delete_topics(s, [s.topic_prefix, s.app_id + "-"])
