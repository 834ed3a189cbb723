"""The commit pipeline's guarantees (streams/runtime/commit.py), on fakes of its three outputs.

Rows before changelog before acknowledgements; nothing acknowledged while ClickHouse is away;
a commit snapshot never contains a later event's state; back-pressure; coalescing.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace as NS

import pytest

from streams.runtime.commit import Commit

TIMEOUT = 5.0


class Log:
    def __init__(self):
        self.steps: list[tuple] = []


class Writer:
    def __init__(self, log: Log):
        self.log, self.open = log, asyncio.Event()
        self.open.set()

    async def write_now(self, rows):
        await self.open.wait()  # closed: ClickHouse is away (the real writer retries with back-off)
        self.log.steps.append(("rows", {t: len(r) for t, r in rows.items()}))


class Bulk:
    def __init__(self, log: Log):
        self.log = log

    async def send(self, records):
        self.log.steps.append(("changelog", [(k, v) for _, _, k, v in records]))


class Table:
    changelog_topic = NS(get_topic_name=lambda: "app-entities-changelog")

    def __init__(self):
        self.data = {}


class Message:
    def __init__(self, offset: int):
        self.offset, self.refcount = offset, 1

    def incref(self):
        self.refcount += 1


class Stream:
    """Acknowledges like Faust: a message is done when its reference count reaches zero."""

    def __init__(self, log: Log):
        self.log = log

    async def ack(self, event):
        event.message.refcount -= 1
        if event.message.refcount == 0:
            self.log.steps.append(("ack", event.message.offset))


def faust_batch_end(events):
    """What Faust's take_events does after the agent's batch body: drop its own reference."""
    for e in events:
        e.message.refcount -= 1


def events(*offsets):
    return [NS(message=Message(o)) for o in offsets]


def make(**kw):
    log = Log()
    c = Commit(Writer(log), Bulk(log), Table(), dumps=lambda key, st: repr(st).encode(), **kw)
    return log, c


async def wait_until(cond, what: str):
    async def poll():
        while not cond():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), TIMEOUT)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


def test_rows_then_changelog_then_acknowledgements_and_faust_alone_cannot_ack():
    async def main():
        log, c = make()
        runner = asyncio.ensure_future(c.run())
        evs = events(10, 11)
        c.add({"events_sensor": [(1,), (2,)]}, {b"E1": (0, {"n": 2})}, evs, Stream(log))
        faust_batch_end(evs)  # Faust's own ack: the held reference keeps the messages unacknowledged
        assert all(e.message.refcount == 1 for e in evs)
        await asyncio.wait_for(c.drained(), TIMEOUT)
        runner.cancel()
        return log.steps, c

    steps, c = asyncio.run(main())
    assert steps == [("rows", {"events_sensor": 2}), ("changelog", [(b"E1", b"{'n': 2}")]), ("ack", 10), ("ack", 11)]
    assert c.table.data == {b"E1": b"{'n': 2}"} and c.pending == 0 and c.commits == 1


def test_nothing_is_acknowledged_or_written_to_the_changelog_while_clickhouse_is_away():
    async def main():
        log, c = make()
        c.writer.open.clear()
        runner = asyncio.ensure_future(c.run())
        evs = events(1)
        c.add({"events_sensor": [(1,)]}, {b"E1": (0, "s1")}, evs, Stream(log))
        faust_batch_end(evs)
        await wait_until(lambda: c.writer.open is not None and c.pending == 1 and not c.held, "the commit to start")
        for _ in range(20):
            await asyncio.sleep(0)  # let the commit run as far as it can
        before = list(log.steps)
        c.writer.open.set()  # ClickHouse is back
        await asyncio.wait_for(c.drained(), TIMEOUT)
        runner.cancel()
        return before, log.steps, evs

    before, after, evs = asyncio.run(main())
    assert before == []  # no rows, no changelog, no acknowledgement during the outage
    assert [s[0] for s in after] == ["rows", "changelog", "ack"] and evs[0].message.refcount == 0


def test_snapshot_holds_only_the_committed_events_state():
    async def main():
        log, c = make()
        c.writer.open.clear()
        runner = asyncio.ensure_future(c.run())
        st = {"n": 1}
        c.add({"t": [(1,)]}, {b"E1": (0, st)}, events(1), Stream(log))
        await wait_until(lambda: not c.dirty and c.pending == 1, "the first commit to take its snapshot")
        st["n"] = 2  # a later batch changes the live state while the first commit waits for ClickHouse
        c.add({"t": [(2,)]}, {b"E1": (0, st)}, events(2), Stream(log))
        assert c.live(b"E1") == (True, {"n": 2})
        c.writer.open.set()
        await asyncio.wait_for(c.drained(), TIMEOUT)
        runner.cancel()
        return [s for s in log.steps if s[0] == "changelog"]

    changelogs = asyncio.run(main())
    assert changelogs == [("changelog", [(b"E1", b"{'n': 1}")]), ("changelog", [(b"E1", b"{'n': 2}")])]


def test_back_pressure_and_coalescing():
    async def main():
        log, c = make(max_pending=3, interval=60.0)
        c.writer.open.clear()
        runner = asyncio.ensure_future(c.run())
        s = Stream(log)
        for i in range(4):  # four batches of one event: over max_pending // 2 → a commit starts at once
            evs = events(i)
            c.add({"t": [(i,)]}, {b"E%d" % i: (0, i)}, evs, s)
            faust_batch_end(evs)
        waiter = asyncio.ensure_future(c.wait_room())
        for _ in range(20):
            await asyncio.sleep(0)
        blocked = not waiter.done()  # 4 uncommitted > 3: the agent waits
        c.writer.open.set()
        await asyncio.wait_for(waiter, TIMEOUT)
        await asyncio.wait_for(c.drained(), TIMEOUT)
        runner.cancel()
        return blocked, log.steps, c.commits

    blocked, steps, commits = asyncio.run(main())
    assert blocked
    rows = [s[1] for s in steps if s[0] == "rows"]
    assert sum(r["t"] for r in rows) == 4 and commits <= 2  # coalesced, not one commit per batch
    assert sorted(s[1] for s in steps if s[0] == "ack") == [0, 1, 2, 3]


def test_a_deleted_key_is_a_tombstone_and_collected_records_go_with_the_changelog():
    async def main():
        log, c = make(collect=lambda: [("peer.signals", None, b"town:A", b"{}")])
        c.table.data[b"E9"] = b"old"
        runner = asyncio.ensure_future(c.run())
        c.add({}, {b"E9": (1, None)}, events(5), Stream(log))
        assert c.live(b"E9") == (True, None)
        await asyncio.wait_for(c.drained(), TIMEOUT)
        runner.cancel()
        return log.steps, c.table.data

    steps, data = asyncio.run(main())
    assert ("changelog", [(b"town:A", b"{}"), (b"E9", None)]) in steps and b"E9" not in data


def test_states_are_serialized_in_chunks_and_a_state_reached_mid_commit_is_copied_first():
    async def main():
        log = Log()
        dumped: list[bytes] = []

        def dumps(key, st):
            dumped.append(key)
            return repr(st).encode()

        c = Commit(Writer(log), Bulk(log), Table(), dumps=dumps, chunk=2)
        states = {b"E%d" % i: {"n": i} for i in range(6)}
        c.add({"t": [(1,)]}, {k: (0, st) for k, st in states.items()}, events(1), Stream(log))
        commit = asyncio.ensure_future(c.commit_once())
        for _ in range(1000):  # one step of the loop at a time: stop right after the first chunk
            if dumped:
                break
            await asyncio.sleep(0)
        first_chunk = len(dumped)  # the commit yielded after one chunk: the loop ran this test
        assert c.live(b"E5") == (False, None)  # the agent reaches E5: copied before it changes
        states[b"E5"]["n"] = 99
        states[b"E4"]["n"] = 98  # (an agent always goes through live(); this one did not)
        await asyncio.wait_for(commit, TIMEOUT)
        return first_chunk, dumped, dict(next(s[1] for s in log.steps if s[0] == "changelog"))

    first_chunk, dumped, changelog = asyncio.run(main())
    assert first_chunk == 2 and sorted(dumped) == sorted(b"E%d" % i for i in range(6))  # each once
    assert changelog[b"E5"] == b"{'n': 5}"  # the snapshot's value, not the later change
    assert changelog[b"E4"] == b"{'n': 98}"  # shows the chunks really interleave with the agent


def test_soon_commits_without_waiting_for_the_interval():
    async def main():
        log, c = make(interval=60.0)
        runner = asyncio.ensure_future(c.run())
        first = events(1)
        c.add({"events_sensor": [(1,)]}, {b"E1": (0, "s1")}, first, Stream(log))
        await wait_until(lambda: c.commits == 1, "the first commit (the interval starts after it)")
        c.add({"events_feedback": [(2,)]}, {b"E1": (0, "s2")}, events(2), Stream(log))
        await asyncio.sleep(0.2)
        assert c.commits == 1  # readings wait for the interval (60 s here)
        c.soon()  # a person's action: committed at once
        await wait_until(lambda: c.commits == 2, "the commit asked for")
        runner.cancel()

    asyncio.run(main())


def test_many_changed_states_commit_without_waiting_for_the_interval():
    async def main():
        log, c = make(interval=60.0)
        c.max_dirty = 3
        runner = asyncio.ensure_future(c.run())
        c.add({"events_sensor": [(1,)]}, {b"E1": (0, "s1")}, events(1), Stream(log))
        await wait_until(lambda: c.commits == 1, "the first commit (the interval starts after it)")
        c.add({"events_sensor": [(2,)]}, {b"E1": (0, "s"), b"E2": (0, "s"), b"E3": (0, "s")}, events(2), Stream(log))
        await asyncio.sleep(0.2)
        assert c.commits == 1  # three changed states: within the bound, they wait for the interval
        c.add({"events_sensor": [(3,)]}, {b"E4": (0, "s")}, events(3), Stream(log))
        await wait_until(lambda: c.commits == 2, "the commit the fourth changed state started")
        runner.cancel()

    asyncio.run(main())
