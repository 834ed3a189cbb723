"""专班办公室 · 预警准确率: precision measured in production, and the threshold review (阈值复核).

Per rule, detector (the rule's family), supervision item and lead department: alerts that fired in the window,
confirmed (属实), not confirmed (不属实), false (误报), unknown (no outcome yet), and precision with its Wilson 95 %
interval (``sinks/precision.py``, the one query). A rule or detector whose false-alarm share passes the bound of
``riskwatch/data/review.yaml`` with enough labelled alerts is flagged, with the 误报 alerts that made it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from riskwatch.domain.outcomes import load_review
from schemas.vocabulary import FALSE_ALARM_REASON_ZH, VERDICT_ZH
from sinks.precision import ALERT_OUTCOMES_SQL, Group, table
from web.deps import ctx, render, require_taskforce
from web.routes.inbox import nav_counts
from web.users import User

router = APIRouter()
TABLES = (("detector", "按监测模型/规则类别"), ("rule", "按规则"), ("item", "按监管事项"), ("dept", "按牵头部门"))


def flagged(groups: list[Group]) -> list[Group]:
    """The groups the threshold review flags (false-alarm share above the bound, enough labelled alerts)."""
    review = load_review()
    return [g for g in groups if review.flagged(g.labelled, g.false)]


@router.get("/taskforce/precision")
async def precision(request: Request, user: User = Depends(require_taskforce), days: int = 0):
    c = ctx(request)
    review = load_review()
    days = max(1, min(days or review.window_days, 3660))
    rows = await c.reader.rows(ALERT_OUTCOMES_SQL, days=days)
    tables = [(by, title, table(rows, by)) for by, title in TABLES]  # type: ignore[arg-type]
    review_rows = [g for by, _, gs in tables if by in ("detector", "rule") for g in flagged(gs)]
    request.state.nav_counts = await nav_counts(request, user)
    return render(
        request,
        "precision.html",
        days=days,
        review=review,
        tables=tables,
        flagged=review_rows,
        VERDICT_ZH=VERDICT_ZH,
        REASON_ZH=FALSE_ALARM_REASON_ZH,
    )
