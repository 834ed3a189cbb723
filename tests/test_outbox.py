"""The outbox (streams/runtime/outbox.py) with the commit pipeline, on fakes of ClickHouse and Kafka.

A timer's outputs leave only after the changelog holds the state that decided them; a crash before
that commit sends nothing; a state recovered with records in its outbox sends them; one entity's
later outputs queue behind its timer's; a partition that moved away is left to its new owner.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace as NS

from streams.engine.state import EntityState
from streams.runtime.commit import Commit
from streams.runtime.outbox import Outbox, hold

CHANGELOG = "app-entities-changelog"
ALERTS = NS(get_topic_name=lambda: "alerts.all")
NOTICES = NS(get_topic_name=lambda: "notices")


class Writer:
    def __init__(self, log: list):
        self.log, self.open = log, asyncio.Event()
        self.open.set()

    async def write_now(self, rows):
        await self.open.wait()  # closed: ClickHouse is away
        self.log.append(("rows", sorted(rows)))


class Bulk:
    def __init__(self, log: list):
        self.log = log

    async def send(self, records):
        for topic, _, key, value in records:
            if topic == CHANGELOG:
                self.log.append(("changelog", key, len(EntityState.loads(value).outbox)))
            else:
                self.log.append(("out", topic, key, value))


def make(owned=lambda key: True):
    log: list = []
    states: dict[bytes, EntityState] = {}
    table = NS(changelog_topic=NS(get_topic_name=lambda: CHANGELOG), data={})
    c = Commit(Writer(log), Bulk(log), table, dumps=lambda key, st: st.dumps())

    def load(key):
        pending, st = c.live(key)
        return st if pending else states.setdefault(key, EntityState())

    c.outbox = Outbox(load, owned, lambda key: 0, c.bulk.send, lambda d: c.add({}, d, [], None), c.soon)
    return log, c, states


def run(body):
    async def main():
        log, c, states = make()
        runner = asyncio.ensure_future(c.run())
        try:
            await asyncio.wait_for(body(c, states), 5.0)
            await asyncio.wait_for(c.drained(), 5.0)
        finally:
            runner.cancel()
        return log, c, states

    return asyncio.run(main())


def test_a_timers_outputs_leave_after_the_changelog_holds_them_then_the_outbox_empties():
    async def body(c, states):
        st = states[b"E1"] = EntityState(name="冷库")
        hold(st, [(ALERTS, b"E1", b"rev-1"), (NOTICES, b"E1", b"notice-1")])
        c.add({"events_task": [(1,)]}, {b"E1": (0, st)}, [], None)
        c.soon()

    log, c, states = run(body)
    assert log == [
        ("rows", ["events_task"]),
        ("changelog", b"E1", 2),  # the state with its two outbox records, durable first
        ("out", "alerts.all", b"E1", b"rev-1"),  # then the outputs, in their order
        ("out", "notices", b"E1", b"notice-1"),
        ("changelog", b"E1", 0),  # then the state without them
    ]
    assert states[b"E1"].outbox == [] and c.outbox.sent == 2


def test_nothing_leaves_while_the_commit_cannot_complete():
    async def main():
        log, c, states = make()
        c.writer.open.clear()  # ClickHouse away: the commit cannot pass its rows
        runner = asyncio.ensure_future(c.run())
        st = states[b"E1"] = EntityState()
        hold(st, [(ALERTS, b"E1", b"rev-1")])
        c.add({"events_task": [(1,)]}, {b"E1": (0, st)}, [], None)
        c.soon()
        for _ in range(50):
            await asyncio.sleep(0)
        before = list(log)
        runner.cancel()  # the worker dies here: the decision and its outputs are lost together
        return before

    assert asyncio.run(main()) == []


def test_a_state_recovered_with_records_in_its_outbox_sends_them():
    async def body(c, states):
        st = EntityState.loads(_with_outbox([(ALERTS, b"E2", b"rev-3")]).dumps())  # as read from the changelog
        states[b"E2"] = st
        c.outbox.recover(b"E2")

    log, _, states = run(body)
    assert log == [("out", "alerts.all", b"E2", b"rev-3"), ("changelog", b"E2", 0)]
    assert states[b"E2"].outbox == []


def test_an_entitys_later_outputs_queue_behind_its_timers_and_others_go_at_once():
    st1, st2 = _with_outbox([(ALERTS, b"E1", b"rev-1")]), EntityState()
    box = Outbox(lambda k: st1, lambda k: True, lambda k: 0, None, None, lambda: None)
    sends = [(ALERTS, b"E1", b"rev-2"), (ALERTS, b"E2", b"other"), (ALERTS, None, b"keyless")]
    now = box.behind(sends, {b"E1": st1, b"E2": st2})
    assert now == [(ALERTS, b"E2", b"other"), (ALERTS, None, b"keyless")]
    assert [v for _, _, v in st1.outbox] == [b"rev-1", b"rev-2"]


def test_a_partition_that_moved_away_is_left_to_its_new_owner():
    async def main():
        log, c, states = make(owned=lambda key: False)
        runner = asyncio.ensure_future(c.run())
        st = states[b"E1"] = _with_outbox([(ALERTS, b"E1", b"rev-1")])
        c.add({}, {b"E1": (0, st)}, [], None)
        c.soon()
        await asyncio.wait_for(c.drained(), 5.0)
        runner.cancel()
        return log, st

    log, st = asyncio.run(main())
    assert log == [("changelog", b"E1", 1)] and len(st.outbox) == 1  # the new owner recovers and sends it


def _with_outbox(sends) -> EntityState:
    st = EntityState()
    hold(st, sends)
    return st


def test_a_worker_sends_the_outbox_it_recovers_from_the_changelog_once(pipeline):
    """Real broker and worker: a state whose commit reached the changelog but whose outbox was never sent
    (the worker died in between) has it sent by the next worker, once, and stored again without it."""
    from riskwatch.tools.runner import group_assignment, read_all, wait_for

    p = pipeline
    s = p.settings
    w = p.start_worker()  # creates the changelog topic; then dies as after a commit, before the send
    wait_for(lambda: (g := group_assignment(s)) and all(g.values()), 120, "the worker to hold its partitions")
    w.kill9()
    out, forged = s.topic("alerts.amr"), s.topic("events.registry")
    # the second record is forged: it names an input topic, not one the worker writes
    st = _with_outbox(
        [
            (NS(get_topic_name=lambda: out), b"E-ob1", b'{"revision": 7}'),
            (NS(get_topic_name=lambda: forged), b"E-ob1", b"{}"),
        ]
    )
    changelog = f"{s.app_id}-entities-changelog"
    p.producer.send(changelog, key=b"E-ob1", value=st.dumps(), partition=0)
    p.flush()

    def sent() -> list:
        return [r.value for r in read_all(s, out)]

    def latest_outbox() -> int | None:
        recs = [r for r in read_all(s, changelog) if r.key == b"E-ob1"]
        return len(EntityState.loads(recs[-1].value).outbox) if recs else None

    w.start()
    wait_for(lambda: sent() == [b'{"revision": 7}'], 90, "the recovered outbox to be sent")
    wait_for(lambda: latest_outbox() == 0, 60, "the state to be stored without its outbox")
    w.kill9()  # a restart now finds an empty outbox: nothing is sent again
    w.start()
    wait_for(lambda: w.query("SELECT 1 AS ok"), 60, "the worker to answer again")
    import time

    time.sleep(5)  # a few deadline ticks (lifecycle_tick_seconds)
    assert sent() == [b'{"revision": 7}']
    assert [r.value for r in read_all(s, forged)] == []  # the forged record was not sent
