"""Property and budget tests of the production sensor detector and the device detector."""

import math
import pickle
import random
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.device import DeviceAnomaly
from detectors.sensor import SensorAnomaly

T0 = 1_700_000_000.0

weird_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 1e-308, float("nan"), float("inf"), -float("inf"), 42.0]),
)
weird_times = st.one_of(
    st.floats(min_value=T0 - 1e6, max_value=T0 + 1e6),
    st.sampled_from([T0, T0, T0 - 60.0, float("nan"), float("inf"), -float("inf"), 0.0, -1e12]),
)


def _in_unit(s):
    return isinstance(s, float) and 0.0 <= s <= 1.0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(weird_floats, weird_times), min_size=1, max_size=300))
def test_any_input_never_raises_and_scores_in_unit_interval(events):
    det = SensorAnomaly()
    for x, t in events:
        assert _in_unit(det.score_one(x, t))
        s, a = det.update(x, t)
        assert _in_unit(s)
        assert isinstance(a, bool)
        det.learn_one(x, t)


@settings(max_examples=50, deadline=None)
@given(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.lists(weird_floats, min_size=1, max_size=30),
)
def test_constant_stream_then_weird_values(c, tail):
    det = SensorAnomaly()
    alerts = 0
    for i in range(400):
        s, a = det.update(c, T0 + 60 * i)
        assert _in_unit(s)
        alerts += a
    assert alerts == 0  # a constant stream is never anomalous
    for k, x in enumerate(tail):
        s, _ = det.update(x, T0 + 60 * (400 + k))
        assert _in_unit(s)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(weird_floats, weird_floats, weird_times), min_size=1, max_size=100))
def test_device_never_raises(events):
    dev = DeviceAnomaly(channels=["a", "b"])
    for a, b, t in events:
        s, al = dev.update({"a": a, "b": b}, t)
        assert _in_unit(s)
    assert _in_unit(dev.score_one({"a": 1.0}, T0))  # missing channel
    assert _in_unit(dev.score_one({}, T0))


def test_duplicate_and_out_of_order_timestamps():
    det = SensorAnomaly()
    rng = random.Random(1)
    t = T0
    for _i in range(3000):
        t += rng.choice([300.0, 0.0, -300.0, 300.0, 86400.0])
        s, _ = det.update(20 + rng.gauss(0, 1), t)
        assert _in_unit(s)


def test_no_alert_during_warmup_and_spike_detected_after():
    det = SensorAnomaly()
    rng = random.Random(7)
    for i in range(det.warmup):
        x = 1e9 if i == 50 else rng.gauss(5, 0.1)
        _, a = det.update(x, T0 + 300 * i)
        assert not a
    for i in range(det.warmup, 2000):
        det.update(rng.gauss(5, 0.1), T0 + 300 * i)
    s, a = det.update(50.0, T0 + 300 * 2000)
    assert a and s > det.threshold


def test_spike_does_not_poison_baseline():
    det = SensorAnomaly()
    rng = random.Random(3)
    for i in range(3000):
        det.update(rng.gauss(0, 1), T0 + 60 * i)
    before = det.score_one(6.0, T0 + 60 * 3000)
    for k in range(5):  # a burst of huge outliers
        det.update(1e12, T0 + 60 * (3000 + k))
    after = det.score_one(6.0, T0 + 60 * 3006)
    assert abs(det.slow) < 10 and abs(after - before) < 0.5


def test_scores_are_not_saturated():
    det = SensorAnomaly()
    rng = random.Random(5)
    for i in range(3000):
        det.update(rng.gauss(0, 1), T0 + 60 * i)
    s = [det.score_one(v, T0 + 60 * 3000) for v in (10.0, 100.0, 1e4, 1e8)]
    assert all(a < b for a, b in pairwise(s)), s
    assert s[-1] < 1.0


def test_state_size_after_long_run():
    det = SensorAnomaly()
    rng = random.Random(11)
    for i in range(20_000):
        x = 10 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1) + (30 if i % 5000 == 0 else 0)
        det.update(x, T0 + 300 * i)
    size = len(pickle.dumps(det))
    assert size <= 2048, size
    clone = pickle.loads(pickle.dumps(det))
    assert clone.score_one(3.0, T0 + 300 * 20_000) == det.score_one(3.0, T0 + 300 * 20_000)
