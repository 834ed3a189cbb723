"""The local processes of the city link: Kafka MirrorMaker 2 and the bridge (docs/city-link.md).

``riskwatch city-link config|start|stop|status``:

* fetch: ``mvn dependency:copy-dependencies`` on ``kafka/connect-mirror.pom.xml`` with the broker's
  own ``kafka.version`` (kafka/pom.xml), into ``<kafka_home>/<version>/mirror-libs``; once.
* config: :func:`~riskwatch.tools.citylink.mm2.write_properties` writes MirrorMaker 2's
  dedicated-mode properties from Settings.
* start: the masking/relay bridge (:mod:`riskwatch.tools.citylink.bridge`, a Python child) and
  MirrorMaker 2 (``java org.apache.kafka.connect.mirror.MirrorMaker <properties>``, the same main
  class as ``connect-mirror-maker.sh``), both detached, pid and log files under ``citylink_dir``.
* stop: SIGTERM, SIGKILL after a timeout. ``kill9`` for drills and tests.
* status: the processes, and per topic the records in the county's masked copy vs. on the city.

Example (a county broker running; MirrorMaker needs Java 17+ and Maven)::

    link = CityLink(load_settings())
    print(link.start())
    print("\n".join(link.status()))
    print(link.stop())
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from riskwatch.settings import Settings
from riskwatch.tools.broker import REPO, kafka_version
from riskwatch.tools.citylink.mm2 import write_properties
from riskwatch.tools.citylink.topics import city_remote_topic, inbound_topic, masked_topic
from riskwatch.tools.pidfile import live_pid

POM = REPO / "kafka" / "connect-mirror.pom.xml"
MAIN_CLASS = "org.apache.kafka.connect.mirror.MirrorMaker"


class CityLinkError(RuntimeError):
    pass


@dataclass
class CityLink:
    """The local MirrorMaker 2 process and the bridge process, with pid/log files in ``citylink_dir``."""

    settings: Settings

    @property
    def dir(self) -> Path:
        return self.settings.citylink_dir.resolve()

    @property
    def libs(self) -> Path:
        return self.settings.kafka_home.expanduser() / kafka_version() / "mirror-libs"

    @property
    def properties_file(self) -> Path:
        return self.dir / "mm2.properties"

    def _pid_file(self, what: str) -> Path:
        return self.dir / f"{what}.pid"

    def log_file(self, what: str) -> Path:
        return self.dir / f"{what}.log"

    # -- fetch / config --------------------------------------------------------------------------
    def fetch(self, log=print) -> Path:
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        if not shutil.which("mvn"):
            raise CityLinkError(
                "Maven (mvn) is not on PATH: install Maven 3.8+ and Java 17+ (see README prerequisites)"
            )
        self.libs.mkdir(parents=True, exist_ok=True)
        log(f"fetching MirrorMaker 2 (connect-mirror {kafka_version()}) from Maven Central into {self.libs} (once) ...")
        r = subprocess.run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(POM),
                f"-Dkafka.version={kafka_version()}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise CityLinkError(
                f"mvn failed ({r.returncode}); check network access to Maven Central. "
                f"{r.stdout[-1500:]}{r.stderr[-1500:]}"
            )
        marker.write_text(kafka_version())
        log(f"fetched {len(list(self.libs.glob('*.jar')))} jars")
        return self.libs

    def write_config(self) -> Path:
        return write_properties(self.settings, self.properties_file)

    # -- processes -------------------------------------------------------------------------------
    def pid(self, what: str) -> int | None:
        return live_pid(self._pid_file(what))

    def _spawn(self, what: str, cmd: list[str], env: dict | None = None) -> int:
        with open(self.log_file(what), "ab") as logf:  # the child writes to its own copy of the descriptor
            proc = subprocess.Popen(
                cmd,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.dir,
                env=env,
            )
        self._pid_file(what).write_text(str(proc.pid))
        return proc.pid

    def _mm2_cmd(self) -> list[str]:
        java = shutil.which("java")
        if not java:
            raise CityLinkError("java is not on PATH: install Java 17+ (see README prerequisites)")
        log4j = REPO / "kafka" / "log4j-mirrormaker.properties"
        return [
            java,
            "-Xms128m",
            "-Xmx512m",
            f"-Dlog4j.configuration=file:{log4j}",
            "-cp",
            f"{self.libs}/*",
            MAIN_CLASS,
            str(self.properties_file),
        ]

    def _bridge_cmd(self) -> tuple[list[str], dict]:
        from riskwatch.tools.runner import settings_env

        env = {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        return [sys.executable, "-m", "riskwatch.cli.main", "city-link", "bridge"], env

    def start(self, log=print, bridge: bool = True, mirror: bool = True) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        said = []
        if bridge:
            if self.pid("bridge"):
                said.append(f"bridge already running (pid {self.pid('bridge')})")
            else:
                cmd, env = self._bridge_cmd()
                said.append(f"bridge started (pid {self._spawn('bridge', cmd, env)}; log {self.log_file('bridge')})")
        if mirror:
            if self.pid("mirrormaker"):
                said.append(f"MirrorMaker 2 already running (pid {self.pid('mirrormaker')})")
            else:
                self.fetch(log)
                self.write_config()
                pid = self._spawn("mirrormaker", self._mm2_cmd())
                said.append(f"MirrorMaker 2 {kafka_version()} started (pid {pid}; log {self.log_file('mirrormaker')})")
        return "; ".join(said)

    def stop(self, timeout: float = 30.0) -> str:
        said = []
        for what in ("mirrormaker", "bridge"):
            pid = self.pid(what)
            if pid is None:
                self._pid_file(what).unlink(missing_ok=True)
                said.append(f"{what} was not running")
                continue
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.pid(what) is not None:
                time.sleep(0.2)
            if self.pid(what) is not None:
                os.killpg(pid, signal.SIGKILL)
            self._pid_file(what).unlink(missing_ok=True)
            said.append(f"{what} stopped (pid {pid})")
        return "; ".join(said)

    def kill9(self, what: str = "mirrormaker") -> int | None:
        """SIGKILL (drills and tests): no shutdown hook runs, nothing is flushed or committed."""
        pid = self.pid(what)
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.pid(what) is not None:
                time.sleep(0.1)
        return pid

    def status(self) -> list[str]:
        """One line per process, then per topic: records in the county's masked copy vs. on the city."""
        s = self.settings
        lines = []
        for what in ("mirrormaker", "bridge"):
            pid = self.pid(what)
            if pid:
                lines.append(f"{what}: running (pid {pid}); log {self.log_file(what)}")
            elif self._pid_file(what).exists():
                lines.append(
                    f"{what}: exited (stale pid file); see {self.log_file(what)}; "
                    "`riskwatch city-link start` restarts it"
                )
            else:
                lines.append(f"{what}: stopped")
        county = _record_counts(s.kafka_kwargs(), [masked_topic(s, t) for t in s.citylink_topics] + [inbound_topic(s)])
        city_kw = {"bootstrap_servers": s.citylink_city_bootstrap, **_city_client_kwargs(s)}
        city = _record_counts(
            city_kw, [city_remote_topic(s, t) for t in s.citylink_topics] + [s.citylink_city_task_topic]
        )
        if county is None:
            lines.append(f"county cluster {s.kafka_bootstrap}: unreachable")
        if city is None:
            lines.append(
                f"city cluster {s.citylink_city_bootstrap}: unreachable (the county keeps working; MirrorMaker retries)"
            )
        for t in s.citylink_topics:
            a = (county or {}).get(masked_topic(s, t))
            b = (city or {}).get(city_remote_topic(s, t))
            lines.append(f"  {masked_topic(s, t)} -> city {city_remote_topic(s, t)}: {_n(a)} / {_n(b)} records")
        a = (city or {}).get(s.citylink_city_task_topic)
        b = (county or {}).get(inbound_topic(s))
        lines.append(f"  city {s.citylink_city_task_topic} -> county {inbound_topic(s)}: {_n(a)} / {_n(b)} records")
        return lines


