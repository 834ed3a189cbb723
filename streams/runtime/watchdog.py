"""A stuck batch is a failure, not a wait: log where it is stuck, then exit so it is redelivered.

Each agent reports the stage of its current batch (``process``, ``send alerts.all``, ``store``…).
A stage that does not change for ``limit`` seconds means a hung dependency or a bug; the worker
logs the stage and every task's await chain, then exits with code 70, before the batch's offsets
are committed: the supervisor (compose ``restart: unless-stopped``, or the test harness) restarts
it and the batch is redelivered (at-least-once; state and sinks are idempotent).

A worker that has input waiting (the broker has it, the worker committed less) while its
committed offsets do not move for ``limit`` seconds is stuck too (``no_progress``: batches or
commits hung): the same exit.

Stages marked ``patient`` (the ClickHouse write, which retries with back-off while the server is
away and so applies back-pressure on purpose) are never cut short.

>>> w = Watchdog(limit=60.0, clock=lambda: 100.0)
>>> w.stage("entities", "send alerts.all")
>>> w.stuck(now=130.0), w.stuck(now=161.0)
(None, ('entities', 'send alerts.all', 61.0))
>>> w.stage("entities", "clickhouse", patient=True)
>>> w.stuck(now=1000.0) is None
True
>>> w.done("entities"); w.stuck(now=1e9) is None
True
>>> w.no_progress(backlog=0, committed=10, now=2000.0) is None     # nothing waiting: idle is fine
True
>>> w.no_progress(backlog=5, committed=10, now=2010.0) is None     # input waiting: the clock runs
True
>>> w.no_progress(backlog=5, committed=12, now=2050.0) is None     # commits moved: it restarts
True
>>> w.no_progress(backlog=5, committed=12, now=2111.0)             # and then nothing for a minute
('consumer', '5 messages waiting, commits not moving', 61.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Watchdog:
    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.clock = clock
        self._stages: dict[str, tuple[str, float, bool]] = {}
        self._committed: int = -1
        self._since: float = 0.0

    def stage(self, agent: str, stage: str, patient: bool = False) -> None:
        self._stages[agent] = (stage, self.clock(), patient)

    def done(self, agent: str) -> None:
        self._stages.pop(agent, None)

    def patient(self) -> bool:
        """Whether some batch is waiting on purpose (a ClickHouse write during an outage)."""
        return any(p for _, _, p in self._stages.values())

    def no_progress(self, backlog: int, committed: int, now: float | None = None) -> tuple[str, str, float] | None:
        """(agent, what, seconds) when input has been waiting (``backlog`` > 0) while the committed
        offsets (``committed``, their sum) did not move for longer than ``limit``: batches stuck,
        or commits stuck. The clock restarts whenever the commits move or the backlog clears."""
        now = self.clock() if now is None else now
        if backlog <= 0 or committed != self._committed:
            self._committed, self._since = committed, now
            return None
        if now - self._since > self.limit:
            return "consumer", f"{backlog} messages waiting, commits not moving", now - self._since
        return None

    def stuck(self, now: float | None = None) -> tuple[str, str, float] | None:
        """(agent, stage, seconds) of the first batch stuck longer than ``limit``, else None."""
        now = self.clock() if now is None else now
        for agent, (stage, since, patient) in list(self._stages.items()):
            if not patient and now - since > self.limit:
                return agent, stage, now - since
        return None
