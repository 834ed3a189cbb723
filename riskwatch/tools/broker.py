"""A real single-node Apache Kafka 4.x broker (KRaft) on loopback, without Docker.

``riskwatch kafka start|stop|status`` (also used by ``make demo``, ``make test`` and ``.ci/run``):

* fetch: ``mvn dependency:copy-dependencies`` on ``kafka/pom.xml`` into a cache outside the
  work tree (``settings.kafka_home``, default ``~/.cache/riskwatch/kafka/<version>/libs``);
  done once, reused afterwards.
* start: format KRaft storage (first time), launch ``java kafka.Kafka`` detached, wait until the
  port accepts connections and the broker answers a metadata request. Idempotent: a running
  broker is reused; a stale pid file (process gone) is reported and cleaned.
* stop: SIGTERM, wait for a clean shutdown, SIGKILL after a timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from riskwatch.settings import Settings
from riskwatch.tools.pidfile import live_pid

REPO = Path(__file__).resolve().parents[2]
POM = REPO / "kafka" / "pom.xml"


class BrokerError(RuntimeError):
    pass


def kafka_version() -> str:
    m = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    assert m, "kafka/pom.xml lacks <kafka.version>"
    return m.group(1)


@dataclass
class Broker:
    settings: Settings

    @property
    def libs(self) -> Path:
        return self.settings.kafka_home.expanduser() / kafka_version() / "libs"

    @property
    def data_dir(self) -> Path:
        return self.settings.kafka_data_dir.resolve()

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    # -- fetch ----------------------------------------------------------------------------------
    def fetch(self, log=print) -> Path:
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        if not shutil.which("mvn"):
            raise BrokerError(
                "Maven (mvn) is not on PATH: install Maven 3.8+ and Java 17+ (`sudo deploy/prereqs.sh install`; "
                "list: deploy/debian-packages.txt)"
            )
        self.libs.mkdir(parents=True, exist_ok=True)
        log(f"fetching Apache Kafka {kafka_version()} broker jars from Maven Central into {self.libs} (once) ...")
        cmd = [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs}",
            "-DincludeScope=runtime",
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise BrokerError(
                f"mvn failed ({r.returncode}); check network access to Maven "
                f"Central.\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
            )
        marker.write_text(kafka_version())
        log(f"fetched {len(list(self.libs.glob('*.jar')))} jars")
        return self.libs

    # -- status ---------------------------------------------------------------------------------
    def pid(self) -> int | None:
        return live_pid(self.pid_file)

    def port_open(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.settings.kafka_port)) == 0

    def responsive(self, timeout: float = 5.0) -> bool:
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=f"127.0.0.1:{self.settings.kafka_port}",
                request_timeout_ms=int(timeout * 1000),
                client_id="riskwatch-status",
            )
            admin.list_topics()
            admin.close()
            return True
        except Exception:
            return False

    def status(self) -> str:
        pid = self.pid()
        if pid and self.port_open():
            return f"running (pid {pid}) on 127.0.0.1:{self.settings.kafka_port}, data in {self.data_dir}"
        if pid:
            return f"starting or unhealthy (pid {pid}, port {self.settings.kafka_port} closed); see {self.log_file}"
        if self.pid_file.exists():
            return f"stale: pid file {self.pid_file} names a process that is gone; `riskwatch kafka start` cleans it"
        if self.port_open():
            return (
                f"port {self.settings.kafka_port} is open but not by our broker (another Kafka?); set "
                "RISKWATCH_KAFKA_PORT"
            )
        return "stopped"

    # -- start/stop -----------------------------------------------------------------------------
    def _properties(self) -> Path:
        s, d = self.settings, self.data_dir
        p = d / "server.properties"
        p.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={d / 'logs'}",
                    # Topics are created by riskwatch at start-up with explicit partitions; a typo must
                    # not silently create a 1-partition topic.
                    "auto.create.topics.enable=false",
                    "num.partitions=4",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "message.max.bytes=1048588",
                    "",
                ]
            )
        )
        return p

    def _java(self, *args: str, log4j: bool = True) -> list[str]:
        java = shutil.which("java")
        if not java:
            raise BrokerError(
                "java is not on PATH: install Java 17+ (`sudo deploy/prereqs.sh install`; list: "
                "deploy/debian-packages.txt)"
            )
        opts = [
            f"-Dlog4j.configuration=file:{REPO / 'kafka' / 'log4j.properties'}",
            f"-Dlog4j2.configurationFile={REPO / 'kafka' / 'log4j2.properties'}",
        ]
        return [java, "-Xms256m", "-Xmx1g", *opts, "-cp", f"{self.libs}/*", *args]

    def start(self, timeout: float = 90.0, log=print) -> str:
        pid = self.pid()
        if pid and self.port_open():
            return f"already running (pid {pid}) on 127.0.0.1:{self.settings.kafka_port}; reusing it"
        if self.pid_file.exists() and not pid:
            log(f"stale pid file {self.pid_file} (process gone): cleaning it")
            self.pid_file.unlink()
        if not pid and self.port_open():
            raise BrokerError(
                f"port {self.settings.kafka_port} is in use by a process this checkout did not start; stop it, "
                "set RISKWATCH_KAFKA_PORT, or, for a broker started from another checkout, set "
                "RISKWATCH_KAFKA_DATA_DIR to its var/kafka"
            )
        self.fetch(log)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._properties()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster = str(uuid.uuid4())
            import base64

            # `--cluster-id=` form: a base64 id may start with "-", which argparse would take for an option
            cluster = base64.urlsafe_b64encode(uuid.UUID(cluster).bytes).decode().rstrip("=")
            r = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster}", "-c", str(props)),
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                raise BrokerError(f"formatting KRaft storage failed:\n{r.stdout}{r.stderr}")
        if not pid:
            with open(self.log_file, "ab") as logf:  # the broker writes to its own descriptor
                proc = subprocess.Popen(
                    self._java("kafka.Kafka", str(props)),
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=self.data_dir,
                )
            self.pid_file.write_text(str(proc.pid))
            pid = proc.pid
            log(
                f"starting Kafka {kafka_version()} (pid {pid}) on 127.0.0.1:{self.settings.kafka_port}; log: "
                f"{self.log_file}"
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                tail = self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""
                raise BrokerError(f"broker exited during start-up; last log lines:\n{tail}")
            if self.port_open() and self.responsive(timeout=3):
                return f"running (pid {pid}) on 127.0.0.1:{self.settings.kafka_port}"
            time.sleep(0.25)
        raise BrokerError(f"broker did not answer within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> str:
        pid = self.pid()
        if pid is None:
            if self.pid_file.exists():
                self.pid_file.unlink()
                return "was not running (removed a stale pid file)"
            return "was not running"
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return f"stopped (pid {pid})"

    def reset(self) -> None:
        """Stop and delete all broker data (topics, offsets)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
