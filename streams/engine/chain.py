"""The audit chain: each alert_history row of an alert hashes the one before it
(``schemas/audit.py``; the first row chains to the alert's first evidence bundle).
See docs/evidence-and-audit.md.

>>> from riskwatch.domain.lifecycle import AlertLifecycle, Transition
>>> lc = AlertLifecycle("A1", "E1", "rule.x", None, "red", ["amr"], status="firing")
>>> lc.transitions.append(Transition(at=1.5, kind="opened", from_status="", to_status="firing", actor="system"))
>>> lc.revision = 1
>>> oa = OpenAlert(alert_id="A1", fingerprint="E1|0|rule.x", rule="rule.x", item_id=None, level="red",
...                status="firing", revision=0, first_seen=0.0, last_seen=0.0, title="t", departments=("amr",), lc=lc)
>>> st, rows = EntityState(), []
>>> transition_rows("E1", st, oa, 1, True, rows)
>>> rows[0]["seq"], rows[0]["prev_hash"], rows[0]["hash"] == oa.chain == st.unanchored["A1"][1]
(1, '', True)
"""

from __future__ import annotations

from datetime import timedelta

from schemas.audit import chain_hash, chain_row
from schemas.privacy import mask_pii
from streams.engine.outcome import TransitionRow
from streams.engine.revision import EPOCH, dt
from streams.engine.state import EntityState, OpenAlert


def transition_rows(
    entity_id: str, st: EntityState, oa: OpenAlert, new: int, chained: bool, rows: list[TransitionRow]
) -> None:
    """The ``new`` last transitions of the alert as rows; ``chained``: with the audit chain's hashes
    (the row exactly as alert_history stores it: time in ms, comment masked)."""
    lc = oa.lc
    for i, tr in enumerate(lc.transitions[-new:] if new <= len(lc.transitions) else lc.transitions):
        seq = lc.revision - min(new, len(lc.transitions)) + i + 1
        if not chained:
            rows.append(
                {
                    "alert_id": lc.alert_id,
                    "seq": seq,
                    "entity_id": entity_id,
                    "at": dt(tr.at),
                    "kind": tr.kind,
                    "from_status": tr.from_status,
                    "to_status": tr.to_status,
                    "actor": tr.actor,
                    "comment": mask_pii(tr.comment),
                }
            )
            continue
        at_ms = int(round(tr.at * 1000))
        row = chain_row(
            lc.alert_id, seq, entity_id, at_ms, tr.kind, tr.from_status, tr.to_status, tr.actor, mask_pii(tr.comment)
        )
        prev = oa.chain or (oa.evidence.first_hash if oa.evidence is not None else "")
        h = chain_hash(prev, row)
        oa.chain = h
        st.unanchored[lc.alert_id] = (seq, h)
        rows.append(
            {
                "alert_id": lc.alert_id,
                "seq": seq,
                "entity_id": entity_id,
                "at": EPOCH + timedelta(milliseconds=at_ms),
                "kind": tr.kind,
                "from_status": row["from_status"],
                "to_status": tr.to_status,
                "actor": tr.actor,
                "comment": row["comment"],
                "prev_hash": prev,
                "hash": h,
            }
        )
