"""Inline SVG for evaluations: a radar of the four dimensions (技术先进性、经济效益、社会效益、推广价值)."""
from __future__ import annotations

import math
from html import escape

from service.reports.charts import BAR, _open

AXES = (("tech_advancement", "技术先进性"), ("economic_benefit", "经济效益"), ("social_benefit", "社会效益"),
        ("promotion_value", "推广价值"))


def radar(chart_id: str, title: str, scores: dict[str, float], size: int = 300) -> str:
    """The four scores (0–100) on four axes, with rings at 20, 40 … 100."""
    width = size + 160  # the side labels (推广价值 83) sit beside the plot
    cx, c, r = width / 2, size / 2, size / 2 - 50
    angles = [-math.pi / 2 + i * math.pi / 2 for i in range(len(AXES))]

    def point(angle: float, value: float) -> tuple[float, float]:
        return cx + r * value / 100 * math.cos(angle), c + r * value / 100 * math.sin(angle)

    parts = [_open(chart_id, width, size, title)]
    for ring in (20, 40, 60, 80, 100):
        ring_points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(a, ring) for a in angles))
        parts.append(f'<polygon points="{ring_points}" fill="none" stroke="#e3e6ea"/>')
    for angle, (key, label) in zip(angles, AXES):
        x, y = point(angle, 100)
        lx, ly = point(angle, 112)
        anchor = "middle" if abs(math.cos(angle)) < 0.5 else ("start" if math.cos(angle) > 0 else "end")
        parts.append(f'<line x1="{cx}" y1="{c}" x2="{x:.1f}" y2="{y:.1f}" stroke="#d0d7de"/>'
                     f'<text x="{lx:.1f}" y="{ly + 4:.1f}" text-anchor="{anchor}" fill="#333">{escape(label)}'
                     f' {scores.get(key, 0):.0f}</text>')
    shape = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(a, scores.get(k, 0)) for a, (k, _) in zip(angles, AXES)))
    parts.append(f'<polygon class="radar" points="{shape}" fill="{BAR}" fill-opacity="0.35" stroke="{BAR}" '
                 f'stroke-width="2"><title>{escape(title)}</title></polygon></svg>')
    return "".join(parts)
