"""`riskwatch eval simulated`: the simulator's stream through the production Processor (small run)."""

from __future__ import annotations

from riskwatch.tools.evals.simulated import _is_legit, run


def test_small_simulated_run_detects_incidents_and_reports_breakdown():
    r = run(seed=3, days=1.5, scale=0.1, progress=False)
    assert r["incidents"] >= 6 and r["events"] > 10_000
    assert r["recall"] >= 0.8, r["missed"]
    assert r["median_detect_min"] is not None and r["median_detect_min"] < 240
    assert sum(r["false_by_rule"].values()) == r["false_alerts"]
    assert sum(r["legit_by_rule"].values()) == r["legit_background_alerts"]
    assert r["max_state_bytes"] < 20_000
    assert not r["rejected"]


def test_background_rule_classification():
    assert _is_legit("rule.inspection") and _is_legit("rule.complaint.food_poisoning")
    assert _is_legit("rule.sensor.elevator_fault")
    assert (
        not _is_legit("model.risk")
        and not _is_legit("rule.video.rodent")
        and not _is_legit("rule.sensor.cold_chain_temp")
    )
