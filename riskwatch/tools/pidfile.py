"""Pid files of the local processes the tools start (broker, Alertmanager, Prometheus, the bridge,
the robot adapter, MirrorMaker, the workbench): one reading of "is it still running".

>>> import os, tempfile
>>> from pathlib import Path
>>> p = Path(tempfile.mkdtemp()) / "x.pid"
>>> live_pid(p) is None                      # no file
True
>>> _ = p.write_text(str(os.getpid())); live_pid(p) == os.getpid()
True
>>> _ = p.write_text("not a pid"); live_pid(p) is None
True
"""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether a process runs under this pid: a zombie (an exited child not reaped yet) is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return True


def live_pid(pid_file: Path) -> int | None:
    """The pid the file names, if that process still runs; else None."""
    try:
        pid = int(Path(pid_file).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None
