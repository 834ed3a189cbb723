"""A video detection (rodent, no mask, …): remembered for evidence, counted for the rate surge and
the inspection history; a confirmed rule opens a case.

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import VideoDetection
>>> cx = Context.of(load_county()); desk = Desk(cx)
>>> st, out = EntityState(kind="catering"), Outcome()
>>> ev = VideoDetection(event_id="v1", entity_id="E1", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
...     source="cam", camera_id="c1", cls="rodent", confidence=0.9, evidence_ref="s3://x")
>>> handle(cx, desk, ev, st, out); len(st.videos), sorted(st.rates)
(1, ['video'])
"""

from __future__ import annotations

from detectors.inspection import to_days
from schemas.events import Contribution, VideoDetection
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.handlers.confirm import confirmed
from streams.engine.outcome import Outcome
from streams.engine.risk import rate
from streams.engine.state import EntityState


def handle(cx: Context, desk: Desk, ev: VideoDetection, st: EntityState, out: Outcome) -> None:
    if cx.evidence:
        st.videos = [
            *st.videos[-7:],
            (ev.occurred_at.timestamp(), ev.event_id, ev.camera_id, ev.cls.value, ev.confidence, ev.evidence_ref),
        ]
    rate(cx, ev, st, "video")
    st.history.on_signal(to_days(ev.occurred_at), "video")
    hit = cx.rules.on_video(ev.cls, ev.confidence)
    if hit and confirmed(st, hit.rule, ev.occurred_at.timestamp(), hit):
        desk.raise_alert(
            ev,
            st,
            out,
            hit,
            [
                Contribution(
                    signal=f"video.{ev.cls}",
                    value=ev.confidence,
                    detail=f"摄像头 {ev.camera_id},证据 {ev.evidence_ref}",
                )
            ],
        )
