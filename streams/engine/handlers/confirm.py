"""Rule confirmation: a rule that needs ``confirm`` hits within ``within_s`` (one stray reading or
detection is not a case).

>>> from detectors.rules import Hit
>>> st, hit = EntityState(), Hit("rule.x", "red", "t", 1.0, confirm=2, within_s=60.0)
>>> confirmed(st, "rule.x:d1", 0.0, hit), confirmed(st, "rule.x:d1", 30.0, hit)
(False, True)
"""

from __future__ import annotations

from detectors.rules import Hit
from streams.engine.state import EntityState


def confirmed(st: EntityState, key: str, t: float, hit: Hit) -> bool:
    """Remember the recent hit times of ``key`` and say whether there are enough now."""
    if hit.confirm <= 1:
        return True
    times = [x for x in st.confirm.get(key, ()) if t - x <= hit.within_s] + [t]
    st.confirm[key] = times[-hit.confirm :]
    return len(times) >= hit.confirm
