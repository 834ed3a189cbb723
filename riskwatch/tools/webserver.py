"""The workbench as a background process, like the local broker: ``riskwatch web start|stop|status``.

* start: launch ``riskwatch web run`` detached (own session), pid in ``<workbench_dir>/web.pid``,
  output in ``<workbench_dir>/web.log``; wait until ``/healthz`` answers. A running app is reused.
* stop: SIGTERM (SIGKILL after a timeout) to the app and, if ``make demo`` left one running for
  exploring, to the worker named in ``<workbench_dir>/worker.pid``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from riskwatch.settings import Settings
from riskwatch.tools.pidfile import alive, live_pid
from riskwatch.tools.runner import settings_env


class WebError(RuntimeError):
    pass


def _terminate(pid: int, timeout: float) -> None:
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
class WebServer:
    settings: Settings

    @property
    def dir(self) -> Path:
        return Path(self.settings.workbench_dir).resolve()

    @property
    def pid_file(self) -> Path:
        return self.dir / "web.pid"

    @property
    def worker_pid_file(self) -> Path:
        return self.dir / "worker.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "web.log"

    @property
    def url(self) -> str:
        return f"http://{self.settings.workbench_host}:{self.settings.workbench_port}"

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
        worker = live_pid(self.worker_pid_file)
        extra = f"; demo worker pid {worker}" if worker else ""
        if pid and self.healthy():
            return f"running (pid {pid}) at {self.url}{extra}; log: {self.log_file}"
        if pid:
            return f"starting or unhealthy (pid {pid}, {self.url}/healthz does not answer){extra}; see {self.log_file}"
        if self.pid_file.exists():
            return f"stale: pid file {self.pid_file} names a process that is gone; `riskwatch web start` cleans it"
        return "stopped" + extra

    def start(self, timeout: float = 60.0, log=print) -> str:
        pid = self.pid()
        if pid and self.healthy():
            return f"already running (pid {pid}) at {self.url}; reusing it"
        if self.pid_file.exists() and not pid:
            self.pid_file.unlink()
        if not pid and self.healthy():
            raise WebError(f"{self.url} answers but not from our app; stop it or set RISKWATCH_WORKBENCH_PORT")
        self.dir.mkdir(parents=True, exist_ok=True)
        if not pid:
            env = {**os.environ, **settings_env(self.settings)}
            with open(self.log_file, "ab") as logf:  # the workbench writes to its own descriptor
                proc = subprocess.Popen(
                    [sys.executable, "-m", "riskwatch.cli.main", "web", "run"],
                    env=env,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.pid_file.write_text(str(proc.pid))
            pid = proc.pid
            log(f"starting the workbench (pid {pid}) at {self.url}; log: {self.log_file}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                raise WebError(f"the workbench exited during start-up; last log lines:\n{tail}")
            if self.healthy():
                return f"running (pid {pid}) at {self.url}"
            time.sleep(0.25)
        raise WebError(f"the workbench did not answer within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> str:
        said = []
        for what, f in (("workbench", self.pid_file), ("demo worker", self.worker_pid_file)):
            pid = live_pid(f)
            if pid is not None:
                _terminate(pid, timeout if what == "workbench" else 90.0)
                said.append(f"{what} stopped (pid {pid})")
            f.unlink(missing_ok=True)
        return "; ".join(said) or "was not running"
