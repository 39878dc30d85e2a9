"""XLSX: a summary sheet first, then one sheet per domain, written row by row (openpyxl write-only).

Every write-only sheet streams into its own temporary file, so the summary sheet is
created first (it stays first) and filled last, when the statistics are known.
"""
from __future__ import annotations

import contextlib
from copy import copy
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.chart import BarChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.styles.cell_style import StyleArray
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from service.reports.model import (
    CASE_HEADERS,
    CASE_WIDTHS,
    SCORE_BUCKETS,
    NeedResult,
    ReportMeta,
    ReportStats,
    clean_text,
    columns,
    flat_rows,
)

SUMMARY_TITLE = "汇总"
HEADER_FONT = Font(bold=True, color="FFFFFF")
HEADER_FILL = PatternFill("solid", fgColor="2F5D8A")
TITLE_FONT = Font(bold=True, size=14)
SECTION_FONT = Font(bold=True, size=12, color="2F5D8A")
WRAP = Alignment(wrap_text=True, vertical="top")
TOP = Alignment(vertical="top")
INVALID_TITLE_CHARS = str.maketrans({c: "_" for c in "[]:*?/\\"})


def sheet_title(name: str, taken: set[str]) -> str:
    """Excel sheet names: at most 31 characters, none of []:*?/\\, unique ignoring case."""
    base = (name.translate(INVALID_TITLE_CHARS).strip("'") or "未命名")[:31]
    title, n = base, 2
    while title.lower() in taken:
        suffix = f"({n})"
        title, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(title.lower())
    return title


