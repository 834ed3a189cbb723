"""CPU per thread of a worker process, from /proc: where a benchmark's CPU went (the event loop,
the other Python threads, the embedded ClickHouse engine's native threads)."""

from __future__ import annotations

import os
from pathlib import Path


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process, keyed ``"<name>:<tid>"`` (from /proc)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue  # the thread ended
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        f = stat[stat.rindex(")") + 2 :].split()
        out[f"{name}:{tid}"] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def thread_groups(before: dict[str, float], after: dict[str, float], main_tid: int, seconds: float) -> dict[str, float]:
    """Cores per group over ``seconds``: the event loop (the main thread), the other Python threads
    (aiokafka's consumer thread, the ClickHouse writer's), and ClickHouse's native threads.

    >>> before = {"python:1": 1.0, "python:2": 0.5}
    >>> thread_groups(before, {"python:1": 2.0, "python:2": 1.0, "MergeMutate:3": 0.5}, 1, 2.0)
    {'event_loop': 0.5, 'python_threads': 0.25, 'native_threads': 0.25}
    """
    g = {"event_loop": 0.0, "python_threads": 0.0, "native_threads": 0.0}
    for key, cpu in after.items():
        name, tid = key.rsplit(":", 1)
        d = cpu - before.get(key, 0.0)
        group = (
            "event_loop"
            if int(tid) == main_tid
            else "python_threads"
            if name.startswith("python")
            else "native_threads"
        )
        g[group] += d
    return {k: round(v / seconds, 3) for k, v in g.items()}
