"""XLSX and HTML of the quarterly (季度推介) and annual (年度评选) reports.

Both are small tables (a few hundred rows at most), so each is written in one pass: XLSX as a
summary sheet, the ranking sheet and a cases sheet with the evaluation columns; HTML as one
self-contained page with inline SVG charts.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from models.taxonomy import default_taxonomy
from service.reports import charts, charts_eval
from service.reports.cycle import AnnualData, QuarterlyData
from service.reports.html_writer import CSS, text
from service.reports.xlsx_writer import HEADER_FILL, HEADER_FONT, SECTION_FONT, TITLE_FONT, sheet_title

EVALUATION_HEADERS = ["技术先进性", "经济效益", "社会效益", "推广价值", "综合评价"]
EVALUATION_KEYS = [k for k, _ in charts_eval.AXES] + ["overall"]
OUTCOME_HEADERS = ["合同金额（万元）", "首购首用", "签约日期", "标杆案例"]
CASE_HEADERS = ["场景编号", "场景名称", "年份", "阶段", *EVALUATION_HEADERS, *OUTCOME_HEADERS]


def short(title: str, n: int = 9) -> str:
    """A chart label: the bars leave room for about nine characters."""
    return title if len(title) <= n else title[: n - 1] + "…"


def shown(value: Any) -> Any:
    """Numbers as people write them in a table: 98 rather than 98.0."""
    return f"{value:g}" if isinstance(value, float) else value


def yes(value: Any) -> str:
    return "是" if value else ("否" if value is not None else "")


def evaluation_cells(evaluation: dict[str, Any] | None) -> list[Any]:
    return [(evaluation or {}).get(k) for k in EVALUATION_KEYS]


def case_cells(case: dict[str, Any]) -> list[Any]:
    outcome = case.get("outcome") or {}
    return [case["id"], case["title"], case.get("year"), case.get("stage"), *evaluation_cells(case.get("evaluation")),
            outcome.get("contract_wan"), yes(outcome.get("first_purchase")), outcome.get("signed_at"),
            yes(case.get("benchmark_case"))]


# ---- XLSX ---------------------------------------------------------------------------------------
def _table(book: Workbook, title: str, headers: list[str], rows: list[list[Any]], widths: list[int]) -> None:
    sheet = book.create_sheet(sheet_title(title, {s.title.lower() for s in book.worksheets}))
    sheet.append(headers)
    for cell in sheet[1]:
        cell.font, cell.fill, cell.alignment = HEADER_FONT, HEADER_FILL, Alignment(wrap_text=True, vertical="top")
    for row in rows:
        sheet.append(["'" + v if isinstance(v, str) and v.startswith("=") else v for v in row])
    for i, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(i)].width = width
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(headers))}{len(rows) + 1}"


def _summary(book: Workbook, title: str, pairs: list[tuple[str, Any]], sections: list[tuple[str, list[list[Any]]]]) -> None:
    sheet = book.active
    sheet.title = "汇总"
    sheet.append([title])
    sheet["A1"].font = TITLE_FONT
    for pair in pairs:
        sheet.append(list(pair))
    for name, rows in sections:
        sheet.append([])
        sheet.append([name])
        sheet.cell(sheet.max_row, 1).font = SECTION_FONT
        for i, row in enumerate(rows):
            sheet.append(row)
            if i == 0:
                for cell in sheet[sheet.max_row]:
                    cell.font = Font(bold=True)
    sheet.column_dimensions["A"].width = 22
    sheet.column_dimensions["B"].width = 40


def write_quarterly_xlsx(path: Path, data: QuarterlyData, pairs: list[tuple[str, Any]]) -> None:
    book = Workbook()
    per_domain = [["领域", "推介能力数", "较强匹配合计"]] + [
        [data_name(code, items), len(items), sum(s.strong for s in items)] for code, items in data.by_domain.items()]
    _summary(book, data.period.title, pairs, [("按领域统计", per_domain)])
    rows, case_rows = [], []
    for code, items in data.by_domain.items():
        for rank, s in enumerate(items, start=1):
            cap = s.capability
            best_case = max((c["evaluation"]["overall"] for c in s.cases if c.get("evaluation")), default=None)
            rows.append([data_name(code, items), rank, cap["id"], cap["title"], cap.get("organization"),
                         cap.get("org_type"), cap.get("region"), s.needs, s.strong, round(s.best, 3), s.best_need,
                         len(s.cases), best_case])
            case_rows += [[data_name(code, items), cap["id"], cap["title"], *case_cells(c)] for c in s.cases]
    _table(book, "能力推介", ["领域", "名次", "能力编号", "能力名称", "所属机构", "机构类型", "地区", "匹配需求数",
                           "较强匹配数", "最高匹配度", "最佳匹配需求", "落地案例数", "最佳案例综合评价"],
           rows, [12, 6, 22, 34, 26, 10, 10, 10, 10, 10, 34, 10, 14])
    _table(book, "案例", ["领域", "能力编号", "能力名称", *CASE_HEADERS], case_rows,
           [12, 22, 30, 22, 34, 6, 6, 10, 10, 10, 10, 10, 14, 8, 12, 8])
    book.save(path)


def data_name(code: str, _items: list[Any] | None = None) -> str:
    return default_taxonomy().name(code) or code


def write_annual_xlsx(path: Path, data: AnnualData, pairs: list[tuple[str, Any]]) -> None:
    book = Workbook()
    stats = annual_stats(data)
    by_domain = [["领域", "场景数", "平均综合评价"]] + [[n, c, m] for n, c, m in stats["by_domain"]]
    by_stage = [["阶段", "场景数"]] + [list(x) for x in stats["by_stage"]]
    _summary(book, data.period.title, pairs + stats["pairs"], [("按领域统计", by_domain), ("按阶段统计", by_stage)])
    rows = [[r["rank"], r["id"], r["title"], "、".join(r["domain_names"]), r["region"], r["lead_org"], r["stage"],
             *evaluation_cells(r["evaluation"]), r["contract_wan"], yes(r["first_purchase"]), r["signed_at"],
             yes(r["benchmark_case"]), delivered_by(r)]
            for r in data.rows]
    _table(book, "场景排名", ["名次", "场景编号", "场景名称", "所属领域", "地区", "场景方", "阶段", *EVALUATION_HEADERS,
                           *OUTCOME_HEADERS, "承担单位"], rows,
           [6, 22, 34, 14, 10, 22, 8, 10, 10, 10, 10, 10, 14, 8, 12, 8, 34])
    case_rows = [[r["id"], r["title"], r["overall"], c["id"], c["title"], c["organization"], r["contract_wan"],
                  yes(r["first_purchase"])] for r in data.rows for c in r["capabilities"]]
    _table(book, "案例", ["场景编号", "场景名称", "综合评价", "能力编号", "能力名称", "所属机构", "合同金额（万元）", "首购首用"],
           case_rows, [22, 34, 10, 22, 34, 26, 14, 8])
    book.save(path)


def delivered_by(row: dict[str, Any]) -> str:
    """The delivering organizations; a capability id not stored here is shown as its id."""
    stored = {c["id"]: c["organization"] or c["title"] for c in row["capabilities"]}
    return "、".join(dict.fromkeys(stored.get(c, c) for c in row["capability_ids"])) or "—"


def annual_stats(data: AnnualData) -> dict[str, Any]:
    rows = data.rows
    evaluated = [r for r in rows if r["overall"] is not None]
    domains: dict[str, list[float | None]] = {}
    for r in rows:
        for name in r["domain_names"] or ["未分类"]:
            domains.setdefault(name, []).append(r["overall"])
    mean = {k: round(sum(r["evaluation"][k] for r in evaluated) / len(evaluated), 1) if evaluated else 0.0
            for k, _ in charts_eval.AXES}
    return {
        "pairs": [("场景数", len(rows)), ("已评价场景数", len(evaluated)),
                  ("合同金额合计（万元）", round(sum(r["contract_wan"] or 0 for r in rows), 1)),
                  ("首购首用场景数", sum(bool(r["first_purchase"]) for r in rows)),
                  ("标杆案例数", sum(r["benchmark_case"] for r in rows))],
        "by_domain": [(name, len(v), round(sum(x for x in v if x is not None) / max(1, sum(x is not None for x in v)), 1))
                      for name, v in sorted(domains.items(), key=lambda kv: -len(kv[1]))],
        "by_stage": Counter(r["stage"] for r in rows).most_common(),
        "mean": mean,
    }


# ---- HTML ---------------------------------------------------------------------------------------
EXTRA_CSS = "td.n{text-align:right;white-space:nowrap} .first{color:#1a7f37;font-weight:bold}"


def _page(title: str, pairs: list[tuple[str, Any]], body: str) -> str:
    dl = "".join(f"<dt>{text(k)}</dt><dd>{text(v)}</dd>" for k, v in pairs)
    return (f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{text(title)}</title>'
            f"<style>{CSS}{EXTRA_CSS}</style></head><body><header><h1>{text(title)}</h1>"
            f'<dl class="meta">{dl}</dl></header>{body}'
            '<footer class="sub">由 scenematch 场景供需匹配服务生成。</footer></body></html>\n')


def _html_table(headers: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{text(shown(v))}</td>'
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="stats"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def write_quarterly_html(path: Path, data: QuarterlyData, pairs: list[tuple[str, Any]]) -> None:
    top = sorted({id(s): s for v in data.by_domain.values() for s in v}.values(), key=lambda s: s.key())[:15]
    bars = charts.horizontal_bars("chart-strong", "较强匹配数最多的能力",
                                  [(short(s.capability["title"]), s.strong) for s in top])
    domains = charts.horizontal_bars("chart-domains", "各领域推介能力的较强匹配合计",
                                     [(data_name(c, v), sum(s.strong for s in v)) for c, v in data.by_domain.items()])
    sections = []
    for code, items in data.by_domain.items():
        rows = [[rank, s.capability["title"], s.capability.get("organization"), s.needs, s.strong, f"{s.best:.3f}",
                 "；".join(f"{c['title']}（{c.get('year') or ''} {c.get('stage')}"
                          + (f"，综合评价 {c['evaluation']['overall']}" if c.get("evaluation") else "") + "）"
                          for c in s.cases[:3]) or "—"] for rank, s in enumerate(items, start=1)]
        sections.append(f'<section class="domain"><h2>{text(data_name(code, items))}</h2>'
                        + _html_table(["名次", "能力", "所属机构", "匹配需求数", "较强匹配数", "最高匹配度", "落地案例"],
                                      rows, {0, 3, 4, 5}) + "</section>")
    body = (f'<section class="charts"><figure><figcaption>较强匹配数最多的能力</figcaption>{bars}</figure>'
            f'<figure><figcaption>各领域较强匹配合计</figcaption>{domains}</figure></section>' + "".join(sections))
    path.write_text(_page(data.period.title, pairs, body), encoding="utf-8")


def write_annual_html(path: Path, data: AnnualData, pairs: list[tuple[str, Any]]) -> None:
    stats = annual_stats(data)
    ranked = [r for r in data.rows if r["overall"] is not None][:15]
    bars = charts.horizontal_bars("chart-overall", "综合评价前十五的场景",
                                  [(short(r["title"]), r["overall"]) for r in ranked], unit="分")
    radar = charts_eval.radar("chart-radar", "已评价场景的平均得分", stats["mean"])
    stages = charts.horizontal_bars("chart-stages", "各阶段场景数", list(stats["by_stage"]), unit="个")
    rows = [[r["rank"], r["title"], "、".join(r["domain_names"]), r["lead_org"], r["stage"],
             *evaluation_cells(r["evaluation"]), r["contract_wan"], yes(r["first_purchase"]), yes(r["benchmark_case"]),
             delivered_by(r)] for r in data.rows]
    body = (f'<section class="charts"><figure><figcaption>综合评价排名</figcaption>{bars}</figure>'
            f'<figure><figcaption>平均评价（四个维度）</figcaption>{radar}</figure>'
            f'<figure><figcaption>场景阶段</figcaption>{stages}</figure></section>'
            '<h2>场景排名</h2>' + _html_table(["名次", "场景", "领域", "场景方", "阶段", *EVALUATION_HEADERS,
                                            "合同金额（万元）", "首购首用", "标杆案例", "承担单位"],
                                           rows, {0, 5, 6, 7, 8, 9, 10}))
    path.write_text(_page(data.period.title, pairs + stats["pairs"], body), encoding="utf-8")
