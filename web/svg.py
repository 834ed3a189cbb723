"""Small server-side SVG charts (no JavaScript, no CDN): a time series with an optional marker.

>>> from datetime import datetime, timedelta
>>> t0 = datetime(2026, 11, 27, 8)
>>> svg = line_chart({"温度<script>": [(t0, 1.0), (t0 + timedelta(hours=1), 3.0)]}, marker=t0)
>>> svg.startswith("<svg") and "<script>" not in svg and "&lt;script&gt;" in svg
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

COLOURS = ("#1f5fa8", "#c0392b", "#2e8b57", "#d68910", "#7d3c98")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2 or 5 × 10^k apart).

    >>> nice_ticks(19.99, 80.0), nice_ticks(11.0, 11.8)
    ([0, 20, 40, 60, 80], [11.0, 11.2, 11.4, 11.6, 11.8])
    """
    span = (hi - lo) or abs(hi) or 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = math.floor(lo / step + 1e-9) * step
    ticks, v = [], first
    while v < hi + step * 0.999:
        ticks.append(round(v, 10))
        v += step
    return ticks if len(ticks) >= 2 else [first, first + step]


def line_chart(
    series: Mapping[str, Sequence[tuple[datetime | None, float | None]]],
    *,
    width: int = 640,
    height: int = 220,
    marker: datetime | None = None,
    marker_label: str = "触发",
    y_label: str = "",
    bands: Sequence[tuple[float, float, str]] = (),
    limits: dict[float, str] | None = None,
    y_range: tuple[float, float] | None = None,
    step: bool = False,
) -> Markup:
    """Polyline per series; x = time, y = value. The legend sits above the plot (it never covers
    data or labels); ``marker``: a vertical line labelled at its top, on the side with room;
    ``bands``: (lo, hi, colour); ``limits``: value → label, dashed horizontal lines (rule limits);
    ``y_range``: a fixed value axis (e.g. 0–100 for a score); ``step``: a value holds until the
    next point (a score recorded when it changes), drawn as steps instead of slopes."""
    pts = [(t, v) for s in series.values() for t, v in s if t is not None and v is not None]
    if not pts:
        return Markup('<p class="muted">暂无数据</p>')
    limits = limits or {}
    left, right, top, bottom = 52, 16, 30, 26
    tmin = min(t for t, _ in pts).timestamp()
    tmax = max(t for t, _ in pts).timestamp()
    if marker is not None:
        tmin, tmax = min(tmin, marker.timestamp()), max(tmax, marker.timestamp())
    if tmax - tmin < 600:  # a burst of readings: widen to 10 minutes around it, not one pixel column
        mid = (tmin + tmax) / 2
        tmin, tmax = mid - 300, mid + 300
    else:
        pad = (tmax - tmin) * 0.03
        tmin, tmax = tmin - pad, tmax + pad
    if y_range is not None:
        vmin, vmax = y_range
    else:
        vmin, vmax = min(v for _, v in pts), max(v for _, v in pts)
        for lo, hi, _ in bands:
            vmin, vmax = min(vmin, lo), max(vmax, hi)
        for v in limits:
            vmin, vmax = min(vmin, v), max(vmax, v)
        pad = (vmax - vmin) * 0.08 or 1.0
        vmin, vmax = vmin - pad, vmax + pad
    ticks = nice_ticks(vmin, vmax) if y_range is None else nice_ticks(*y_range)
    vmin, vmax = min(vmin, ticks[0]), max(vmax, ticks[-1])
    pw, ph = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + (t - tmin) / (tmax - tmin) * pw

    def y(v: float) -> float:
        return top + (1 - (v - vmin) / (vmax - vmin)) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(y_label or "图表")}" class="chart">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafbfc" stroke="#d0d7de"/>',
    ]
    for lo, hi, colour in bands:
        out.append(
            f'<rect x="{left}" y="{y(hi):.1f}" width="{pw}" height="{max(0.0, y(lo) - y(hi)):.1f}" '
            f'fill="{escape(colour)}" opacity="0.12"/>'
        )
    for v in ticks:
        out.append(
            f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" stroke="#eef0f3"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end" fill="#555">{v:g}</text>'
        )
    for frac, anchor in ((0, "start"), (0.5, "middle"), (1, "end")):
        t = datetime.fromtimestamp(tmin + frac * (tmax - tmin), tz=pts[0][0].tzinfo)
        out.append(
            f'<text x="{x(tmin + frac * (tmax - tmin)):.1f}" y="{height - 8}" font-size="11" '
            f'text-anchor="{anchor}" fill="#555">{t.strftime("%m-%d %H:%M")}</text>'
        )
    for v, label in sorted(limits.items()):
        out.append(
            f'<line x1="{left}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" stroke="#d68910" '
            f'stroke-dasharray="6 3"/><text x="{left + 4}" y="{y(v) - 4:.1f}" font-size="11" '
            f'fill="#b9770e">{escape(label)}</text>'
        )
    if marker is not None:
        mx = x(marker.timestamp())
        right_half = mx > left + pw / 2
        out.append(
            f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + ph}" stroke="#c0392b" stroke-dasharray="4 3"/>'
            f'<text x="{mx - 4 if right_half else mx + 4:.1f}" y="{top + 13}" font-size="11" fill="#c0392b" '
            f'text-anchor="{"end" if right_half else "start"}">{escape(marker_label)}</text>'
        )
    lx = left
    for i, (name, points) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        s = sorted((t.timestamp(), v) for t, v in points if t is not None and v is not None)
        if not s:
            continue
        s_pts = _steps(s) if step else s
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s_pts)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{path}"/>')
        if len(s) <= 60:
            out.extend(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.4" fill="{colour}"/>' for t, v in s)
        # legend above the plot: a swatch and the name, left to right
        out.append(
            f'<rect x="{lx}" y="8" width="14" height="3" fill="{colour}"/>'
            f'<text x="{lx + 18}" y="14" font-size="12" fill="#333">{escape(name)}</text>'
        )
        lx += 30 + 13 * len(name)
    out.append("</svg>")
    return Markup("".join(out))


def _steps(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A step line through ``pts``: each value holds until the next point's time."""
    return [p for i, (t, v) in enumerate(pts) for p in ([(t, pts[i - 1][1])] if i else []) + [(t, v)]]
