"""NAB (Numenta Anomaly Benchmark) evaluation of the production sensor detector.

Two parts:

* a re-implementation of NAB's scoring rules (``nab/sweeper.py`` and the
  normalisation in ``nab/runner.py`` of numenta/NAB v1.1): anomaly windows,
  probationary period, scaled-sigmoid rewards, application-profile weights,
  corpus-wide threshold sweep and ``100 * (raw - null) / (perfect - null)``;
* ``run_cli``: replays every ``<category>/<name>.csv`` through the SAME detector
  code and default config as the streaming pipeline (one pass, no per-file
  parameters), writes ``anomaly_score`` and ``alert`` next to the input
  columns, and prints the NAB standard-profile score for the fixed production
  ``alert`` decision and for the best single threshold on ``anomaly_score``.

Scoring rules, as in NAB:

* rows before ``min(floor(0.15 * n), 0.15 * 5000)`` are the probationary
  period and are not scored at all (nor are the windows' rows inside it);
* a detection (``score >= threshold``) inside a window at row ``i`` is worth
  ``tp * S(-(right - i + 1) / width) / S(-1)`` where ``S(x) = 2*sigmoid(-5x) - 1``
  (``S(x) = -1`` for ``x >= 3``); only the best (= earliest) detection of a
  window counts; a window without detection costs ``-fn``;
* a detection outside windows costs ``fp * S(|prev_right - i| / (prev_width - 1))``
  relative to the nearest preceding window, or ``-fp`` if there is none;
* normalised score ``100 * (raw - null) / (perfect - null)`` with raw and null
  summed over the files, ``null`` = the no-detection score and
  ``perfect = tp * number_of_windows``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0, "tnWeight": 1.0},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fpWeight": 0.22, "fnWeight": 1.0, "tnWeight": 1.0},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 2.0, "tnWeight": 1.0},
}
STANDARD = PROFILES["standard"]
PROBATION_PERCENT = 0.15


# --------------------------------------------------------------------------- rules


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def scaled_sigmoid(relative_position: float) -> float:
    """NAB's reward curve: +0.987 at -1 (window start), 0 at 0, -1 from 3 on."""
    if relative_position >= 3.0:
        return -1.0
    return 2.0 * sigmoid(-5.0 * relative_position) - 1.0


def probationary_length(n_rows: int, probation_percent: float = PROBATION_PERCENT) -> float:
    return min(math.floor(probation_percent * n_rows), probation_percent * 5000)


@dataclass(frozen=True)
class ScoredFile:
    """Per-row NAB bookkeeping of one file (probationary rows removed).

    ``window`` is -1 outside windows, else the window's index in the file;
    ``sweep`` is the row's weighted contribution if it is a detection.
    """

    name: str
    scores: np.ndarray
    sweep: np.ndarray
    window: np.ndarray
    n_windows: int  # windows that have at least one scorable row
    n_labelled: int  # windows listed in the labels (NAB's "perfect" counts these)


