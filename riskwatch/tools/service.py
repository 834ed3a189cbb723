"""A front end as a background process: ``riskwatch web|gateway start|stop|status``.

One implementation for the workbench (:mod:`riskwatch.tools.webserver`) and the ingest gateway
(:mod:`riskwatch.tools.gateway_server`); a subclass names its directory, URL and words.

* start: launch ``riskwatch <command> run`` detached (own session), pid in ``<dir>/<stem>.pid``, output
  in ``<dir>/<stem>.log``; wait until ``/healthz`` answers. A running process is reused; a port that
  answers without our pid behind it is refused.
* stop: SIGTERM to the process group, SIGKILL after a timeout, for each pid file the service owns.
* status: running, starting or unhealthy, stale (a pid file naming a process that is gone), stopped.

>>> import tempfile
>>> from riskwatch.settings import Settings
>>> from riskwatch.tools.gateway_server import GatewayServer
>>> gw = GatewayServer(Settings(_env_file=None, gateway_dir=tempfile.mkdtemp()))
>>> gw.status(), gw.stop(), gw.pid_file.name
('stopped', 'was not running', 'gateway.pid')
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from riskwatch.settings import Settings
from riskwatch.tools.pidfile import alive, live_pid
from riskwatch.tools.runner import settings_env


class ServiceError(RuntimeError):
    pass


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM to ``pid``'s process group; SIGKILL if it still runs after ``timeout`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.2)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)


@dataclass
class Service:
    settings: Settings

    command: ClassVar[str]  # `riskwatch <command> run|start`
    stem: ClassVar[str]  # <stem>.pid, <stem>.log
    title: ClassVar[str]  # in messages: "starting the gateway", "the gateway exited"
    short: ClassVar[str]  # "gateway stopped (pid 1)"
    ours: ClassVar[str]  # "answers but not from our gateway"
    port_env: ClassVar[str]
    error: ClassVar[type[ServiceError]] = ServiceError

    @property
    def dir(self) -> Path:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.stem}.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.stem}.log"

    def pid_files(self, timeout: float) -> list[tuple[str, Path, float]]:
        """What ``stop`` stops: (name, pid file, seconds before SIGKILL)."""
        return [(self.short, self.pid_file, timeout)]

    def running_note(self) -> str:
        """Said after the URL when running."""
        return ""

    def note(self) -> str:
        """Said with every status but stale."""
        return ""

    def pid(self) -> int | None:
        return live_pid(self.pid_file)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def status(self) -> str:
        pid = self.pid()
        if pid and self.healthy():
            return f"running (pid {pid}) at {self.url}{self.running_note()}; log: {self.log_file}"
        if pid:
            return (
                f"starting or unhealthy (pid {pid}, {self.url}/healthz does not answer){self.note()}; "
                f"see {self.log_file}"
            )
        if self.pid_file.exists():
            return (
                f"stale: pid file {self.pid_file} names a process that is gone; "
                f"`riskwatch {self.command} start` cleans it"
            )
        return "stopped" + self.note()

    def start(self, timeout: float = 60.0, log: Callable[[str], object] = print) -> str:
        pid = self.pid()
        if pid and self.healthy():
            return f"already running (pid {pid}) at {self.url}; reusing it"
        if self.pid_file.exists() and not pid:
            self.pid_file.unlink()
        if not pid and self.healthy():
            raise self.error(f"{self.url} answers but not from {self.ours}; stop it or set {self.port_env}")
        self.dir.mkdir(parents=True, exist_ok=True)
        if not pid:
            env = {**os.environ, **settings_env(self.settings)}
            with open(self.log_file, "ab") as logf:  # the process writes to its own descriptor
                proc = subprocess.Popen(
                    [sys.executable, "-m", "riskwatch.cli.main", self.command, "run"],
                    env=env,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.pid_file.write_text(str(proc.pid))
            pid = proc.pid
            log(f"starting {self.title} (pid {pid}) at {self.url}; log: {self.log_file}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                raise self.error(f"{self.title} exited during start-up; last log lines:\n{tail}")
            if self.healthy():
                return f"running (pid {pid}) at {self.url}"
            time.sleep(0.25)
        raise self.error(f"{self.title} did not answer within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> str:
        said = []
        for what, f, wait in self.pid_files(timeout):
            pid = live_pid(f)
            if pid is not None:
                terminate(pid, wait)
                said.append(f"{what} stopped (pid {pid})")
            f.unlink(missing_ok=True)
        return "; ".join(said) or "was not running"
