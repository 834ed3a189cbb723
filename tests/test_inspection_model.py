"""Unit tests of the online inspection-outcome model and the per-entity history state."""

import pickle
import random

import numpy as np
import pandas as pd

from detectors.inspection import ComplaintGrid, EntityHistory, InspectionOutcomeModel


def _auc(scores, labels) -> float:
    r = pd.Series(scores).rank().to_numpy()
    y = np.asarray(labels, bool)
    n1, n0 = y.sum(), (~y).sum()
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_model_learns_a_feature_that_determines_the_outcome():
    rng = random.Random(1)
    model = InspectionOutcomeModel()
    scores, labels = [], []
    for t in range(3000):
        h = EntityHistory()
        risky = rng.random() < 0.3
        if risky:
            h.on_inspection(t - 100.0, critical=rng.randint(1, 3), serious=1)
        else:
            h.on_inspection(t - 100.0, critical=0, serious=0)
        h.on_signal(t - 5.0, "temperature", rng.randint(0, 3))  # noise
        x = h.features(float(t), {"inspector": rng.choice(["a", "b", "c"])})
        y = rng.random() < (0.7 if risky else 0.05)
        if t >= 2000:
            scores.append(model.predict_proba_one(x))
            labels.append(y)
        model.learn_one(x, y)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert _auc(scores, labels) > 0.8


def test_model_learns_a_categorical_via_target_encoding():
    rng = random.Random(2)
    model = InspectionOutcomeModel()
    scores, labels = [], []
    for t in range(2000):
        team = rng.choice(["strict", "lenient", "mid"])
        x = {"noise": rng.random(), "inspector": team}
        y = rng.random() < {"strict": 0.5, "lenient": 0.02, "mid": 0.15}[team]
        if t >= 1500:
            scores.append(model.score_one(x))
            labels.append(y)
        model.learn_one(x, y)
    assert _auc(scores, labels) > 0.75


def test_untrained_model_returns_a_probability():
    p = InspectionOutcomeModel().predict_proba_one(EntityHistory().features(0.0))
    assert 0.0 <= p <= 1.0


def test_entity_history_pickles_small_after_many_events():
    rng = random.Random(3)
    h = EntityHistory()
    h.on_licence(
        0.0,
        kind="Restaurant",
        risk="Risk 1 (High)",
        licence_start=-5000.0,
        flags=("tavern", "tobacco", "caterers_liquor_license", "not_a_flag"),
        attrs={"zip": "60609", "ward": "3", "name": "X" * 100, "a": 1, "b": 2, "c": 3, "d": 4},
    )
    for t in range(5000):
        e = rng.random()
        if e < 0.3:
            h.on_complaint(float(t))
        elif e < 0.8:
            h.on_signal(float(t), f"kind{rng.randint(0, 50)}", rng.randint(1, 5))
        else:
            h.on_inspection(float(t), critical=rng.randint(0, 2), serious=rng.randint(0, 2), minor=3)
    blob = pickle.dumps(h)
    assert len(blob) <= 2048
    assert len(h.signals) <= EntityHistory.MAX_SIGNAL_KINDS
    assert len(h.attrs) <= EntityHistory.MAX_ATTRS
    h2 = pickle.loads(blob)
    assert h2.features(5001.0) == h.features(5001.0)


def test_history_features_follow_events():
    h = EntityHistory()
    f0 = h.features(100.0)
    assert f0["first_record"] == 1.0 and f0["past_critical"] == 0.0
    h.on_inspection(100.0, critical=2, serious=0, failed=True)
    f1 = h.features(465.0)
    assert f1["first_record"] == 0.0 and f1["past_critical"] == 1.0
    assert abs(f1["days_since_last"] - 1.0) < 1e-9
    h.on_complaint(460.0)
    h.on_complaint(461.0)
    assert h.features(465.0)["complaints_30d"] > h.features(520.0)["complaints_30d"] > 0.0


def test_complaint_grid_counts_recent_nearby():
    g = ComplaintGrid(cell_km=0.5)
    for t in range(100):
        g.add(41.80, -87.60, float(t))
    g.add(41.90, -87.70, 99.0)
    assert g.count(41.80, -87.60, 99.0, 30.0) == 30
    assert g.count(41.80, -87.60, 99.0, 90.0) == 90
    assert g.count(41.85, -87.65, 99.0, 90.0) == 0
    assert g.count(float("nan"), -87.6, 99.0, 30.0) == 0