def window_indices(timestamps: pd.Series, windows: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    """Row index ranges ``[left, right]`` of the label windows (inclusive)."""
    ts = pd.to_datetime(timestamps).to_numpy()
    out = []
    for start, end in windows:
        lo = int(np.searchsorted(ts, np.datetime64(pd.Timestamp(start)), side="left"))
        hi = int(np.searchsorted(ts, np.datetime64(pd.Timestamp(end)), side="right")) - 1
        if hi >= lo:
            out.append((lo, min(hi, len(ts) - 1)))
    return out


def sweep_file(
    name: str,
    scores: Sequence[float] | np.ndarray,
    windows: Sequence[tuple[int, int]],
    cost: dict[str, float] = STANDARD,
    probation_percent: float = PROBATION_PERCENT,
) -> ScoredFile:
    """NAB ``Sweeper.calcSweepScore``: weighted score of each row as a detection."""
    n = len(scores)
    max_tp = scaled_sigmoid(-1.0)
    prob_len = probationary_length(n, probation_percent)
    sweep = np.empty(n, dtype=float)
    win = np.full(n, -1, dtype=np.int64)
    wins = sorted(windows)
    k = 0
    cur = None  # (index, left, right)
    prev_right: int | None = None
    prev_width: float | None = None
    for i in range(n):
        if cur is None and k < len(wins) and i == wins[k][0]:
            cur = (k, wins[k][0], wins[k][1])
            k += 1
        if cur is not None:
            width = float(cur[2] - cur[1] + 1)
            pos = -(cur[2] - i + 1) / width
            sweep[i] = scaled_sigmoid(pos) * cost["tpWeight"] / max_tp
            win[i] = cur[0]
        else:
            if prev_right is None or prev_width is None:
                pos_past = 3.0
            else:
                pos_past = abs(prev_right - i) / float(prev_width - 1) if prev_width > 1 else 3.0
            sweep[i] = scaled_sigmoid(pos_past) * cost["fpWeight"]
        if cur is not None and i == cur[2]:
            prev_right = i
            prev_width = float(cur[2] - cur[1] + 1)
            cur = None
    start = int(math.ceil(prob_len)) if prob_len > 0 else 0
    keep = np.arange(n) >= start
    s = np.nan_to_num(np.asarray(scores, dtype=float), nan=0.0)
    w = win[keep]
    return ScoredFile(
        name=name,
        scores=s[keep],
        sweep=sweep[keep],
        window=w,
        n_windows=len(set(w[w >= 0].tolist())),
        n_labelled=len(windows),
    )


def score_at_threshold(f: ScoredFile, threshold: float, cost: dict[str, float] = STANDARD) -> float:
    """Raw NAB score of one file when rows with ``score >= threshold`` are detections."""
    det = f.scores >= threshold
    total = float(f.sweep[det & (f.window < 0)].sum())
    for w in set(f.window[f.window >= 0].tolist()):
        m = det & (f.window == w)
        total += float(f.sweep[m].max()) if m.any() else -cost["fnWeight"]
    return total


def null_score(files: Iterable[ScoredFile], cost: dict[str, float] = STANDARD) -> float:
    return -cost["fnWeight"] * sum(f.n_windows for f in files)


def perfect_score(files: Iterable[ScoredFile], cost: dict[str, float] = STANDARD) -> float:
    return cost["tpWeight"] * sum(f.n_labelled for f in files)


def normalise(raw: float, null: float, perfect: float) -> float:
    if perfect == null:
        return float("nan")
    return 100.0 * (raw - null) / (perfect - null)


def corpus_score(files: Sequence[ScoredFile], threshold: float, cost: dict[str, float] = STANDARD) -> dict:
    raw = sum(score_at_threshold(f, threshold, cost) for f in files)
    null, perfect = null_score(files, cost), perfect_score(files, cost)
    return {
        "raw": raw,
        "null": null,
        "perfect": perfect,
        "score": normalise(raw, null, perfect),
        "threshold": threshold,
    }


def best_threshold(files: Sequence[ScoredFile], cost: dict[str, float] = STANDARD) -> dict:
    """NAB's threshold optimisation: one threshold for the whole corpus.

    Sweeps every distinct score from the top down (``Sweeper.calcScoreByThreshold``
    summed over files) and keeps the best total.
    """
    scores = np.concatenate([f.scores for f in files]) if files else np.empty(0)
    sweep = np.concatenate([f.sweep for f in files]) if files else np.empty(0)
    wid = (
        np.concatenate([np.where(f.window >= 0, f.window + 100000 * j, -1) for j, f in enumerate(files)])
        if files
        else np.empty(0, dtype=np.int64)
    )
    order = np.argsort(-scores, kind="stable")
    null, perfect = null_score(files, cost), perfect_score(files, cost)
    best_raw, best_thr = null, 1.1  # threshold above every score: nothing detected
    window_best: dict[int, float] = {}
    raw = null
    s_sorted = scores[order]
    for pos, idx in enumerate(order):
        w = int(wid[idx])
        if w < 0:
            raw += sweep[idx]
        else:
            old = window_best.get(w)
            if old is None:
                raw += sweep[idx] + cost["fnWeight"]
                window_best[w] = sweep[idx]
            elif sweep[idx] > old:
                raw += sweep[idx] - old
                window_best[w] = sweep[idx]
        # a threshold can only sit between distinct score values
        if (pos + 1 == len(order) or s_sorted[pos + 1] != s_sorted[pos]) and raw > best_raw:
            best_raw, best_thr = raw, float(s_sorted[pos])
    return {
        "raw": best_raw,
        "null": null,
        "perfect": perfect,
        "score": normalise(best_raw, null, perfect),
        "threshold": best_thr,
    }


# --------------------------------------------------------------------------- running


def _numeric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c != "timestamp" and pd.api.types.is_numeric_dtype(df[c])]


