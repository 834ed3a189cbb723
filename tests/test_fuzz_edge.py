"""Property-based fuzzing of the edge: every ingest validator and the feedback path.

No exception escapes ``Decoder.decode`` or ``Processor.process``; every refused message becomes
a dead letter carrying the original bytes and a reason; valid messages interleaved with garbage
all get through; oversized and deeply nested JSON are refused cheaply.
"""

from __future__ import annotations

import base64
import json
import time

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.rules import load_rules
from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import DATA_DIR
from schemas.events import EVENT_MODELS, DeadLetter
from streams.engine.dispatch import Processor
from streams.engine.identity import kind_of
from streams.engine.ingest import Decoder
from streams.engine.state import EntityState
from tests import factories as F

CAT = load_catalog()
DEC = Decoder(CAT)
PROC = Processor(CAT, load_rules(DATA_DIR / "rules.yaml"))
VALID = {  # as produced: a department's events on its own topic (streams/engine/identity.py)
    "events.registry": lambda: F.registered("E-fz"),
    "events.sensor": lambda: F.sensor("E-fz", 3.0),
    "events.video": lambda: F.video("E-fz"),
    "events.complaint": lambda: F.complaint("E-fz"),
    "events.inspection.amr": lambda: F.inspection("E-fz"),
    "events.feedback.amr": lambda: F.feedback("E-fz", "abc", "amr"),
    "events.task.amr": lambda: F.task("E-fz"),
    "events.device": lambda: F.device("E-fz", unit="MPa", rated_pressure_mpa=1.0),
    "events.credit": lambda: F._base("E-fz", kind="serious_list", listed_on="2026-03-01", reason="提供虚假材料"),
}
TOPICS = sorted(VALID)
assert {kind_of(t) for t in TOPICS} == set(EVENT_MODELS)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _mutations(valid: dict):
    keys = sorted(valid)
    return st.one_of(
        st.binary(max_size=300).map(lambda b: ("raw", b)),
        st.tuples(st.sampled_from(keys), json_values).map(lambda kv: ("set", kv)),
        st.sampled_from(keys).map(lambda k: ("drop", k)),
        st.tuples(st.text(min_size=1, max_size=8), json_values).map(lambda kv: ("extra", kv)),
    )


def _apply(valid: dict, m) -> bytes:
    kind, arg = m
    if kind == "raw":
        return arg
    d = dict(valid)
    if kind == "set":
        d[arg[0]] = arg[1]
    elif kind == "drop":
        d.pop(arg, None)
    else:
        d[arg[0] if arg[0] not in d else arg[0] + "_x"] = arg[1]
    return json.dumps(d, ensure_ascii=False).encode()  # stdlib: also writes big ints and NaN/Infinity


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), data=st.data())
def test_no_exception_escapes_and_every_refusal_keeps_bytes_and_reason(topic, data):
    valid = VALID[topic]()
    raw = _apply(valid, data.draw(_mutations(valid)))
    out = DEC.decode(topic, 1, 7, b"E-fz", raw)
    if isinstance(out, DeadLetter):
        assert base64.b64decode(out.payload_b64) == raw
        assert out.error.startswith(f"{topic}[1]@7: ") and len(out.error) > len(f"{topic}[1]@7: ")
    else:  # it validated: the processor must take it without raising
        PROC.process(out, EntityState(), (topic, 1, 7))


@settings(max_examples=50, deadline=None)
@given(garbage=st.lists(st.binary(max_size=200), min_size=1, max_size=30))
def test_valid_messages_interleaved_with_garbage_all_get_through(garbage):
    st_ = EntityState()
    ok = 0
    for i, g in enumerate(garbage):
        assert isinstance(DEC.decode("events.sensor", 0, 2 * i, b"E-fz", g), DeadLetter) or g.strip().startswith(b"{")
        ev = DEC.decode("events.sensor", 0, 2 * i + 1, b"E-fz", orjson.dumps(F.sensor("E-fz", 3.0)))
        assert not isinstance(ev, DeadLetter)
        out = PROC.process(ev, st_, ("events.sensor", 0, 2 * i + 1))
        ok += not out.rejected
    assert ok == len(garbage)


def test_oversized_and_deeply_nested_are_refused_cheaply():
    huge = b'{"a": "' + b"x" * 10_000_000 + b'"}'
    nested = b"[" * 100_000 + b"]" * 100_000
    for raw, reason in ((huge, "exceeds the limit"), (nested, "exceeds the limit")):
        t0 = time.perf_counter()
        out = DEC.decode("events.sensor", 0, 0, b"k", raw)
        assert isinstance(out, DeadLetter) and reason in out.error
        assert time.perf_counter() - t0 < 0.5
    small_nested = b"[" * 1000 + b"]" * 1000
    out = DEC.decode("events.sensor", 0, 0, b"k", small_nested)
    assert isinstance(out, DeadLetter) and "nested deeper" in out.error


def test_feedback_from_a_non_receiver_is_refused_with_reason():
    st_ = EntityState()
    reg = DEC.decode("events.registry", 0, 0, b"E-fb", orjson.dumps(F.registered("E-fb", kind="retail_pharmacy")))
    PROC.process(reg, st_, ("events.registry", 0, 0))
    alert = PROC.process(
        DEC.decode("events.complaint", 0, 1, b"E-fb", orjson.dumps(F.complaint("E-fb", "counterfeit_drug"))),
        st_,
        ("events.complaint", 0, 1),
    ).alerts[0]
    assert alert.departments == ["amr", "medinsure"]
    bad = DEC.decode(
        "events.feedback.police", 0, 2, b"E-fb", orjson.dumps(F.feedback("E-fb", alert.alert_id, "police"))
    )
    out = PROC.process(bad, st_, ("events.feedback.police", 0, 2))
    assert out.rejected and "police" in out.rejected and "not a receiver" in out.rejected
    good = DEC.decode(
        "events.feedback.medinsure", 0, 3, b"E-fb", orjson.dumps(F.feedback("E-fb", alert.alert_id, "medinsure"))
    )
    out = PROC.process(good, st_, ("events.feedback.medinsure", 0, 3))
    assert not out.rejected and out.alerts[0].status == "acknowledged"
