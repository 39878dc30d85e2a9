"""The publication cycle's reports (月度发布、季度推介、年度评选) on the demo corpus, in XLSX and HTML."""
from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

import openpyxl
import pytest

from service.reports.model import BEIJING, CASE_HEADERS
from tests.conftest import CLIENT_H
from tests.test_reports import run_report, use_data_dir_of


def demo_period(client: Any, kind: str) -> str:
    """The period the demo needs were published in (they are stored when the service starts)."""
    created = client.get("/v1/needs/N-smart_water-001").json()["created_at"]
    day = dt.datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(BEIJING).date()
    return f"{day.year}-{day.month:02d}" if kind == "monthly" else f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def sheet_rows(book: Any, name: str) -> list[tuple]:
    return list(book[name].iter_rows(values_only=True))


def test_monthly_report_lists_the_months_needs_with_a_cases_sheet(demo_client) -> None:
    period = demo_period(demo_client, "monthly")
    accepted, status, file = run_report(demo_client, {"kind": "monthly", "period": period, "per_need": 3,
                                                      "filters": {"domain": ["smart_water"]}, "format": "xlsx"})
    assert accepted["kind"] == status["kind"] == "monthly" and status["period"] == period
    total = demo_client.get("/v1/needs", params={"domain": "smart_water", "limit": 1}).json()["total"]
    assert 0 < accepted["needs"] <= total
    book = openpyxl.load_workbook(io.BytesIO(file.content))
    assert book.sheetnames == ["汇总", "智慧水利", "案例"]
    title = sheet_rows(book, "汇总")[0][0]
    assert title.startswith("场景需求月度发布报告（") and f"年{int(period[5:])}月" in title
    cases = sheet_rows(book, "案例")
    assert list(cases[0]) == list(CASE_HEADERS)
    cited = {(r[0], r[2], r[4]): r for r in cases[1:]}
    row = cited[("N-smart_water-001", "C-smart_water-002", "SC-smart_water-05")]
    overall = CASE_HEADERS.index("综合评价")
    assert isinstance(row[overall], float) and 0 <= row[overall] <= 100 and row[CASE_HEADERS.index("阶段")]
    html = run_report(demo_client, {"kind": "monthly", "period": period, "per_need": 3,
                                    "filters": {"domain": ["smart_water"]}, "format": "html"})[2].text
    assert "落地案例" in html and "汉江流域空天地一体化水利感知" in html and "<svg" in html


def test_quarterly_report_ranks_capabilities_per_domain_with_their_cases(demo_client) -> None:
    period = demo_period(demo_client, "quarterly")
    body = {"kind": "quarterly", "period": period, "per_domain": 4, "filters": {"domain": ["smart_water", "forestry"]}}
    accepted, status, file = run_report(demo_client, {**body, "format": "xlsx"})
    assert accepted["needs"] > 0 and status["rows"] <= 8
    book = openpyxl.load_workbook(io.BytesIO(file.content))
    assert book.sheetnames == ["汇总", "能力推介", "案例"]
    ranking = sheet_rows(book, "能力推介")
    assert ranking[0][:4] == ("领域", "名次", "能力编号", "能力名称")
    by_domain: dict[str, list[tuple]] = {}
    for row in ranking[1:]:
        by_domain.setdefault(row[0], []).append(row)
    assert set(by_domain) == {"智慧水利", "林业"} and all(len(v) <= 4 for v in by_domain.values())
    for rows in by_domain.values():
        assert [r[1] for r in rows] == list(range(1, len(rows) + 1))
        strong = [r[8] for r in rows]
        assert strong == sorted(strong, reverse=True)  # the strongest first
    cases = sheet_rows(book, "案例")
    ranked_caps = {r[2] for r in ranking[1:]}
    assert cases[1:] and {r[1] for r in cases[1:]} <= ranked_caps
    # Each case is a scenario the capability delivered, as the scenario list says.
    for row in cases[1:]:
        delivered = demo_client.get("/v1/scenarios", params={"capability_id": row[1], "limit": 50}).json()["items"]
        assert row[3] in {s["id"] for s in delivered}
    html = run_report(demo_client, {**body, "format": "html"})[2].text
    assert html.count("<svg") == 2 and 'id="chart-strong"' in html and "林业" in html


