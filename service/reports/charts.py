"""Inline SVG charts for the HTML report: no script, no external asset, sharp in print."""
from __future__ import annotations

import math
from html import escape

FONT = "'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei','PingFang SC',sans-serif"
BAR = "#2f5d8a"
# Colour by the explanation's wording: 相关性较弱 / 可能相关 / 较为匹配 / 高度匹配.
STRENGTH_COLOURS = ((0.7, "#1f4e79"), (0.4, "#4a7fb5"), (0.15, "#8fb3d9"), (0.0, "#b8c0cc"))


def colour_for(score: float) -> str:
    return next(colour for floor, colour in STRENGTH_COLOURS if score >= floor)


def _open(chart_id: str, width: int, height: int, title: str) -> str:
    return (f'<svg class="chart" id="{escape(chart_id)}" xmlns="http://www.w3.org/2000/svg" role="img" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'font-family="{FONT}" font-size="12"><title>{escape(title)}</title>')


def nice_step(raw: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50… not below raw: grid lines at round counts."""
    magnitude = 10 ** max(0, math.floor(math.log10(raw))) if raw >= 1 else 1
    return next(int(m * magnitude) for m in (1, 2, 5, 10) if m * magnitude >= raw)


def horizontal_bars(chart_id: str, title: str, items: list[tuple[str, int]], unit: str = "条") -> str:
    """One labelled bar per item, longest first as given; values printed after the bars."""
    label_w, bar_w, row_h, top = 130, 380, 24, 8
    width, height = label_w + bar_w + 70, top * 2 + row_h * max(1, len(items))
    peak = max((v for _, v in items), default=0) or 1
    parts = [_open(chart_id, width, height, title)]
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        w = round(bar_w * value / peak, 1)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" fill="#333">{escape(label)}</text>'
            f'<rect class="bar" data-label="{escape(label)}" data-value="{value}" x="{label_w}" y="{y + 4}" '
            f'width="{w}" height="{row_h - 8}" fill="{BAR}"><title>{escape(label)}：{value}{unit}</title></rect>'
            f'<text x="{label_w + w + 6}" y="{y + 16}" fill="#333">{value}</text>')
    if not items:
        parts.append(f'<text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle" fill="#888">无数据</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(chart_id: str, title: str, counts: list[int], labels: list[str], floors: list[float]) -> str:
    """Vertical bars over score ranges, coloured by how the explanations word that score."""
    left, bottom, top, plot_h, slot = 48, 40, 14, 200, 52
    width, height = left + slot * len(counts) + 16, top + plot_h + bottom
    step = nice_step(max(counts, default=0) / 4)
    peak = step * max(1, math.ceil(max(counts, default=0) / step))
    parts = [_open(chart_id, width, height, title)]
    for k in range(round(peak / step) + 1):  # horizontal grid at round counts
        value = step * k
        y = top + plot_h - plot_h * value / peak
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ea"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#666">{value:.0f}</text>')
    for i, (count, label, floor) in enumerate(zip(counts, labels, floors)):
        h = round(plot_h * count / peak, 1)
        x = left + i * slot + 6
        parts.append(
            f'<rect class="bar" data-label="{escape(label)}" data-value="{count}" x="{x}" '
            f'y="{top + plot_h - h}" width="{slot - 12}" height="{h}" fill="{colour_for(floor)}">'
            f'<title>匹配度 {escape(label)}：{count} 条</title></rect>'
            f'<text x="{x + (slot - 12) / 2}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'font-size="10" fill="#333">{escape(label)}</text>')
        if count:
            parts.append(f'<text x="{x + (slot - 12) / 2}" y="{top + plot_h - h - 4}" text-anchor="middle" '
                         f'font-size="10" fill="#333">{count}</text>')
    parts.append(f'<text x="{left + slot * len(counts) / 2}" y="{height - 6}" text-anchor="middle" '
                 f'fill="#333">匹配度</text></svg>')
    return "".join(parts)


def legend() -> str:
    names = {0.7: "高度匹配 ≥0.70", 0.4: "较为匹配 ≥0.40", 0.15: "可能相关 ≥0.15", 0.0: "相关性较弱"}
    return "".join(f'<span class="swatch" style="background:{colour}"></span>{names[floor]}　'
                   for floor, colour in STRENGTH_COLOURS)