def _n(v) -> str:
    return "-" if v is None else str(v)


def _city_client_kwargs(settings: Settings) -> dict:
    """kafka-python connection arguments for the city's cluster."""
    if settings.citylink_city_security_protocol == "PLAINTEXT":
        return {}
    return dict(
        security_protocol=settings.citylink_city_security_protocol,
        sasl_mechanism=settings.citylink_city_sasl_mechanism,
        sasl_plain_username=settings.citylink_city_sasl_username,
        sasl_plain_password=settings.citylink_city_sasl_password.get_secret_value(),
    )


def _record_counts(kw: dict, topics: list[str]) -> dict[str, int] | None:
    """Records currently held per topic (end minus start offsets, summed over partitions); None if
    the cluster does not answer. Topics that do not exist are left out."""
    from kafka import KafkaConsumer, TopicPartition

    try:
        c = KafkaConsumer(
            **kw,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=6000,
            bootstrap_timeout_ms=5000,
            client_id="riskwatch-citylink-status",
        )
    except Exception:  # noqa: BLE001
        return None
    try:
        have = c.topics()
        out = {}
        for t in topics:
            if t not in have:
                continue
            tps = [TopicPartition(t, p) for p in c.partitions_for_topic(t) or ()]
            ends, starts = c.end_offsets(tps), c.beginning_offsets(tps)
            out[t] = sum(ends[tp] - starts[tp] for tp in tps)
        return out
    except Exception:  # noqa: BLE001
        return None
    finally:
        c.close()


__all__ = ["CityLink", "CityLinkError"]