def test_annual_report_ranks_the_years_scenarios_by_evaluation(demo_client) -> None:
    accepted, status, file = run_report(demo_client, {"kind": "annual", "period": "2024", "format": "xlsx"})
    listed = demo_client.get("/v1/scenarios", params={"year": 2024, "limit": 200}).json()
    assert status["scenarios"] == listed["total"] > 0
    book = openpyxl.load_workbook(io.BytesIO(file.content))
    assert book.sheetnames == ["汇总", "场景排名", "案例"]
    rows = sheet_rows(book, "场景排名")
    header = list(rows[0])
    for column in ("技术先进性", "经济效益", "社会效益", "推广价值", "综合评价", "合同金额（万元）", "首购首用"):
        assert column in header
    overall = [r[header.index("综合评价")] for r in rows[1:]]
    evaluated = [v for v in overall if v is not None]
    assert evaluated == sorted(evaluated, reverse=True) and overall[:len(evaluated)] == evaluated
    assert [r[1] for r in rows[1:]] == [s["id"] for s in listed["items"]]  # the API's priority order
    assert {r[header.index("首购首用")] for r in rows[1:]} <= {"是", "否", None}
    labels = {r[0]: r[1] for r in sheet_rows(book, "汇总") if r and r[0]}
    assert labels["场景数"] == listed["total"] and "首购首用场景数" in labels and "评价权重" in labels
    html = run_report(demo_client, {"kind": "annual", "period": "2024", "format": "html"})[2].text
    assert {"chart-overall", "chart-radar", "chart-stages"} <= set(re.findall(r'<svg[^>]* id="([^"]+)"', html))
    assert not re.search(r'(src|href)="https?://', html)  # self-contained: no CDN, no external asset


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "annual", "period": "2024", "format": "csv"}, "format"),
    ({"kind": "quarterly", "format": "xlsx"}, "period"),
    ({"kind": "quarterly", "period": "2026-Q5"}, "period"),
    ({"kind": "monthly", "period": "2026-3"}, "period"),
    ({"kind": "monthly", "period": "2026-03", "need_ids": ["N-smart_water-001"]}, "need_ids"),
    ({"kind": "monthly", "period": "2026-03", "filters": {"since": "2026-03-02"}}, "filters"),
    ({"need_ids": ["N-smart_water-001"], "period": "2026-03"}, "period"),
    ({"kind": "weekly", "period": "2026-03"}, "kind"),
    ({"kind": "monthly", "period": "1999-01"}, "period"),  # a month without needs
])
def test_bad_cycle_requests_name_the_field(demo_client, body: dict[str, Any], field: str) -> None:
    response = demo_client.post("/v1/reports", json=body, headers=CLIENT_H)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field


def test_cli_writes_the_cycle_reports(demo_client, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from service.cli import app

    use_data_dir_of(demo_client, monkeypatch)
    out = tmp_path / "年度.xlsx"
    result = CliRunner().invoke(app, ["report", "--kind", "annual", "--period", "2023", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert openpyxl.load_workbook(out).sheetnames == ["汇总", "场景排名", "案例"]
    monthly = tmp_path / "月度.html"
    result = CliRunner().invoke(app, ["report", "--kind", "monthly", "--period", demo_period(demo_client, "monthly"),
                                      "--domain", "forestry", "--per-need", "2", "--out", str(monthly)])
    assert result.exit_code == 0, result.output
    assert "场景需求月度发布报告" in monthly.read_text(encoding="utf-8")
    bad = CliRunner().invoke(app, ["report", "--kind", "annual", "--period", "2023", "--format", "csv"])
    assert bad.exit_code == 2 and "format" in bad.output
