"""HTML: one self-contained page to read and print, with inline SVG charts and a table per domain.

The domain tables stream into a side file while results arrive; the page is then
assembled as head, summary and charts (known only at the end), then the tables.
"""
from __future__ import annotations

import shutil
from html import escape
from pathlib import Path
from typing import Any

from service.reports import charts
from service.reports.model import (
    CASE_HEADERS,
    ORG_TYPE_NAMES,
    SCORE_BUCKETS,
    STATUS_NAMES,
    NeedResult,
    ReportMeta,
    ReportStats,
    clean_text,
    strength,
)

CSS = """
*{box-sizing:border-box}
body{font-family:'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei','PingFang SC',sans-serif;
 color:#222;margin:24px auto;max-width:1280px;padding:0 16px;line-height:1.5;font-size:14px}
h1{font-size:24px;margin:0 0 8px;color:#1f4e79}
h2{font-size:18px;color:#1f4e79;border-bottom:2px solid #1f4e79;padding-bottom:4px;margin-top:32px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0 16px}
dl.meta dt{color:#666}dl.meta dd{margin:0}
.charts{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
figure{margin:0;border:1px solid #dde3ea;border-radius:6px;padding:12px;background:#fff}
figcaption{font-weight:bold;margin-bottom:8px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
.legend{font-size:12px;color:#555;margin-top:6px}
table{border-collapse:collapse;width:100%;margin:8px 0 16px}
th,td{border:1px solid #d0d7de;padding:6px 8px;vertical-align:top;text-align:left}
th{background:#2f5d8a;color:#fff;font-weight:bold;white-space:nowrap}
table.stats td.n{text-align:right}
table.matches td.need{background:#f6f8fa;width:22%}
table.matches td.score{text-align:right;white-space:nowrap}
.sub{color:#666;font-size:12px}
.terms span{display:inline-block;background:#e8f0f8;border-radius:3px;padding:0 4px;margin:1px 2px 1px 0}
.badge{display:inline-block;font-size:12px;color:#fff;border-radius:3px;padding:0 4px}
.note{color:#8a5a00}
nav.toc a{margin-right:12px}
@page{size:A4 landscape;margin:12mm}
@media print{
 body{margin:0;max-width:none;font-size:11px}
 nav.toc{display:none}
 section.domain{break-before:page}
 thead{display:table-header-group}
 tbody.need,tr,figure{break-inside:avoid}
 th{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 .badge,.swatch,.terms span{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""


def text(value: Any) -> str:
    return escape(str(clean_text(value))) if value not in (None, "") else ""


def anchor(code: str) -> str:
    return "d-" + ("".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in code) or "unclassified")


class HtmlReport:
    def __init__(self, path: Path, meta: ReportMeta):
        self.path, self.meta = path, meta
        self.body_path = path.with_name(path.name + ".body")
        self.body = self.body_path.open("w", encoding="utf-8")
        self.domain: str | None = None
        self.names = {code: name for code, name, _ in meta.domains}

    # ---- streamed tables ------------------------------------------------------------
    def _start_domain(self, result: NeedResult) -> None:
        self._end_domain()
        code = result.domain
        count = next((n for c, _, n in self.meta.domains if c == code), 0)
        contact = "<th>联系方式</th>" if self.meta.with_contacts else ""
        self.body.write(
            f'<section class="domain" id="{anchor(code)}"><h2>{text(self.names.get(code, "未分类"))}'
            f' <span class="sub">{count} 个需求</span></h2>'
            f'<table class="matches"><thead><tr><th>场景需求</th><th>排名</th><th>企业能力</th>'
            f'<th>匹配度</th><th>共同关键词</th><th>匹配说明</th>{contact}</tr></thead>')
        self.domain = code

    def _end_domain(self) -> None:
        if self.domain is not None:
            self.body.write("</table></section>\n")
        self.domain = None

    def _need_cell(self, need: dict[str, Any], span: int) -> str:
        sub = " · ".join(text(v) for v in (need.get("publisher"), need.get("region"),
                                           STATUS_NAMES.get(need.get("status") or "")) if v)
        contact = f'<div class="sub">联系：{text(need.get("contact"))}</div>' if need.get("contact") else ""
        return (f'<td class="need" rowspan="{span}"><strong>{text(need["title"])}</strong>'
                f'<div class="sub">{text(need["id"])}</div><div class="sub">{sub}</div>{contact}</td>')

    def write(self, result: NeedResult) -> None:
        if self.domain is None or result.domain != self.domain:
            self._start_domain(result)
        span = max(1, len(result.matches))
        parts = ['<tbody class="need"><tr>', self._need_cell(result.need, span)]
        if not result.matches:
            cols = 6 if self.meta.with_contacts else 5
            parts.append(f'<td colspan="{cols}" class="note">{text(result.note)}</td></tr>')
        for i, match in enumerate(result.matches):
            cap = match.capability
            sub = " · ".join(text(v) for v in (cap.get("organization"),
                                               ORG_TYPE_NAMES.get(cap.get("org_type") or ""),
                                               cap.get("region")) if v)
            colour = charts.colour_for(match.score)
            terms = "".join(f"<span>{text(t)}</span>" for t in match.shared_terms)
            contact = f"<td>{text(cap.get('contact'))}</td>" if self.meta.with_contacts else ""
            parts.append(
                ("" if i == 0 else "<tr>")
                + f'<td>{match.rank}</td><td><strong>{text(cap["title"])}</strong>'
                f'<div class="sub">{text(cap["id"])}</div><div class="sub">{sub}</div></td>'
                f'<td class="score">{match.score:.3f}<br><span class="badge" style="background:{colour}">'
                f'{strength(match.score)}</span></td><td class="terms">{terms}</td>'
                f"<td>{text(match.summary)}</td>{contact}</tr>")
        parts.append("</tbody>\n")
        self.body.write("".join(parts))

    # ---- assembled page -------------------------------------------------------------
    def _head(self, stats: ReportStats) -> str:
        meta = self.meta
        pairs = [*meta.rows_as_pairs(), ("匹配条数", stats.matches)]
        dl = "".join(f"<dt>{text(k)}</dt><dd>{text(v)}</dd>" for k, v in pairs)
        by_domain = [(self.names.get(code, "未分类"), g.matches) for code, g in stats.by_domain.items()]
        floors = [i / SCORE_BUCKETS for i in range(SCORE_BUCKETS)]
        labels = [f"{f:.1f}" for f in floors]
        domain_rows = "".join(
            f'<tr><td><a href="#{anchor(code)}">{text(self.names.get(code, "未分类"))}</a></td>'
            f'<td class="n">{g.needs}</td><td class="n">{g.needs_matched}</td><td class="n">{g.matches}</td>'
            f'<td class="n">{g.mean:.3f}</td><td class="n">{g.best:.3f}</td></tr>'
            for code, g in stats.by_domain.items())
        region_rows = "".join(
            f'<tr><td>{text(region)}</td><td class="n">{g.needs}</td><td class="n">{g.needs_matched}</td>'
            f'<td class="n">{g.matches}</td><td class="n">{g.mean:.3f}</td></tr>'
            for region, g in sorted(stats.by_region.items(), key=lambda kv: (-kv[1].needs, kv[0])))
        toc = "".join(f'<a href="#{anchor(code)}">{text(name)}</a>' for code, name, _ in meta.domains)
        return (
            f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{text(meta.title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{text(meta.title)}</h1><dl class=\"meta\">{dl}</dl></header>"
            f'<section class="charts">'
            f'<figure><figcaption>各领域匹配条数</figcaption>'
            f'{charts.horizontal_bars("chart-domains", "各领域匹配条数", by_domain)}</figure>'
            f'<figure><figcaption>匹配度分布</figcaption>'
            f'{charts.histogram("chart-scores", "匹配度分布", list(stats.buckets), labels, floors)}'
            f'<div class="legend">{charts.legend()}</div></figure></section>'
            f'<h2>按领域统计</h2><table class="stats"><thead><tr><th>领域</th><th>需求数</th>'
            f"<th>有匹配的需求数</th><th>匹配条数</th><th>平均匹配度</th><th>最高匹配度</th></tr></thead>"
            f"<tbody>{domain_rows}</tbody></table>"
            f'<h2>按地区统计</h2><table class="stats"><thead><tr><th>地区</th><th>需求数</th>'
            f"<th>有匹配的需求数</th><th>匹配条数</th><th>平均匹配度</th></tr></thead>"
            f"<tbody>{region_rows}</tbody></table>"
            f'<nav class="toc">领域：{toc}</nav>\n')

    @staticmethod
    def _cases(stats: ReportStats) -> str:
        """The cited cases (已落地的类似场景) with their evaluation and outcome."""
        if not stats.case_rows:
            return '<section class="cases"><h2>落地案例</h2><p class="sub">本报告的匹配未引用已落地的类似场景。</p></section>\n'
        keep = (1, 3, 5, 6, 7, 8, 14, 15, 16)  # need, capability, scenario, year, stage, similarity, overall, outcome
        head = "".join(f"<th>{text(CASE_HEADERS[i])}</th>" for i in keep)
        rows = "".join("<tr>" + "".join(f"<td>{text(row[i])}</td>" for i in keep) + "</tr>" for row in stats.case_rows)
        more = (f'<p class="sub">另有 {stats.cases_left_out} 条案例引用未列出。</p>' if stats.cases_left_out else "")
        return (f'<section class="cases"><h2>落地案例（{len(stats.case_rows)} 条引用）</h2>'
                f'<table class="stats"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{more}</section>\n')

    def close(self, stats: ReportStats) -> None:
        self._end_domain()
        self.body.close()
        try:
            with self.path.open("w", encoding="utf-8") as out:
                out.write(self._head(stats))
                with self.body_path.open(encoding="utf-8") as body:
                    shutil.copyfileobj(body, out, 1 << 20)
                out.write(self._cases(stats))
                out.write("<footer class=\"sub\">由 scenematch 场景供需匹配服务生成。匹配度为估计的相关概率，"
                          "仅供对接参考。</footer></body></html>\n")
        finally:
            self.body_path.unlink(missing_ok=True)

    def abort(self) -> None:
        self.body.close()
        self.body_path.unlink(missing_ok=True)
