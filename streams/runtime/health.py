"""Health of a worker: crash-only batches, the stall watchdogs, event-loop lag, GC pauses and a
task dump on ``SIGUSR2``.

A worker that cannot make progress exits (code 70) so that its supervisor restarts it and the
uncommitted batches are redelivered: nothing is lost, and a stuck worker never holds its
partitions silently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import traceback
from typing import Any

from streams.runtime.metrics import GC_PAUSE, LOOP_LAG
from streams.runtime.worker import Worker

log = logging.getLogger("riskwatch.worker")

LOOP_LAG_PROBE = 0.25


def register(w: Worker) -> None:
    """The stall watchdog timer, the event-loop lag probe and the SIGUSR2 task dump."""
    app = w.app

    def input_backlog() -> tuple[int, int]:
        """(messages of this worker's input partitions the broker has and no commit covers,
        sum of the committed offsets) — what the stall watchdog watches."""
        n = total = 0
        consumer: Any = app.consumer  # Faust's Consumer: the committed offsets are private, not in ConsumerT
        for x in w.input_tps():
            try:
                hw = consumer.highwater(x)
            except Exception:  # noqa: BLE001 - not fetched yet
                continue
            nxt = consumer._committed_offset.get(x) or 0  # Faust keeps the committed *next* offset
            total += nxt
            if hw is not None and hw > nxt:
                n += hw - nxt
        return n, total

    def consumer_diagnosis() -> str:
        """Faust's view of the input partitions: assigned, paused, buffered-full, offsets."""
        c: Any = app.consumer  # Faust's Consumer: offsets and partition sets are private, not in ConsumerT
        try:
            rows = []
            for x in w.input_tps():
                hw: int | str | None
                try:
                    hw = c.highwater(x)
                except Exception:  # noqa: BLE001
                    hw = "?"
                rows.append(
                    f"{x.topic}[{x.partition}] read={c._read_offset.get(x)} committed={c._committed_offset.get(x)} "
                    f"highwater={hw} paused={x in c._paused_partitions} "
                    f"buffer_full={x in getattr(c, '_buffered_partitions', ())}"
                )
            return (
                f"flow_control active={app.flow_control.is_active()} generation={app.consumer_generation_id} "
                f"paused={len(c._paused_partitions)} active={len(c._active_partitions or ())}\n  " + "\n  ".join(rows)
            )
        except Exception as e:  # noqa: BLE001 - diagnosis must never fail the exit
            return f"(diagnosis failed: {e!r})"

    @app.timer(interval=5.0, on_leader=False)
    async def stall_watchdog():
        hit = w.watchdog.stuck()
        if w.watchdog.patient():
            w.commit_watchdog.no_progress(0, -1)  # waiting for ClickHouse on purpose: restart the commit clock
        elif hit is None:
            # input waiting while the commits do not move (batches or commits hung; or the broker away
            # for that long — hence a limit far above a broker restart's)
            hit = w.commit_watchdog.no_progress(*input_backlog())
        if hit is not None:
            agent, stage, secs = hit
            log.critical(
                "agent %s has been stuck at '%s' for %.0f s: exiting so that the supervisor restarts the "
                "worker and the batch is redelivered (nothing is lost; report this with the task dump below)",
                agent,
                stage,
                secs,
            )
            log.critical("consumer state: %s", consumer_diagnosis())
            dump_tasks(file=sys.stderr)
            logging.shutdown()
            os._exit(70)

    @app.task
    async def event_loop_lag():
        while True:
            t = time.monotonic()
            await asyncio.sleep(LOOP_LAG_PROBE)
            LOOP_LAG.observe(max(0.0, time.monotonic() - t - LOOP_LAG_PROBE))

    @app.task
    async def install_task_dump():
        import signal as _signal

        def _dump():
            log.warning("consumer state: %s", consumer_diagnosis())
            dump_tasks()

        asyncio.get_running_loop().add_signal_handler(_signal.SIGUSR2, _dump)


async def crash_only(agent: str, fn, batch) -> None:
    """Run one batch; on an unexpected error exit the process at once.

    Faust acknowledges a ``take_events`` batch even when its body raises, and restarts the agent:
    the batch would be lost. Exiting before the next offset commit keeps at-least-once: the
    supervisor (compose ``restart: unless-stopped``) restarts the worker and the batch is
    redelivered; per-entity state and idempotent sinks make the replay harmless."""
    try:
        await fn(batch)
    except asyncio.CancelledError:
        raise
    except BaseException:  # noqa: BLE001
        log.critical(
            "agent %s failed on a batch of %d events; exiting so that it is redelivered:\n%s",
            agent,
            len(batch) if isinstance(batch, list) else 1,
            traceback.format_exc(),
        )
        logging.shutdown()
        os._exit(70)


GC_THRESHOLDS = (50_000, 50, 1_000)


def time_gc() -> None:
    """Tune the cyclic garbage collector for a long-lived state, and export its pauses as
    ``riskwatch_gc_pause_seconds`` (idempotent).

    With CPython's defaults (700, 10, 10) the worker ran a full collection every ~2 s under load,
    225 ms each on 10k entities: ~12 % of the time, and the alert latency's tail. Entity states are
    long-lived and are freed by reference counting when replaced (they hold no cycles), so
    collections are made rarer: a full one after 50 × 1,000 younger ones (and CPython's own rule
    that long-lived objects grew by 25 %)."""
    import gc

    gc.set_threshold(*GC_THRESHOLDS)
    if any(getattr(cb, "_riskwatch", False) for cb in gc.callbacks):
        return
    gc.callbacks.append(GcPauseTimer())


class GcPauseTimer:
    """A ``gc.callbacks`` entry: each collection's pause on ``riskwatch_gc_pause_seconds``."""

    _riskwatch = True  # marks the callback installed (time_gc is idempotent)

    def __init__(self) -> None:
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - self.started)


def dump_tasks(file=None) -> None:
    """Log where every asyncio task is suspended, following awaits into coroutines and async
    generators (which mode's SIGUSR1 dump truncates). Installed on SIGUSR2 in the worker."""
    import sys

    out = []
    for task in asyncio.all_tasks():
        out.append(f"TASK {task.get_name()}")
        obj: Any = task.get_coro()  # then whatever it awaits: coroutines, generators, futures
        depth = 0
        while obj is not None and depth < 60:
            frame = getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None) or getattr(obj, "gi_frame", None)
            if frame is not None:
                out.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            nxt = getattr(obj, "cr_await", None) or getattr(obj, "ag_await", None) or getattr(obj, "gi_yieldfrom", None)
            if nxt is None and type(obj).__name__ in (
                "async_generator_asend",
                "async_generator_athrow",
                "coroutine_wrapper",
            ):
                import gc

                nxt = next((r for r in gc.get_referents(obj) if hasattr(r, "ag_frame") or hasattr(r, "cr_frame")), None)
            if nxt is None and hasattr(obj, "_coro"):  # a Task or Future wrapper
                nxt = obj._coro
            if nxt is None and frame is None:
                out.append(f"  awaiting {obj!r}"[:300])
            obj, depth = nxt, depth + 1
    print("\n".join(out), file=file or sys.stderr, flush=True)
