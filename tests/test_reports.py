"""Batch match reports on the demo corpus with the real model (read-only shared service).

The report files are opened the way their readers open them: XLSX with openpyxl,
CSV with the csv module, JSONL line by line, HTML in headless Chromium.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import openpyxl
import pytest

from models.taxonomy import default_taxonomy
from service.reports.model import COLUMNS, CONTACT_COLUMNS, DOMAIN_COLUMN
from tests.conftest import ADMIN_H, CLIENT_H

CHROMIUM = os.environ.get("SCENEMATCH_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HEADERS = [c.header for c in COLUMNS]


def run_report(client, body: dict[str, Any], headers=CLIENT_H, timeout: float = 600.0):
    """Create a report, wait for its job, download it; returns (accepted, status, file response)."""
    accepted = client.post("/v1/reports", json=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert accepted.headers["location"] == f"/v1/reports/{job_id}"
    deadline = time.monotonic() + timeout  # only so a broken job cannot hang the suite
    while True:
        status = client.get(f"/v1/reports/{job_id}", headers=headers).json()
        if status["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["status"] == "succeeded", status
    file = client.get(status["file_url"], headers=headers)
    assert file.status_code == 200, file.text
    return accepted.json(), status, file


def open_needs(client, domain: str, headers=CLIENT_H) -> list[dict[str, Any]]:
    """The needs a report on this domain should cover: open or matching, visible to the caller."""
    items = client.get("/v1/needs", params={"domain": domain, "limit": 100}, headers=headers).json()["items"]
    return [n for n in items if n["status"] in ("open", "matching")]


def test_xlsx_summary_first_then_a_sheet_per_domain(demo_client):
    domains = ["smart_water", "forestry"]
    accepted, status, file = run_report(
        demo_client, {"filters": {"domain": domains}, "per_need": 3, "format": "xlsx"})
    expected = {d: open_needs(demo_client, d) for d in domains}
    assert accepted["needs"] == sum(len(v) for v in expected.values()) == status["needs"]
    assert file.headers["content-type"] == \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    disposition = file.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="scenematch-report-') and ".xlsx\"" in disposition
    chinese = disposition.split("filename*=UTF-8''")[1]
    assert unquote(chinese).startswith("场景匹配报告-") and unquote(chinese).endswith(".xlsx")

    book = openpyxl.load_workbook(io.BytesIO(file.content))
    names = [default_taxonomy().name(d) for d in domains]
    assert book.sheetnames == ["汇总", *names, "案例"]  # the cases the matches cite come last
    for domain, name in zip(domains, names):
        sheet = book[name]
        rows = list(sheet.iter_rows(values_only=True))
        assert list(rows[0]) == HEADERS  # Chinese headers, no contact columns for a client token
        assert sheet.freeze_panes == "A2"
        assert sheet.auto_filter.ref == f"A1:O{len(rows)}"
        assert sheet.column_dimensions["O"].width >= 40  # the explanation column is wide…
        assert sheet.cell(2, 15).alignment.wrap_text  # …and wrapped
        assert len(rows) - 1 == len(expected[domain]) * 3  # needs × matches
        assert {r[0] for r in rows[1:]} == {n["id"] for n in expected[domain]}
        for row in rows[1:]:
            assert row[5] in (1, 2, 3) and 0 <= row[11] <= 1 and row[14].endswith("。")
    summary = [r for r in book["汇总"].iter_rows(values_only=True)]
    labels = {r[0]: r[1] for r in summary if r and r[0]}
    assert labels["索引版本"] == status["index_version"] and labels["语义模型"] == status["model"]
    assert labels["匹配条数"] == status["matches"] == status["rows"] == accepted["needs"] * 3
    per_domain = {r[0]: r for r in summary if r and r[0] in names}
    assert [per_domain[n][1] for n in names] == [len(expected[d]) for d in domains]
    assert "匹配度分布" in labels and len(book["汇总"]._charts) == 1


def test_csv_by_ids_with_bom_and_unknown_ids(demo_client):
    ids = ["N-smart_water-001", "N-healthcare-002", "N-forestry-003", "N-does-not-exist", "N-smart_water-001"]
    accepted, status, file = run_report(demo_client, {"need_ids": ids, "per_need": 2, "format": "csv"})
    assert accepted["unknown_need_ids"] == status["unknown_need_ids"] == ["N-does-not-exist"]
    assert file.headers["content-type"] == "text/csv; charset=utf-8"
    assert file.content.startswith(b"\xef\xbb\xbf")  # Excel reads the Chinese as UTF-8
    rows = list(csv.reader(io.StringIO(file.content.decode("utf-8-sig"))))
    assert rows[0] == [DOMAIN_COLUMN.header, *HEADERS]
    assert len(rows) - 1 == 3 * 2  # duplicates count once
    # Grouped by domain in the policy's order, request order within a domain.
    order = list(default_taxonomy().domains)
    domains = [r[1].split("-")[1] for r in rows[1:]]
    assert domains == sorted(domains, key=order.index)


def test_jsonl_has_full_explanations_and_respects_min_score(demo_client):
    _, status, file = run_report(demo_client, {"filters": {"domain": ["healthcare"]}, "per_need": 4,
                                               "min_score": 0.5, "format": "jsonl"})
    assert file.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in file.text.splitlines()]
    assert len(lines) == status["rows"] and status["needs"] == len({x["need"]["id"] for x in lines})
    matched = [x for x in lines if x["capability"] is not None]
    assert matched and status["matches"] == len(matched)
    for line in matched:
        assert line["score"] >= 0.5 and 1 <= line["rank"] <= 4
        explanation = line["explanation"]
        assert {"summary", "shared_terms", "evidence", "domain_match", "signals"} <= set(explanation)
        assert line["need"]["contact"] is None and line["capability"]["contact"] is None
        assert line["capability"]["visibility"] == "public" and line["need"]["domain"] == "healthcare"
    for line in lines:
        if line["capability"] is None:
            assert "0.50" in line["note"]  # says why the need has no match


def _require_browser() -> None:
    missing = []
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing.append(f"Chromium at {CHROMIUM} (scripts/test.sh installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("the HTML report test needs " + " and ".join(missing))
        pytest.skip("the HTML report test needs " + " and ".join(missing))


def test_html_report_renders_its_charts_in_chromium(demo_client, tmp_path):
    _require_browser()
    from playwright.sync_api import sync_playwright

    domains = ["smart_water", "emergency_management", "forestry"]
    _, status, file = run_report(demo_client, {"filters": {"domain": domains}, "per_need": 3,
                                               "format": "html"})
    assert file.headers["content-type"] == "text/html; charset=utf-8"
    page_file = tmp_path / "report.html"
    page_file.write_bytes(file.content)
    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith("file:") else None)
            page.goto(page_file.as_uri(), wait_until="load")
            assert page.title().startswith("场景供需匹配报告")
            names = [d.name for code, d in default_taxonomy().domains.items() if code in domains]
            domain_bars = page.locator("#chart-domains rect.bar")
            assert domain_bars.count() == len(domains)
            for i, name in enumerate(names):
                bar = domain_bars.nth(i)
                assert bar.get_attribute("data-label") == name
                assert int(bar.get_attribute("data-value")) > 0 and bar.bounding_box()["width"] > 0
            score_bars = page.locator("#chart-scores rect.bar")
            assert score_bars.count() == 10
            values = [int(score_bars.nth(i).get_attribute("data-value")) for i in range(10)]
            assert sum(values) == status["matches"]
            heights = [score_bars.nth(i).bounding_box()["height"] for i in range(10)]
            tallest = values.index(max(values))
            assert heights[tallest] == max(heights) > 0
            assert all((h > 0) == (v > 0) for h, v in zip(heights, values))
            # Painted, not just present: the charts' screenshots contain the bars' colour.
            probe = browser.new_page()
            for chart in ("#chart-domains", "#chart-scores"):
                shot = base64.b64encode(page.locator(chart).screenshot()).decode()
                assert probe.evaluate(COUNT_BLUE_PIXELS, shot) > 500, chart
            assert page.locator("section.domain").count() == len(domains)
            assert page.locator("section.domain table.matches tbody.need").count() == status["needs"]
            page.emulate_media(media="print")
            breaks = page.eval_on_selector("section.domain", "e => getComputedStyle(e).breakBefore")
            assert breaks == "page"
            assert page.eval_on_selector("nav.toc", "e => getComputedStyle(e).display") == "none"
        finally:
            browser.close()
    assert outside == []  # self-contained: no script, font, image or style from elsewhere


# Counts clearly blue pixels (the bars; not the white background or grey text) of a PNG,
# decoded by the browser itself so the test needs no imaging library.
COUNT_BLUE_PIXELS = """async (b64) => {
  const img = new Image(); img.src = 'data:image/png;base64,' + b64; await img.decode();
  const canvas = document.createElement('canvas'); canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext('2d'); ctx.drawImage(img, 0, 0);
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data; let n = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i + 2] > 100 && px[i + 2] - px[i] > 40) n++;
  return n;
}"""


def test_restricted_data_only_with_the_admin_token(demo_client):
    domain = "artificial_intelligence"
    hidden = "N-artificial_intelligence-004"  # restricted in the demo corpus
    public = {n["id"] for n in open_needs(demo_client, domain)}
    assert hidden not in public
    accepted, _, file = run_report(demo_client, {"need_ids": [hidden, *sorted(public)[:2]], "per_need": 2,
                                                 "format": "jsonl"})
    assert accepted["unknown_need_ids"] == [hidden]  # its existence is not revealed either
    assert hidden not in file.text
    refused = demo_client.post("/v1/reports", json={"filters": {"domain": [domain]},
                                                    "include_restricted": True}, headers=CLIENT_H)
    assert refused.status_code == 403 and refused.json()["error"]["details"][0]["field"] == "include_restricted"

    _, status, file = run_report(demo_client, {"filters": {"domain": [domain]}, "per_need": 2,
                                               "format": "csv", "include_restricted": True}, headers=ADMIN_H)
    rows = list(csv.reader(io.StringIO(file.content.decode("utf-8-sig"))))
    assert rows[0][-2:] == [c.header for c in CONTACT_COLUMNS]
    assert hidden in {r[1] for r in rows[1:]}
    assert any(r[-2] for r in rows[1:] if r[1] == hidden)  # the restricted need's contact is there
    # A client token can neither follow nor download a report with restricted data.
    for url in (f"/v1/reports/{status['job_id']}", status["file_url"]):
        assert demo_client.get(url, headers=CLIENT_H).status_code == 403
    assert status["job_id"] not in {r["job_id"] for r in demo_client.get("/v1/reports", headers=CLIENT_H).json()}


@pytest.mark.parametrize("body, status, field", [
    ({"need_ids": []}, 422, "need_ids"),
    ({"filters": {"domain": ["smart_water"]}, "format": "pdf"}, 422, "format"),
    ({"filters": {"domain": ["atlantis"]}}, 422, "filters.domain"),
    ({"filters": {"since": "2026-02-01", "until": "2026-01-01"}}, 422, "filters"),
    ({"filters": {}, "per_need": 0}, 422, "per_need"),
    ({"filters": {}, "min_score": 1.5}, 422, "min_score"),
    ({"need_ids": ["N-smart_water-001"], "filters": {}}, 422, "body"),
    ({"per_need": 5}, 422, "body"),
    ({"need_ids": ["../../etc/passwd"]}, 422, "need_ids.0"),
])
def test_bad_report_requests(demo_client, body, status, field):
    r = demo_client.post("/v1/reports", json=body, headers=CLIENT_H)
    assert r.status_code == status, r.text
    assert field in {d["field"] for d in r.json()["error"]["details"]}


def test_empty_selections_and_unknown_reports(demo_client):
    r = demo_client.post("/v1/reports", json={"need_ids": ["N-nope-1", "N-nope-2"]}, headers=CLIENT_H)
    assert r.status_code == 422 and r.json()["error"]["code"] == "empty_selection"
    assert r.json()["error"]["details"][0]["unknown_need_ids"] == ["N-nope-1", "N-nope-2"]
    r = demo_client.post("/v1/reports", json={"filters": {"since": "2100-01-01"}}, headers=CLIENT_H)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "filters"
    assert demo_client.post("/v1/reports", json={"filters": {}}).status_code == 401
    assert demo_client.get("/v1/reports/" + "0" * 32, headers=CLIENT_H).status_code == 404
    assert demo_client.get("/v1/reports/" + "0" * 32 + "/file", headers=CLIENT_H).status_code == 404
    for bad in ("..%2F..%2Fscenematch.db", "ABC", "0" * 31 + "g"):
        r = demo_client.get(f"/v1/reports/{bad}/file", headers=CLIENT_H)
        assert r.status_code in (404, 422) and "error" in r.json()


def test_openapi_documents_reports_and_their_auth(demo_client):
    paths = demo_client.get("/openapi.json").json()["paths"]
    assert {"/v1/reports", "/v1/reports/{job_id}", "/v1/reports/{job_id}/file"} <= set(paths)
    assert "admin token" in paths["/v1/reports"]["post"]["description"]


def use_data_dir_of(client, monkeypatch) -> None:
    """Point the command line at the data dir (and model cache) of a running test service."""
    settings = client.app.state.scenematch.settings
    monkeypatch.setenv("SCENEMATCH_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SCENEMATCH_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.delenv("SCENEMATCH_DATABASE_URL", raising=False)


def test_cli_report_on_the_same_data_dir(demo_client, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from service.cli import app

    use_data_dir_of(demo_client, monkeypatch)
    out = tmp_path / "报告.xlsx"
    result = CliRunner().invoke(app, ["report", "--domain", "smart_water", "--per-need", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["汇总", "智慧水利", "案例"]
    assert book["智慧水利"].max_row - 1 == 2 * len(open_needs(demo_client, "smart_water"))
    bad = CliRunner().invoke(app, ["report", "--domain", "atlantis"])
    assert bad.exit_code == 2 and "atlantis" in bad.output
    empty = CliRunner().invoke(app, ["report", "--need-ids", "N-nope-1", "--out", str(tmp_path / "x.csv")])
    assert empty.exit_code == 2 and not (tmp_path / "x.csv").exists()


# ---- unit tests of the writers and the file store (synthetic rows) --------------------------
def _meta(**overrides) -> Any:
    import datetime as dt

    from service.reports.model import BEIJING, ReportMeta

    values = dict(title="场景供需匹配报告", generated_at=dt.datetime(2026, 1, 5, 9, 30, tzinfo=BEIJING),
                  index_version="v1", model="m", per_need=2, min_score=None, include_restricted=False,
                  selection="测试", needs=1, domains=[("smart_water", "智慧水利", 1)])
    values.update(overrides)
    return ReportMeta(**values)


def _hostile_result() -> Any:
    from service.reports.model import MatchRow, NeedResult

    need = {"id": "N-1", "title": '=HYPERLINK("http://evil.example","点我")\x07', "publisher": "+cmd|' /C calc'!A0",
            "region": "武汉市", "status": "open", "domain": "smart_water", "domain_name": "智慧水利", "contact": None}
    matches = [MatchRow(rank, 0.9 - rank / 10, {"id": f"C-{rank}", "title": "@SUM(1+1)", "organization": "-2+3",
                                                  "org_type": "enterprise", "region": "武汉市", "contact": None},
                        ["无人机"], "说明<script>alert(1)</script>。", {"summary": "说明"}) for rank in (1, 2)]
    return NeedResult(need, matches)


def test_writers_keep_record_text_inert(tmp_path):
    from service.reports.html_writer import HtmlReport
    from service.reports.model import ReportStats
    from service.reports.text_writers import CsvReport
    from service.reports.xlsx_writer import XlsxReport

    result, stats = _hostile_result(), ReportStats()
    stats.add(result)
    for name, writer_class in (("r.csv", CsvReport), ("r.xlsx", XlsxReport), ("r.html", HtmlReport)):
        writer = writer_class(tmp_path / name, _meta())
        writer.write(result)
        writer.close(stats)
    rows = list(csv.reader(io.StringIO((tmp_path / "r.csv").read_text(encoding="utf-8-sig"))))
    assert rows[1][2] == "'" + '=HYPERLINK("http://evil.example","点我")'  # no formula, no control char
    assert rows[1][3].startswith("'+") and rows[1][8] == "'@SUM(1+1)" and rows[1][9] == "'-2+3"
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx")["智慧水利"]
    assert sheet["B2"].data_type == "s" and sheet["B2"].value.startswith("=HYPERLINK")
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html and "\x07" not in html
    assert not list(tmp_path.glob("*.body"))


def test_xlsx_abort_leaves_no_temporary_files(tmp_path):
    from openpyxl.worksheet import _writer

    from service.reports.xlsx_writer import XlsxReport

    writer = XlsxReport(tmp_path / "r.xlsx", _meta())
    writer.write(_hostile_result())
    open_files = list(_writer.ALL_TEMP_FILES)
    assert open_files
    writer.abort()
    assert not any(os.path.exists(p) for p in open_files)


def test_sheet_titles_are_valid_and_unique():
    from service.reports.xlsx_writer import sheet_title

    taken: set[str] = {"汇总"}
    assert sheet_title("a/b:c*d?[e]", taken) == "a_b_c_d__e_"
    long = "长" * 40
    first, second = sheet_title(long, taken), sheet_title(long, taken)
    assert len(first) == len(second) == 31 and first != second


def test_report_files_stay_in_their_folder_and_expire(tmp_path):
    from service.reports import storage

    with pytest.raises(ValueError):
        storage.report_path(tmp_path, "../../etc/passwd", "csv")
    with pytest.raises(ValueError):
        storage.report_path(tmp_path, "0" * 32, "exe")
    old = storage.report_path(tmp_path, "a" * 32, "csv")
    fresh = storage.report_path(tmp_path, "b" * 32, "xlsx")
    for path in (old, fresh):
        path.write_text("x")
    os.utime(old, (time.time() - 31 * 86400,) * 2)
    assert storage.cleanup(tmp_path, retention_days=30) == 1
    assert not old.exists() and fresh.exists()
    name, fallback = storage.download_names(_meta().generated_at, "csv", "智慧/水利")
    assert name == "场景匹配报告-智慧_水利-20260105-0930.csv" and fallback.isascii()
    header = storage.content_disposition(name, fallback)
    assert header.isascii() and "filename*=UTF-8''%E5%9C%BA" in header


def test_selection_by_filters_and_ids_on_each_backend(api):
    import datetime as dt

    from models.database import session_scope
    from service.reports.model import BEIJING
    from service.reports.schemas import ReportFilters
    from service.reports.selection import EmptySelection, select_needs

    needs = {
        "w1": {"domain": "smart_water", "region": "武汉市", "status": "open"},
        "w2": {"domain": "smart_water", "region": "宜昌市", "status": "matching"},
        "w3": {"domain": "smart_water", "region": "武汉市", "status": "closed"},
        "f1": {"domain": "forestry", "region": "武汉市", "status": "open"},
        "r1": {"domain": "forestry", "region": "武汉市", "status": "open", "visibility": "restricted"},
    }
    for need_id, fields in needs.items():
        r = api.put(f"/v1/needs/{need_id}", json={"title": f"需求{need_id}", **fields}, headers=CLIENT_H)
        assert r.status_code in (200, 201), r.text
    state = api.app.state.scenematch
    today = dt.datetime.now(BEIJING).date()

    def chosen(need_ids=None, admin=False, **filters):
        with session_scope(state.sessions) as session:
            selection = select_needs(session, state.taxonomy, need_ids,
                                     None if need_ids else ReportFilters(**filters), admin)
        return selection

    everything = chosen()
    assert everything.need_ids == ["w1", "w2", "f1"]  # policy order of domains; open + matching only
    assert [(c, n) for c, _, n in everything.domains] == [("smart_water", 2), ("forestry", 1)]
    assert chosen(admin=True).need_ids == ["w1", "w2", "f1", "r1"]
    assert chosen(status=["closed"]).need_ids == ["w3"]
    assert chosen(region=["武汉市"], domain=["smart_water"]).need_ids == ["w1"]
    assert chosen(since=today, until=today).need_ids == ["w1", "w2", "f1"]
    with pytest.raises(EmptySelection):
        chosen(since=today + dt.timedelta(days=1))
    with pytest.raises(EmptySelection):
        chosen(until=today - dt.timedelta(days=1))
    by_id = chosen(["f1", "r1", "zz", "w2", "f1"])
    assert by_id.need_ids == ["w2", "f1"] and by_id.unknown_ids == ["r1", "zz"]
    # Without a loaded index a report cannot be made: 503, as for matching.
    r = api.post("/v1/reports", json={"need_ids": ["w1"]}, headers=CLIENT_H)
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
