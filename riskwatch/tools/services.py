"""Local Alertmanager, Prometheus, robot adapter and notification bridge, started like the broker.

``riskwatch alertmanager start|stop|status``, ``riskwatch prometheus start|stop|status`` and
``riskwatch notify start|stop|status`` (bridge + robot adapter). Each :class:`LocalService` has a
data directory under ``var/`` holding its pid file, its log and its state; ``start`` is idempotent
(a running one is reused, a stale pid file cleaned) and waits until the service answers its health
URL; ``stop`` sends SIGTERM and SIGKILL after a timeout. Alertmanager and Prometheus listen on
loopback only; Alertmanager runs without clustering (no gossip port).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from riskwatch.settings import Settings
from riskwatch.tools.pidfile import live_pid

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"


class ServiceError(RuntimeError):
    pass


@dataclass
class LocalService:
    name: str
    data_dir: Path
    port: int
    health_path: str

    @property
    def pid_file(self) -> Path:
        return self.data_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:
        """Write configuration before a start."""

    def pid(self) -> int | None:
        return live_pid(self.pid_file)

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.health_path, timeout=timeout) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def status(self) -> str:
        pid = self.pid()
        if pid and self.healthy():
            return f"{self.name}: running (pid {pid}) on {self.url}, data in {self.data_dir}"
        if pid:
            return f"{self.name}: starting or unhealthy (pid {pid}); see {self.log_file}"
        if self.pid_file.exists():
            return f"{self.name}: stale pid file {self.pid_file} (process gone); `start` cleans it"
        if self.healthy():
            return f"{self.name}: port {self.port} answers but not by our process; set another port"
        return f"{self.name}: stopped"

    def start(self, timeout: float = 60.0, log=print) -> str:
        pid = self.pid()
        if pid and self.healthy():
            self.prepare()
            self.reload()
            return f"{self.name}: already running (pid {pid}) on {self.url}; reusing it (configuration reloaded)"
        if self.pid_file.exists() and not pid:
            log(f"{self.name}: stale pid file {self.pid_file} (process gone): cleaning it")
            self.pid_file.unlink()
        if not pid and self.healthy():
            raise ServiceError(f"port {self.port} is in use by another process; stop it or choose another port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        if not pid:
            with open(self.log_file, "ab") as logf:  # the service writes to its own descriptor
                proc = subprocess.Popen(
                    self.command(),
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=self.data_dir,
                    env=self.env(),
                )
            self.pid_file.write_text(str(proc.pid))
            self._proc = proc
            pid = proc.pid
            log(f"starting {self.name} (pid {pid}) on {self.url}; log: {self.log_file}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                raise ServiceError(f"{self.name} exited during start-up; last log lines:\n{tail}")
            if self.healthy():
                return f"{self.name}: running (pid {pid}) on {self.url}"
            time.sleep(0.1)
        raise ServiceError(
            f"{self.name} did not answer {self.url}{self.health_path} within {timeout:.0f}s; see {self.log_file}"
        )

    def reload(self) -> None:
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGHUP)

    def stop(self, timeout: float = 20.0, kill: bool = False) -> str:
        pid = self.pid()
        if pid is None:
            if self.pid_file.exists():
                self.pid_file.unlink()
                return f"{self.name}: was not running (removed a stale pid file)"
            return f"{self.name}: was not running"
        os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            self._reap()
            time.sleep(0.1)
        if self.pid() is not None:
            os.killpg(pid, signal.SIGKILL)
        self._reap()
        self.pid_file.unlink(missing_ok=True)
        return f"{self.name}: {'killed' if kill else 'stopped'} (pid {pid})"

    def _reap(self) -> None:
        p = getattr(self, "_proc", None)
        if p is not None:
            p.poll()


def _binary(*names: str) -> str:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    raise ServiceError(
        f"{names[0]} is not installed: `apt-get install "
        f"{'prometheus-alertmanager' if 'alertmanager' in names[0] else 'prometheus'}` "
        "(Debian packages; .ci/run installs them)"
    )


class Alertmanager(LocalService):
    def __init__(self, settings: Settings, robot_url: str | None = None):
        super().__init__(
            "alertmanager", settings.alertmanager_data_dir.resolve(), settings.alertmanager_port, "/-/ready"
        )
        self.settings = settings
        self.robot_url = robot_url or f"http://127.0.0.1:{settings.robot_port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "alertmanager.yml"

    def prepare(self) -> None:
        write_alertmanager_config(self.settings, self.data_dir, self.robot_url)

    def command(self) -> list[str]:
        return [
            _binary("prometheus-alertmanager", "alertmanager"),
            f"--config.file={self.config_path}",
            f"--storage.path={self.data_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--data.retention=170h",
            "--log.level=info",
        ]


def write_alertmanager_config(settings: Settings, out_dir: Path, robot_url: str) -> Path:
    from notify import amconfig
    from notify.receivers import load_receivers
    from riskwatch.domain.catalog import load_catalog

    catalog = load_catalog(settings.catalog_path)
    receivers = load_receivers(settings.receivers_path, catalog)
    return amconfig.write(catalog, receivers, robot_url, out_dir)


class Prometheus(LocalService):
    def __init__(self, settings: Settings, worker_ports: list[int] | None = None, rules: Path | None = None):
        super().__init__(
            "prometheus",
            (settings.alertmanager_data_dir.parent / "prometheus").resolve(),
            settings.prometheus_port,
            "/-/ready",
        )
        self.settings = settings
        self.worker_ports = worker_ports or [settings.web_port]
        self.rules = rules or RULES

    @property
    def config_path(self) -> Path:
        return self.data_dir / "prometheus.yml"

    def prepare(self) -> None:
        write_prometheus_config(
            self.settings,
            self.config_path,
            [f"127.0.0.1:{p}" for p in self.worker_ports],
            [f"127.0.0.1:{self.settings.notify_port}"],
            [f"127.0.0.1:{self.settings.robot_port}"],
            f"127.0.0.1:{self.settings.alertmanager_port}",
            self.rules,
        )

    def command(self) -> list[str]:
        return [
            _binary("prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]


def write_prometheus_config(
    settings: Settings,
    path: Path,
    workers: list[str],
    bridges: list[str],
    robots: list[str],
    alertmanager: str,
    rules: Path | str,
) -> Path:
    """prometheus.yml: scrape every worker, the bridge and the robot adapter; rules; one Alertmanager."""
    iv = f"{settings.prometheus_scrape_seconds:g}s"
    cfg = {
        "global": {
            "scrape_interval": iv,
            "evaluation_interval": iv,
            "scrape_timeout": f"{min(settings.prometheus_scrape_seconds, 10):g}s",
        },
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": "riskwatch-worker", "static_configs": [{"targets": workers}]},
            {"job_name": "riskwatch-notify", "static_configs": [{"targets": bridges}]},
            {"job_name": "riskwatch-robots", "static_configs": [{"targets": robots}]},
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Generated by riskwatch (riskwatch/tools/services.py); do not edit.\n" + yaml.safe_dump(cfg, sort_keys=False)
    )
    return path


class _RiskwatchProcess(LocalService):
    """A ``riskwatch ...`` child with the given settings in its environment."""

    def __init__(self, name: str, settings: Settings, port: int, health_path: str, args: list[str]):
        super().__init__(name, (settings.alertmanager_data_dir.parent / "notify").resolve(), port, health_path)
        self.settings = settings
        self.args = args

    def env(self) -> dict[str, str]:
        from riskwatch.tools.runner import settings_env

        return {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "riskwatch.cli.main", *self.args]

    def reload(self) -> None:
        pass


def bridge(settings: Settings) -> LocalService:
    return _RiskwatchProcess("bridge", settings, settings.notify_port, "/metrics", ["notify", "run"])


def robots(settings: Settings) -> LocalService:
    return _RiskwatchProcess("robots", settings, settings.robot_port, "/-/healthy", ["notify", "robots"])