class XlsxReport:
    def __init__(self, path: Path, meta: ReportMeta):
        self.path, self.meta = path, meta
        self.book = Workbook(write_only=True)
        self.summary = self.book.create_sheet(SUMMARY_TITLE)
        self.cols = columns(meta.with_contacts)
        self.taken = {SUMMARY_TITLE.lower()}
        self.sheet: WriteOnlyWorksheet | None = None
        self.domain: str | None = None
        self.sheet_rows = 0
        wrapped = self._style(alignment=WRAP)
        self.styles = {c.key: wrapped for c in self.cols if c.wrap}
        self.styles["score"] = self._style(alignment=TOP, number_format="0.000")

    # ---- domain sheets --------------------------------------------------------------
    def _style(self, alignment: Alignment | None = None, number_format: str | None = None) -> StyleArray:
        """A registered style to copy into cells: assigning style objects per cell hashes them each time."""
        cell = WriteOnlyCell(self.summary)
        if alignment is not None:
            cell.alignment = alignment
        if number_format is not None:
            cell.number_format = number_format
        return cell._style

    def _cell(self, sheet: WriteOnlyWorksheet, value: Any, style: StyleArray | None = None,
              font: Font | None = None) -> Any:
        value = clean_text(value)
        formula_like = isinstance(value, str) and value.startswith("=")
        if style is None and font is None and not formula_like:
            return value
        cell = WriteOnlyCell(sheet, value=value)
        if formula_like:
            cell.data_type = "s"  # text from records is never a formula
        if style is not None:
            cell._style = copy(style)
        if font is not None:
            cell.font = font
        return cell

    def _start_sheet(self, domain: str, name: str) -> None:
        self._close_sheet()
        sheet = self.book.create_sheet(sheet_title(name, self.taken))
        # Freeze panes and widths go before the first row: write-only sheets emit them first.
        sheet.freeze_panes = "A2"
        for i, column in enumerate(self.cols, start=1):
            sheet.column_dimensions[get_column_letter(i)].width = column.width
        sheet.print_title_rows = "1:1"
        sheet.page_setup.orientation = "landscape"
        sheet.page_setup.fitToWidth = 1
        sheet.page_setup.fitToHeight = 0
        sheet.sheet_properties.pageSetUpPr.fitToPage = True
        header = []
        for column in self.cols:
            cell = WriteOnlyCell(sheet, value=column.header)
            cell.font, cell.fill, cell.alignment = HEADER_FONT, HEADER_FILL, WRAP
            header.append(cell)
        sheet.append(header)
        self.sheet, self.domain, self.sheet_rows = sheet, domain, 0

    def _close_sheet(self) -> None:
        if self.sheet is not None:
            last = get_column_letter(len(self.cols))
            # The filter is written after the rows, so its range can be the final one.
            self.sheet.auto_filter.ref = f"A1:{last}{self.sheet_rows + 1}"
        self.sheet = None

    def write(self, result: NeedResult) -> None:
        if self.sheet is None or result.domain != self.domain:
            self._start_sheet(result.domain, result.need.get("domain_name") or "未分类")
        assert self.sheet is not None
        for row in flat_rows(result, self.cols):
            self.sheet.append([self._cell(self.sheet, v, self.styles.get(c.key)) if v is not None else None
                               for v, c in zip(row, self.cols)])
            self.sheet_rows += 1

    # ---- summary sheet --------------------------------------------------------------
    def _summary(self, stats: ReportStats) -> None:
        ws = self.summary
        for letter, width in zip("ABCDEFG", (22, 12, 14, 12, 12, 12, 12)):
            ws.column_dimensions[letter].width = width
        row_no = 0

        def put(values: list[Any], font: Font | None = None) -> None:
            nonlocal row_no
            ws.append([self._cell(ws, v, font=font) if v is not None else None for v in values])
            row_no += 1

        put([self.meta.title], TITLE_FONT)
        for label, value in self.meta.rows_as_pairs():
            put([label, value])
        put(["匹配条数", stats.matches])
        put([])
        put(["按领域统计"], SECTION_FONT)
        put(["领域", "需求数", "有匹配的需求数", "匹配条数", "平均匹配度", "最高匹配度"], Font(bold=True))
        names = {code: name for code, name, _ in self.meta.domains}
        for code, group in stats.by_domain.items():
            put([names.get(code, code or "未分类"), group.needs, group.needs_matched, group.matches,
                 round(group.mean, 3), round(group.best, 3)])
        put([])
        put(["按地区统计"], SECTION_FONT)
        put(["地区", "需求数", "有匹配的需求数", "匹配条数", "平均匹配度"], Font(bold=True))
        for region, group in sorted(stats.by_region.items(), key=lambda kv: (-kv[1].needs, kv[0])):
            put([region, group.needs, group.needs_matched, group.matches, round(group.mean, 3)])
        put([])
        put(["匹配度分布"], SECTION_FONT)
        put(["匹配度区间", "匹配条数", "占比"], Font(bold=True))
        first = row_no + 1
        for i, count in enumerate(stats.buckets):
            put([ReportStats.bucket_label(i), count,
                 round(count / stats.matches, 4) if stats.matches else 0.0])
        if stats.matches:
            chart = BarChart()
            chart.title, chart.y_axis.title, chart.x_axis.title = "匹配度分布", "匹配条数", "匹配度"
            chart.legend = None
            chart.add_data(Reference(ws, min_col=2, min_row=first, max_row=first + SCORE_BUCKETS - 1))
            chart.set_categories(Reference(ws, min_col=1, min_row=first, max_row=first + SCORE_BUCKETS - 1))
            chart.width, chart.height = 18, 8
            ws.add_chart(chart, "H2")

    def _cases(self, stats: ReportStats) -> None:
        """案例: every case the matches cite, with the scenario's evaluation and outcome."""
        sheet = self.book.create_sheet(sheet_title("案例", self.taken))
        sheet.freeze_panes = "A2"
        for i, width in enumerate(CASE_WIDTHS, start=1):
            sheet.column_dimensions[get_column_letter(i)].width = width
        header = []
        for name in CASE_HEADERS:
            cell = WriteOnlyCell(sheet, value=name)
            cell.font, cell.fill, cell.alignment = HEADER_FONT, HEADER_FILL, WRAP
            header.append(cell)
        sheet.append(header)
        for row in stats.case_rows:
            sheet.append([self._cell(sheet, v) for v in row])
        if not stats.case_rows:
            sheet.append(["本报告的匹配未引用已落地的类似场景。"])
        if stats.cases_left_out:
            sheet.append([f"另有 {stats.cases_left_out} 条案例引用未列出（超过 {len(stats.case_rows)} 行）。"])
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(CASE_HEADERS))}{len(stats.case_rows) + 1}"

    def close(self, stats: ReportStats) -> None:
        self._close_sheet()
        self._cases(stats)
        self._summary(stats)
        self.book.save(self.path)

    def abort(self) -> None:
        """Remove the sheets' temporary files (openpyxl only removes them on save or at exit)."""
        for sheet in self.book.worksheets:
            writer = getattr(sheet, "_writer", None)
            if writer is None:
                continue
            with contextlib.suppress(Exception):
                if sheet._rows is not None:
                    sheet._rows.close()
                writer.xf.close()
            with contextlib.suppress(Exception):
                writer.cleanup()
