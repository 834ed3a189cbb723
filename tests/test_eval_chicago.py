"""The Chicago evaluation on a small slice of the shared data."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from riskwatch.tools.evals import chicago

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chicago"

pytestmark = pytest.mark.skipif(not (DATA / "inspections.csv").exists(), reason="shared Chicago data not available")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("chicago")
    end = "2012-03-31"
    ins = pd.read_csv(DATA / "inspections.csv")
    ins = ins[ins["Inspection_Date"] <= end]
    ins.to_csv(d / "inspections.csv", index=False)
    lic = pd.read_csv(DATA / "business_licenses.csv")
    lic[lic["Inspection_ID"].isin(ins["Inspection_ID"])].to_csv(d / "business_licenses.csv", index=False)
    comp = pd.read_csv(DATA / "sanitation_complaints.csv")
    comp[comp["Creation_Date"] <= end].to_csv(d / "sanitation_complaints.csv", index=False)
    w = pd.read_csv(DATA / "weather.csv")
    w[w["date"] <= end].to_csv(d / "weather.csv", index=False)
    return d


def test_run_cli_writes_one_score_per_scored_inspection(small_data, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    res = chicago.run_cli(small_data, "2012-03-01", out)
    ins = pd.read_csv(small_data / "inspections.csv")
    expected = ins.loc[ins["Inspection_Date"] >= "2012-03-01", "Inspection_ID"]
    with out.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["Inspection_ID", "score"]
    got = pd.read_csv(out)
    assert len(got) == len(expected)
    assert sorted(got["Inspection_ID"]) == sorted(expected)
    assert got["score"].between(0.0, 1.0).all()
    for key in (
        "mean_days_earlier",
        "first_half_share_actual",
        "first_half_share_model",
        "n_inspections",
        "n_critical",
    ):
        assert key in res
    assert res["n_inspections"] == len(expected)
    assert "days earlier" in capsys.readouterr().out


def test_scores_do_not_depend_on_same_day_outcomes(small_data, tmp_path):
    """Scoring is strict: changing the outcomes of a day does not change that day's scores."""
    d2 = tmp_path / "mod"
    shutil.copytree(small_data, d2)
    ins = pd.read_csv(d2 / "inspections.csv")
    day = "2012-03-15"
    m = ins["Inspection_Date"] == day
    assert m.sum() > 1
    ins.loc[m, "criticalCount"] = 5 - ins.loc[m, "criticalCount"].clip(upper=5)
    ins.to_csv(d2 / "inspections.csv", index=False)
    a = chicago.replay(small_data, day, score_to=day, progress=False)
    b = chicago.replay(d2, day, score_to=day, progress=False)
    assert np.allclose(a["score"].to_numpy(), b["score"].to_numpy())


def test_metric_matches_hand_computation():
    days = np.array([0, 0, 1, 1, 2, 2], dtype=float)
    crit = np.array([False, False, False, False, True, True])
    perfect = chicago.days_earlier_metric(days, crit, np.array([0, 0, 0, 0, 1, 0.9]))
    assert perfect["mean_days_earlier"] == 2.0  # both move from day 2 to day 0
    assert perfect["first_half_share_model"] == 1.0 and perfect["first_half_share_actual"] == 0.0
    null = chicago.days_earlier_metric(days, crit, np.zeros(6))
    assert null["mean_days_earlier"] == 0.0
