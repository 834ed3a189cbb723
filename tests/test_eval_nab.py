"""NAB scorer rules (hand-built examples) and a small slice of the NAB evaluation."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskwatch.tools.evals import nab

NAB = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nab"
STD = nab.STANDARD


def S(x):  # NAB's scaled sigmoid, written out independently
    return -1.0 if x >= 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


# 100 rows: probationary = min(floor(15), 750) = 15 rows; one window at rows [40, 49] (width 10)
N, L, R = 100, 40, 49
WINDOWS = [(L, R)]


def _scores(*ones):
    s = np.zeros(N)
    s[list(ones)] = 1.0
    return s


def _norm(scores):
    f = nab.sweep_file("f", scores, WINDOWS)
    return nab.corpus_score([f], 0.5)


def test_scaled_sigmoid_values():
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(3.0) == -1.0
    assert nab.probationary_length(100) == 15 and nab.probationary_length(10_000) == 750


def test_perfect_detector_scores_100_and_null_scores_0():
    assert _norm(_scores(L))["score"] == pytest.approx(100.0)
    res = _norm(_scores())
    assert res["raw"] == -1.0 and res["score"] == pytest.approx(0.0)


def test_detection_late_in_window_only_first_counts():
    i = 45
    res = _norm(_scores(i, 47, 49))
    expected_tp = S(-(R - i + 1) / 10) / S(-1.0)
    assert res["raw"] == pytest.approx(expected_tp)
    assert res["score"] == pytest.approx(100 * (expected_tp + 1) / 2)


def test_false_positives_before_and_after_window():
    # FP at row 20 (after probation, no preceding window): -fp weight; window missed: -1
    res = _norm(_scores(20))
    assert res["raw"] == pytest.approx(-1.0 - STD["fpWeight"])
    assert res["score"] == pytest.approx(100 * (-STD["fpWeight"]) / 2)
    # FP at row 55 after the window: scaled by the distance to the window's right edge
    res = _norm(_scores(L, 55))
    expected = 1.0 + STD["fpWeight"] * S(abs(R - 55) / (10 - 1))
    assert res["raw"] == pytest.approx(expected)
    # detections inside the probationary period are ignored
    assert _norm(_scores(3, L))["score"] == pytest.approx(100.0)


def test_best_threshold_sweep_matches_direct_scoring():
    rng = np.random.default_rng(0)
    files = []
    for k in range(3):
        s = rng.random(N)
        files.append(nab.sweep_file(f"f{k}", s, WINDOWS))
    best = nab.best_threshold(files)
    direct = max(nab.corpus_score(files, thr)["raw"] for thr in np.unique(np.concatenate([f.scores for f in files])))
    assert best["raw"] == pytest.approx(max(direct, best["null"]))


@pytest.mark.skipif(not (NAB / "data").is_dir(), reason="NAB data not available")
def test_run_cli_on_a_slice(tmp_path, capsys):
    rels = ["realKnownCause/machine_temperature_system_failure.csv", "artificialWithAnomaly/art_daily_jumpsup.csv"]
    data = tmp_path / "data"
    for rel in rels:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / rel, data / rel)
    all_labels = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps({r: all_labels[r] for r in rels}))

    # a device file (two numeric channels) goes through the device detector
    dev = pd.read_csv(data / rels[1]).iloc[:600]
    dev["value2"] = dev["value"] * 2 + 1
    (data / "device").mkdir()
    dev.to_csv(data / "device" / "boiler.csv", index=False)

    out = tmp_path / "out"
    res = nab.run_cli(data, out, None)
    printed = capsys.readouterr().out
    assert "fixed production alert" in printed
    for rel in rels + ["device/boiler.csv"]:
        df = pd.read_csv(out / rel)
        assert {"timestamp", "anomaly_score", "alert"} <= set(df.columns)
        assert df["anomaly_score"].between(0, 1).all() and set(df["alert"].unique()) <= {0, 1}
    assert "value2" in pd.read_csv(out / "device" / "boiler.csv").columns
    for key in ("standard_alert", "standard_best_threshold"):
        assert isinstance(res[key], float) and not math.isnan(res[key]) and res[key] <= 100.0

    # the machine-temperature failure is caught: at least one alert inside a labelled window
    df = pd.read_csv(out / rels[0])
    wins = nab.window_indices(df["timestamp"], all_labels[rels[0]])
    alerts = np.flatnonzero(df["alert"].to_numpy() == 1)
    assert any(lo <= i <= hi for lo, hi in wins for i in alerts)


def test_run_cli_without_labels(tmp_path, capsys):
    data = tmp_path / "d" / "cat"
    data.mkdir(parents=True)
    ts = pd.date_range("2024-01-01", periods=300, freq="5min")
    pd.DataFrame({"timestamp": ts, "value": np.sin(np.arange(300) / 10)}).to_csv(data / "x.csv", index=False)
    res = nab.run_cli(tmp_path / "d", tmp_path / "o", tmp_path / "missing.json")
    assert res["scoring"] == "skipped" and "skipped" in capsys.readouterr().out
    assert (tmp_path / "o" / "cat" / "x.csv").is_file()


def test_detect_frame_passes_unix_seconds():
    """The detector sees real unix seconds whatever pandas' datetime resolution (us / ns)."""
    from detectors.sensor import SensorAnomaly

    ts = pd.date_range("2024-01-01", periods=400, freq="1h")
    x = np.sin(np.arange(400) * 2 * np.pi / 24) + (np.arange(400) == 300) * 5.0
    df = pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": x})
    scores, _ = nab.detect_frame(df)
    det = SensorAnomaly()
    t0 = pd.Timestamp("2024-01-01").timestamp()
    expected = [det.update(float(v), t0 + 3600.0 * i)[0] for i, v in enumerate(x)]
    assert np.allclose(scores, expected)
