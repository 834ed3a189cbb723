"""Entity state on the changelog: a data-only, versioned format; pickles of older versions migrated
as data; a malicious pickle refused without running; unreadable records skipped by the worker.

``tests/data/legacy_states.json`` holds real states pickled by two older versions (the engine's
current module names, and ``streams.state`` before the engine/runtime split), each with what the
old code said about it (detector scores, alert and task fields, ring, windows).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import pickle
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

from streams.engine.codec import HEADER, StateFormatError
from streams.engine.legacy_state import LegacyStateError, load_pickled
from streams.engine.state import EntityState
from streams.runtime.store import StateCache

LEGACY = json.loads((Path(__file__).parent / "data" / "legacy_states.json").read_text())
CASES = [(layout, key, case) for layout, states in LEGACY.items() for key, case in states.items()]


def summary(s: EntityState) -> dict:
    """What the fixture's generator recorded with the old code (same fields, same order)."""
    t = s.last_seen
    return {
        "name": s.name,
        "last_seen": s.last_seen,
        "recent": list(s.recent),
        "offsets": s.offsets,
        "sensors": {k: d.score_one(d.avg + 1.0, t) for k, d in s.sensors.items()},
        "alerts": {
            k: [
                a.alert_id,
                a.lc.status,
                a.lc.revision,
                len(a.lc.transitions),
                a.evidence.hash if a.evidence else None,
                a.evidence.final if a.evidence else None,
                len(a.evidence.after) if a.evidence else 0,
            ]
            for k, a in s.alerts.items()
        },
        "tasks": {k: [t.department, t.due] for k, t in s.tasks.items()},
        "n_insp": s.history.n_insp,
        "risk": s.risk.signals,
        "rates": {k: r.expo for k, r in s.rates.items()},
        "readings": {k: list(a) for k, a in s.readings.items()},
        "complaints": len(s.complaints),
        "videos": len(s.videos),
        "unanchored": {k: list(v) for k, v in s.unanchored.items()},
    }


def _json(x):
    return json.loads(json.dumps(x))


@pytest.mark.parametrize(("layout", "key", "case"), CASES, ids=[f"{c['shape']}-{k}" for _, k, c in CASES])
def test_pickled_state_of_an_older_version_migrates(layout, key, case):
    raw = base64.b64decode(case["pickle"])
    assert raw[:1] == b"\x80"  # a pickle
    st = EntityState.loads(raw)
    assert _json(summary(st)) == case["expect"]
    new = st.dumps()
    assert new.startswith(HEADER) and b"\x80\x05" not in new[:4]
    again = EntityState.loads(new)
    assert _json(summary(again)) == case["expect"]
    assert again.to_data() == st.to_data()  # stable: the next write is the same bytes
    assert again.dumps() == new


def test_every_field_round_trips():
    for _, _, case in CASES:
        st = EntityState.loads(base64.b64decode(case["pickle"]))
        back = EntityState.loads(st.dumps())
        for name in EntityState.__dataclass_fields__:
            if name.startswith("_") or name in ("history", "risk", "sensors", "rates"):
                continue
            assert getattr(back, name) == getattr(st, name), name
        assert back.history.to_data() == st.history.to_data() and back.risk.to_data() == st.risk.to_data()
        assert {k: d.to_data() for k, d in back.sensors.items()} == {k: d.to_data() for k, d in st.sensors.items()}


def test_only_changed_sensor_detectors_are_repacked():
    st = next(EntityState.loads(base64.b64decode(c["pickle"])) for _, _, c in CASES if c["shape"] == "sensors")
    st.dumps()
    blobs = dict(st._blobs)
    k = next(iter(st.sensors))
    st.sensors[k].learn_one(99.0, st.last_seen + 60)
    st.dumps()
    assert st._blobs[k] is blobs[k]  # not marked: not re-packed
    st.touch_sensor(k)
    st.dumps()
    assert st._blobs[k] != blobs[k] and all(st._blobs[o] is blobs[o] for o in blobs if o != k)


class _System:
    def __init__(self, marker: Path):
        self.cmd = f"touch {marker}"

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')",))


def _as_entity_state(state: dict) -> bytes:
    """A pickle shaped like the old ones: NEWOBJ EntityState + BUILD with ``state``."""
    import copyreg

    class Old(pickle.Pickler):
        def reducer_override(self, obj):
            if type(obj) is EntityState:
                return (copyreg.__newobj__, (EntityState,), state)
            return NotImplemented

    buf = io.BytesIO()
    Old(buf, protocol=5).dump(EntityState.__new__(EntityState))
    return buf.getvalue()


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path, caplog):
    marker = tmp_path / "pwned"
    attacks = [
        pickle.dumps(_System(marker), protocol=5),
        pickle.dumps(_System(marker), protocol=2),
        pickle.dumps(_Eval(), protocol=4),
        # nested: a state whose sensor detector blob is the attack (the old __setstate__ unpickled it)
        _as_entity_state({"name": "x", "sensors": {"d:c": pickle.dumps(_System(marker), protocol=5)}}),
        # an allowed class wrapping the attack in its state
        _as_entity_state({"name": "x", "plans": [_System(marker)]}),
    ]
    for raw in attacks:
        with pytest.raises(StateFormatError, match="refused|unexpected"):
            EntityState.loads(raw)
        with pytest.raises(LegacyStateError):
            load_pickled(raw)
    assert not marker.exists()
    # the worker's store: skipped with a log line, a fresh state, nothing run
    table = type("T", (), {"data": {b"E1": attacks[0]}})()
    cache = StateCache(table, max_entries=10)
    with caplog.at_level(logging.ERROR, logger="streams.runtime.store"):
        assert cache.load(b"E1").name == "" and cache.unreadable == 1
    assert "posix.system is not a state class" in caplog.text and "acls.yaml" in caplog.text
    assert not marker.exists()


