"""The ingest gateway as a background process, like the workbench: ``riskwatch gateway start|stop|status``.

* start: launch ``riskwatch gateway run`` detached (own session), pid in ``<gateway_dir>/gateway.pid``,
  output in ``<gateway_dir>/gateway.log``; wait until ``/healthz`` answers. A running gateway is reused.
* stop: SIGTERM (SIGKILL after a timeout).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from riskwatch.settings import Settings
from riskwatch.tools.pidfile import live_pid
from riskwatch.tools.runner import settings_env
from riskwatch.tools.webserver import _terminate


class GatewayError(RuntimeError):
    pass


@dataclass
class GatewayServer:
    settings: Settings

    @property
    def dir(self) -> Path:
        return Path(self.settings.gateway_dir).resolve()

    @property
    def pid_file(self) -> Path:
        return self.dir / "gateway.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "gateway.log"

    @property
    def url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.settings.gateway_port}"

    def pid(self) -> int | None:
        return live_pid(self.pid_file)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def status(self) -> str:
        pid = self.pid()
        if pid and self.healthy():
            return f"running (pid {pid}) at {self.url} (API docs: {self.url}/docs); log: {self.log_file}"
        if pid:
            return f"starting or unhealthy (pid {pid}, {self.url}/healthz does not answer); see {self.log_file}"
        if self.pid_file.exists():
            return f"stale: pid file {self.pid_file} names a process that is gone; `riskwatch gateway start` cleans it"
        return "stopped"

    def start(self, timeout: float = 60.0, log=print) -> str:
        pid = self.pid()
        if pid and self.healthy():
            return f"already running (pid {pid}) at {self.url}; reusing it"
        if self.pid_file.exists() and not pid:
            self.pid_file.unlink()
        if not pid and self.healthy():
            raise GatewayError(f"{self.url} answers but not from our gateway; stop it or set RISKWATCH_GATEWAY_PORT")
        self.dir.mkdir(parents=True, exist_ok=True)
        if not pid:
            env = {**os.environ, **settings_env(self.settings)}
            with open(self.log_file, "ab") as logf:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "riskwatch.cli.main", "gateway", "run"],
                    env=env,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.pid_file.write_text(str(proc.pid))
            pid = proc.pid
            log(f"starting the gateway (pid {pid}) at {self.url}; log: {self.log_file}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                raise GatewayError(f"the gateway exited during start-up; last log lines:\n{tail}")
            if self.healthy():
                return f"running (pid {pid}) at {self.url}"
            time.sleep(0.25)
        raise GatewayError(f"the gateway did not answer within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> str:
        pid = live_pid(self.pid_file)
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return "was not running"
        _terminate(pid, timeout)
        self.pid_file.unlink(missing_ok=True)
        return f"gateway stopped (pid {pid})"
