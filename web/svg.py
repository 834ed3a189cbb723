"""Small server-side SVG charts (no JavaScript, no CDN): a time series with an optional marker.

>>> from datetime import datetime, timedelta
>>> t0 = datetime(2026, 11, 27, 8)
>>> svg = line_chart({"温度<script>": [(t0, 1.0), (t0 + timedelta(hours=1), 3.0)]}, marker=t0)
>>> svg.startswith("<svg") and "<script>" not in svg and "&lt;script&gt;" in svg
True
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from markupsafe import Markup

COLOURS = ("#1f5fa8", "#c0392b", "#2e8b57", "#d68910", "#7d3c98")


def line_chart(series: dict[str, list[tuple[datetime, float]]], *, width: int = 640, height: int = 200,
               marker: datetime | None = None, marker_label: str = "触发", y_label: str = "",
               bands: list[tuple[float, float, str]] = ()) -> Markup:
    """Polyline per series; x = time, y = value; ``marker``: a vertical line; ``bands``: (lo, hi, colour)."""
    pts = [(t, v) for s in series.values() for t, v in s if t is not None and v is not None]
    if not pts:
        return Markup('<p class="muted">暂无数据</p>')
    left, right, top, bottom = 48, 12, 12, 28
    tmin = min(t for t, _ in pts).timestamp()
    tmax = max(t for t, _ in pts).timestamp()
    if marker is not None:
        tmin, tmax = min(tmin, marker.timestamp()), max(tmax, marker.timestamp())
    vmin, vmax = min(v for _, v in pts), max(v for _, v in pts)
    for lo, hi, _ in bands:
        vmin, vmax = min(vmin, lo), max(vmax, hi)
    if vmax == vmin:
        vmax, vmin = vmax + 1, vmin - 1
    if tmax == tmin:
        tmax += 60
    pw, ph = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + (t - tmin) / (tmax - tmin) * pw

    def y(v: float) -> float:
        return top + (1 - (v - vmin) / (vmax - vmin)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
           f'role="img" aria-label="{escape(y_label or "图表")}" class="chart">',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafbfc" stroke="#d0d7de"/>']
    for lo, hi, colour in bands:
        out.append(f'<rect x="{left}" y="{y(hi):.1f}" width="{pw}" height="{max(0.0, y(lo) - y(hi)):.1f}" '
                   f'fill="{escape(colour)}" opacity="0.12"/>')
    for frac in (0, 0.5, 1):
        v = vmin + frac * (vmax - vmin)
        out.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end" fill="#555">{v:.4g}</text>')
    for frac, anchor in ((0, "start"), (1, "end")):
        t = datetime.fromtimestamp(tmin + frac * (tmax - tmin), tz=pts[0][0].tzinfo)
        out.append(f'<text x="{x(tmin + frac * (tmax - tmin)):.1f}" y="{height - 8}" font-size="11" '
                   f'text-anchor="{anchor}" fill="#555">{t.strftime("%m-%d %H:%M")}</text>')
    if marker is not None:
        mx = x(marker.timestamp())
        out.append(f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + ph}" stroke="#c0392b" stroke-dasharray="4 3"/>'
                   f'<text x="{mx + 3:.1f}" y="{top + ph - 4:.1f}" font-size="11" fill="#c0392b">{escape(marker_label)}</text>')
    for i, (name, s) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        s = sorted((t.timestamp(), v) for t, v in s if t is not None and v is not None)
        if not s:
            continue
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{path}"/>')
        if len(s) <= 60:
            out.extend(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.2" fill="{colour}"/>' for t, v in s)
        out.append(f'<text x="{left + pw - 6}" y="{top + 14 + 14 * i}" font-size="12" text-anchor="end" '
                   f'fill="{colour}">{escape(name)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