def test_restricted_unpickler_answers_stand_ins_not_the_classes():
    from streams.engine.legacy_state import RestrictedUnpickler, _Record

    raw = pickle.dumps(EntityState(name="x"), protocol=5)  # pickles to_data() now: a dict inside
    obj = RestrictedUnpickler(io.BytesIO(raw)).load()
    assert isinstance(obj, _Record) and obj.kind == "EntityState" and obj.state["name"] == "x"
    assert EntityState.loads(raw).name == "x"  # and migrates like an old pickle


def test_old_state_without_newer_fields_starts_them_empty():
    raw = _as_entity_state({"name": "x", "recent": b"", "recent_at": b""})
    st = EntityState.loads(raw)
    assert st.name == "x" and st.rates == {} and st.risk.signals == {} and st.history.n_insp == 0
    assert EntityState.loads(HEADER + msgpack.packb({"name": "y"})).name == "y"  # data: the same rule


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"RW\x09" + msgpack.packb({}), "format 9 is not known"),
        (b"RW", "format -1"),
        (HEADER + b"\xc1", "malformed"),
        (HEADER + msgpack.packb([1, 2]), "not a dict"),
        (HEADER + msgpack.packb({"name": 5}), "expected str"),
        (HEADER + msgpack.packb({"sensors": {"d:c": [1, 2, 3]}}), "sensor detector state"),
        (HEADER + msgpack.packb({"recent": b"\x00" * 8}), "differ in length"),
        (HEADER + msgpack.packb({"alerts": {"f": {"lc": {}}}}), "malformed"),
        (b"\x80\x05garbage", "malformed pickle"),
        (b"{}", "not an entity state"),
    ],
)
def test_unreadable_bytes_raise_one_error(raw, match):
    with pytest.raises(StateFormatError, match=match):
        EntityState.loads(raw)


@settings(max_examples=300, deadline=None)
@given(st_.binary(max_size=200), st_.sampled_from([b"", HEADER, b"\x80\x05", b"\x80\x02"]))
def test_any_bytes_read_or_raise_the_one_error(tail, head):
    with contextlib.suppress(StateFormatError):
        EntityState.loads(head + tail)


def test_a_mutated_real_state_reads_or_raises_the_one_error():
    raw = EntityState.loads(base64.b64decode(CASES[0][2]["pickle"])).dumps()
    for i in range(len(HEADER), len(raw), 7):
        for b in (0x00, 0xFF, 0xC1, 0x90):
            with contextlib.suppress(StateFormatError):
                EntityState.loads(raw[:i] + bytes([b]) + raw[i + 1 :])


def test_migrated_state_is_written_back_in_the_new_format():
    raw = base64.b64decode(CASES[0][2]["pickle"])
    table = type("T", (), {"data": {b"E": raw}})()
    cache = StateCache(table, max_entries=10)
    st = cache.load(b"E")
    new = cache.store(b"E", st)  # the next commit of the entity
    cache.written({b"E": (0, new)}, {})
    assert table.data[b"E"].startswith(HEADER)


def test_only_the_worker_principal_may_write_the_changelogs():
    import importlib.util
    import sys

    import yaml

    root = Path(__file__).parent.parent
    spec = importlib.util.spec_from_file_location("apply_acls", root / "deploy/kafka/apply_acls.py")
    acls = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, acls)  # dataclasses look their module up
    spec.loader.exec_module(sys.modules[spec.name])
    acls = sys.modules[spec.name]
    plan = acls.plan(root / "deploy/kafka/acls.yaml")
    block = yaml.safe_load((root / "deploy/kafka/acls.yaml").read_text())["changelogs"]
    assert "riskwatch-entities-changelog" in block["topics"]

    def matches(b, topic):
        return b.resource == "topic" and (b.name == topic if b.pattern == "literal" else topic.startswith(b.name))

    for topic in block["topics"]:
        writers = {b.user for b in plan.bindings if matches(b, topic) and b.operation in ("write", "all")}
        assert writers == {block["writer"]}, (topic, writers)


def test_peer_rates_on_their_changelog_are_data_and_old_pickles_migrate(tmp_path):
    from detectors.rates import PeerRates

    pr = PeerRates()
    pr.learn_one("town:x", 0.0, entities=40)
    for h in range(30):
        pr.learn_one("town:x", h * 3600.0, n=2)
    pr.notified_at = 7.0
    old = pickle.dumps(pr, protocol=5)  # what the old PeerRates.dumps wrote
    for raw in (old, pr.dumps()):
        back = PeerRates.loads(raw)
        assert back.prior("town:x") == pr.prior("town:x") and back.notified_at == 7.0
        assert back.score_one("town:x", 31 * 3600.0) == pr.score_one("town:x", 31 * 3600.0)
    assert pr.dumps().startswith(b"RW\x01")
    marker = tmp_path / "pwned"
    for raw in (pickle.dumps(_System(marker)), b"RW\x01\xc1", b"RW\x09", b"junk"):
        with pytest.raises(ValueError):
            PeerRates.loads(raw)
    assert not marker.exists()


def test_a_format_1_state_reads_with_no_devices():
    """Format 2 added the entity's devices: a state written as format 1 still reads, with none."""
    raw = b"RW\x01" + msgpack.packb({"name": "x"})
    st = EntityState.loads(raw)
    assert st.name == "x" and st.devices == {}
    assert st.dumps()[:3] == b"RW\x04"