def detect_frame(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Run the production detector (default config) over one file, one pass."""
    from detectors.device import DeviceAnomaly
    from detectors.sensor import SensorAnomaly

    cols = _numeric_columns(df)
    ts = pd.to_datetime(df["timestamp"], errors="coerce")
    # unix seconds whatever the datetime resolution (pandas >= 2 may parse to datetime64[us])
    t = (ts.astype("datetime64[ns]").astype("int64") / 1e9).to_numpy(dtype=float) if len(ts) else np.empty(0)
    t = np.where(ts.isna().to_numpy(), np.nan, t)
    n = len(df)
    scores = np.zeros(n)
    alerts = np.zeros(n, dtype=np.int8)
    if len(cols) == 1:
        sensor = SensorAnomaly()
        xs = df[cols[0]].to_numpy(dtype=float)
        update = sensor.update
        for i in range(n):
            s, a = update(float(xs[i]), float(t[i]))
            scores[i] = s
            alerts[i] = a
    elif cols:
        device = DeviceAnomaly(channels=cols)
        mat = df[cols].to_numpy(dtype=float)
        for i in range(n):
            s, a = device.update({c: float(v) for c, v in zip(cols, mat[i], strict=True)}, float(t[i]))
            scores[i] = s
            alerts[i] = a
    return scores, alerts


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_cli(data_dir: Path, out_dir: Path, labels: Path | None = None) -> dict:
    """Score every ``<category>/<name>.csv`` under ``data_dir``; print and return NAB scores."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if labels is None:
        labels = data_dir.parent / "labels" / "combined_windows.json"
    labels = Path(labels)
    windows_by_file = json.loads(labels.read_text()) if labels.is_file() else None

    files = sorted(p for p in data_dir.rglob("*.csv") if p.is_file())
    scored_alert: list[ScoredFile] = []
    scored_score: list[ScoredFile] = []
    t0 = time.perf_counter()
    n_rows = 0
    for k, path in enumerate(files, 1):
        rel = path.relative_to(data_dir).as_posix()
        df = pd.read_csv(path)
        t1 = time.perf_counter()
        scores, alerts = detect_frame(df)
        dt = time.perf_counter() - t1
        n_rows += len(df)
        out = df.copy()
        out["anomaly_score"] = scores
        out["alert"] = alerts.astype(int)
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(dest, index=False)
        msg = f"[{k}/{len(files)}] {rel}: {len(df)} rows, {int(alerts.sum())} alerts, {dt:.1f}s"
        if windows_by_file is not None and rel in windows_by_file and "timestamp" in df.columns:
            wins = window_indices(df["timestamp"], windows_by_file[rel])
            fa = sweep_file(rel, alerts.astype(float), wins)
            scored_alert.append(fa)
            scored_score.append(sweep_file(rel, scores, wins))
            msg += f", {len(wins)} windows, raw(alert)={score_at_threshold(fa, 0.5):+.3f}"
        _progress(msg)

    result: dict = {
        "files": len(files),
        "rows": n_rows,
        "seconds": round(time.perf_counter() - t0, 2),
        "out_dir": str(out_dir),
    }
    if windows_by_file is None:
        print(f"Wrote {len(files)} files to {out_dir}; labels not found at {labels}: NAB scoring skipped.")
        result["scoring"] = "skipped"
        return result

    fixed = corpus_score(scored_alert, 0.5)
    best = best_threshold(scored_score)
    result.update(
        {
            "scoring": "nab-standard",
            "scored_files": len(scored_alert),
            "windows": sum(f.n_labelled for f in scored_alert),
            "standard_alert": fixed["score"],
            "standard_best_threshold": best["score"],
            "best_threshold": best["threshold"],
            "raw_alert": fixed["raw"],
            "raw_best": best["raw"],
            "null": fixed["null"],
            "perfect": fixed["perfect"],
        }
    )
    print(
        f"NAB standard profile over {len(scored_alert)} files, {result['windows']} windows "
        f"(null {fixed['null']:.1f}, perfect {fixed['perfect']:.1f}):"
    )
    print(f"  fixed production alert : {fixed['score']:.2f}  (raw {fixed['raw']:.3f})")
    print(f"  best threshold {best['threshold']:.6g} on anomaly_score : {best['score']:.2f}  (raw {best['raw']:.3f})")
    return result
