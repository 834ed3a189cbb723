"""Event-rate surges (detectors/rates.py): tail probabilities, own baseline vs peers, peer groups."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from detectors.rates import PeerRates, RateConfig, RateSurprise, nb_tail

DAY = 86400.0


@pytest.mark.parametrize(
    "k,alpha,beta,w", [(1, 0.5, 10.0, 1.0), (3, 2.0, 60.0, 1.0), (10, 30.0, 3.0, 1.0), (2, 0.24, 30.0, 1.0)]
)
def test_nb_tail_matches_scipy(k, alpha, beta, w):
    from scipy.stats import nbinom

    assert nb_tail(k, alpha, beta, w) == pytest.approx(nbinom.sf(k - 1, alpha, beta / (beta + w)), rel=1e-9)


def _quiet_entity(rng: random.Random, rate: float, days: int, cfg: RateConfig) -> float:
    """Highest surprise of an entity with Poisson(rate) events per day, checked at every event."""
    r = RateSurprise(t=0.0)
    worst = 0.0
    t = 0.0
    while True:
        t += rng.expovariate(rate) * DAY
        if t > days * DAY:
            return worst
        r.learn_one(t, cfg)
        worst = max(worst, r.score_one(t, cfg))


def test_peer_typical_entities_rarely_surprise():
    cfg = RateConfig(prior_rate=0.008, prior_days=60, window=1.0, half_life=60)
    rng = random.Random(1)
    worst = [_quiet_entity(rng, 0.008, 365, cfg) for _ in range(400)]  # 400 entity-years
    # two complaints within a day happens to ~2 % of them a year (0.6: a yellow at most, see
    # fusion.yaml); three within a day (≥ 0.8, orange with other evidence) to none
    assert sum(w >= 0.6 for w in worst) <= 0.05 * len(worst), sorted(worst)[-10:]
    assert max(worst) < 0.8, sorted(worst)[-10:]


def test_surge_is_surprising_and_fades():
    cfg = RateConfig(prior_rate=0.008, prior_days=60, window=1.0, half_life=60)
    r = RateSurprise(t=0.0)
    t = 30 * DAY
    scores = []
    for i in range(8):  # eight complaints in four hours
        r.learn_one(t + i * 1800, cfg)
        scores.append(r.score_one(t + i * 1800, cfg))
    assert scores[0] < 0.4 < scores[2] and scores[-1] == 1.0
    assert r.score_one(t + 7 * DAY, cfg) < 0.1


def test_own_baseline_matters_a_busy_entity_is_less_surprising():
    cfg = RateConfig(prior_rate=0.5, prior_days=3, window=1.0, half_life=30)
    quiet, busy = RateSurprise(t=0.0), RateSurprise(t=0.0)
    for d in range(60):
        quiet.learn_one(d * DAY, cfg, n=0)
        busy.learn_one(d * DAY, cfg, n=6)  # six detections a day for two months
    for r in (quiet, busy):
        r.learn_one(60.5 * DAY, cfg, n=8)
    assert busy.rate(cfg) > 4 > 0.1 > quiet.rate(cfg)
    assert quiet.score_one(60.5 * DAY, cfg) > 0.9 > 0.3 > busy.score_one(60.5 * DAY, cfg)


def test_state_is_a_few_floats():
    r = RateSurprise(t=0.0)
    cfg = RateConfig()
    for i in range(1000):
        r.learn_one(i * 3600.0, cfg)
    assert len(pickle.dumps(r)) < 120
    assert all(math.isfinite(x) for x in (r.recent, r.base, r.expo))


def test_peer_rates_prior_and_township_surge():
    pr = PeerRates(half_life=30, window=1.0, prior_days=30)
    pr.learn_one("town:舞泉镇", 0.0, entities=50)
    rng = random.Random(3)
    for d in range(90):
        pr.learn_one("town:舞泉镇", d * DAY, n=sum(rng.random() < 0.01 for _ in range(50)))
    rate, days = pr.prior("town:舞泉镇")
    assert 0.004 < rate < 0.02 and days == 30
    assert pr.score_one("town:舞泉镇", 90 * DAY) < 0.5
    pr.learn_one("town:舞泉镇", 90.2 * DAY, n=12)  # twelve complaints in one town in a few hours
    assert pr.score_one("town:舞泉镇", 90.3 * DAY) > 0.9
    assert pr.prior("kind:unknown") == (pr.default_rate, pr.prior_days)
