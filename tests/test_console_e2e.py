"""The web console, end to end: the real service (demo corpus, real model and index) in headless Chromium.

Screenshots land in tests/artifacts/ (ignored by git). Locally the browser tests skip without Chromium
or Playwright; in CI they fail instead (scripts/test.sh installs Debian's chromium).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.errors import ApiError
from service.routes.console import asset_path
from tests.conftest import ADMIN, make_settings
from tests.e2e.browser import VIEWPORT, launch, require_browser, screenshot
from tests.e2e.live_server import LiveServer

QUERY = "山洪灾害监测预警"
BROWSER_TIMEOUT_MS = 60_000
JOB_TIMEOUT_MS = 600_000  # a full rebuild on a loaded 2-core machine


# ---- the page and its assets, without a browser ----------------------------------------------

@pytest.fixture(scope="module")
def plain_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("console-plain"))  # no search engine: fast
    with TestClient(create_app(settings)) as client:
        yield client


def test_console_page_is_served_at_root_with_security_and_cache_headers(plain_client: TestClient) -> None:
    page = plain_client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in page.text
    assert page.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"

    script = plain_client.get("/console/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")  # required for ES modules
    assert plain_client.get("/console/style.css").headers["content-type"].startswith("text/css")

    again = plain_client.get("/console/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304 and again.content == b""

    assert plain_client.get("/console", follow_redirects=False).headers["location"] == "/"


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/../routes/console.py",
                                  "/console/%2e%2e/settings.py", "/console/"])
def test_console_refuses_unknown_or_outside_files(plain_client: TestClient, path: str) -> None:
    response = plain_client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("name", ["../app.py", "../../pyproject.toml", "/etc/passwd", "index.html/../../app.py"])
def test_console_asset_lookup_stays_inside_its_folder(name: str) -> None:
    with pytest.raises(ApiError) as refused:
        asset_path(name)
    assert refused.value.status == 404


def test_console_leaves_the_api_docs_alone(plain_client: TestClient) -> None:
    schema = plain_client.get("/openapi.json").json()
    assert "/" not in schema["paths"] and not any(p.startswith("/console") for p in schema["paths"])
    assert "/v1/search" in schema["paths"]
    assert plain_client.get("/docs").status_code == 200


# ---- in the browser ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory, browser: object) -> Iterator[LiveServer]:
    """A writable service of its own (the reindex test changes the active version)."""
    root = tmp_path_factory.mktemp("console-e2e")
    server = LiveServer(make_settings(root, None, load_demo=True, build_index_on_start=True)).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:  # noqa: ANN001
    context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", accept_downloads=True)
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(message) -> None:  # noqa: ANN001
        # Chromium logs every 4xx/5xx fetch; those are expected here (bad token, not ready, unknown id).
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)  # e.g. a Content-Security-Policy violation

    tab.on("console", on_console)
    yield tab
    context.close()
    assert not errors, f"JavaScript errors in {request.node.name}: {errors}"


def require_endpoint(server: LiveServer, method: str, path: str, **kwargs: object) -> None:
    """xfail fast while an endpoint of another issue (admin: 5, reports: 6) is not in the service yet."""
    response = httpx.request(method, server.url + path, timeout=30, **kwargs)
    if response.status_code == 404 and response.json().get("error", {}).get("message") == "Not Found":
        pytest.xfail(f"{method} {path} is not implemented yet")


def search(page, server: LiveServer, text: str = QUERY) -> None:  # noqa: ANN001
    page.goto(f"{server.url}/#/search")
    page.fill("#q", text)
    page.press("#q", "Enter")  # Enter searches: no need to reach the button


def card_texts(page, selector: str) -> list[str]:  # noqa: ANN001
    return page.locator(f".results > li {selector}").all_inner_texts()


def test_search_shows_explained_result_cards(page, demo_server: LiveServer) -> None:  # noqa: ANN001
    search(page, demo_server)
    page.wait_for_selector(".results > li")
    assert re.search(r"显示 \d+ 条能力", page.inner_text("#result-status"))
    first = page.locator(".results > li").first
    assert first.get_attribute("data-kind") == "capability"
    assert 0 < float(first.locator(".score-value").inner_text()) <= 1
    assert first.locator(".summary").inner_text().strip()
    assert first.locator(".terms .chip").count() >= 1
    # Shared terms are marked in both texts: the query and the match's description.
    query_block, match_block = first.locator(".texts .text-block").all()
    assert query_block.locator("mark.term").count() >= 1
    assert match_block.locator("mark.term").count() >= 1
    assert first.locator(".evidence-pair").count() >= 1
    assert "语义相似度" in first.locator(".evidence-pair").first.inner_text()
    assert first.locator(".badges .badge.domain").count() >= 1
    # Signals are folded away until asked for.
    signals = first.locator("details.signals")
    assert not signals.locator("table").is_visible()
    signals.locator("summary").click()
    assert signals.locator("tbody tr").count() >= 3
    assert "#/search?q=" in page.url
    screenshot(page, "search")


def test_target_switch_finds_needs(page, demo_server: LiveServer) -> None:  # noqa: ANN001
    page.goto(f"{demo_server.url}/#/search")
    page.check("input[name=target][value=needs]", force=True)  # the radio is styled as a segment
    assert page.locator("#org-type").is_hidden()  # org type only applies to capabilities
    page.fill("#q", "人形机器人上料")
    page.press("#q", "Enter")
    page.wait_for_selector(".results > li")
    kinds = {li.get_attribute("data-kind") for li in page.locator(".results > li").all()}
    assert kinds == {"need"}
    assert "条需求" in page.inner_text("#result-status")


def test_domain_and_region_filters(page, demo_server: LiveServer) -> None:  # noqa: ANN001
    page.goto(f"{demo_server.url}/#/search")
    page.click(".domain-picker summary")
    page.check("#search-domain-smart_water")
    assert "已选 1 个" in page.inner_text(".domain-picker summary")
    page.fill("#q", QUERY)
    page.press("#q", "Enter")
    page.wait_for_selector(".results > li")
    badges = page.locator(".results > li").all()
    assert badges and all("智慧水利" in li.locator(".badges").inner_text() for li in badges)
    assert "d=smart_water" in page.url
    screenshot(page, "filter-domain")

    page.fill("#region", "武汉市")
    with page.expect_response("**/v1/search"):
        page.click("form.search-form button[type=submit]")
    page.wait_for_function("() => document.getElementById('result-status').textContent.startsWith('显示')")
    metas = card_texts(page, ".card-title .meta")
    assert metas and all("武汉市" in meta for meta in metas)

    page.fill("#region", "不存在市")
    page.press("#q", "Enter")
    page.wait_for_selector(".message.empty")
    assert "没有找到匹配结果" in page.inner_text(".message.empty")
    assert page.locator(".results > li").count() == 0
    screenshot(page, "no-results")


def test_open_a_match_and_follow_it_back(page, demo_server: LiveServer) -> None:  # noqa: ANN001
    search(page, demo_server)
    page.wait_for_selector(".results > li")
    title = page.locator(".results > li h3 a").first
    name = title.inner_text()
    title.click()
    page.wait_for_function("(name) => document.querySelector('h1')?.textContent === name", arg=name)
    assert "#/record/capability/" in page.url
    assert "单位" in page.inner_text("dl.fields")
    # The record's matches go the other way: capability → needs.
    page.wait_for_selector(".results > li")
    assert {li.get_attribute("data-kind") for li in page.locator(".results > li").all()} == {"need"}
    assert page.inner_text("#matches-title") == "匹配的场景需求"
    assert page.locator(".results > li .texts .text-block").first.locator("mark.term").count() >= 1
    screenshot(page, "record")

    need = page.locator(".results > li h3 a").first
    need_title = need.inner_text()
    need.click()
    page.wait_for_function("(name) => document.querySelector('h1')?.textContent === name", arg=need_title)
    assert "#/record/need/" in page.url
    page.wait_for_selector(".results > li[data-kind=capability]")

    page.go_back()
    page.go_back()
    # The search is restored from the URL.
    page.wait_for_function("(text) => document.querySelector('#q')?.value === text", arg=QUERY)
    page.wait_for_selector(".results > li[data-kind=capability]")

    page.goto(f"{demo_server.url}/#/record/need/NO-SUCH-NEED")
    page.wait_for_selector(".message.error")
    assert "未找到" in page.inner_text(".message.error")


def test_domain_overview_counts(page, demo_server: LiveServer) -> None:  # noqa: ANN001
    page.goto(f"{demo_server.url}/#/domains")
    page.wait_for_selector(".domain-tile .bar-line")
    assert page.locator("section.category").count() == 5
    assert page.locator(".domain-tile").count() == 20
    tile = page.locator(".domain-tile[data-code=smart_water]")
    shown = [int(n) for n in tile.locator(".count").all_inner_texts()]
    api_needs = httpx.get(f"{demo_server.url}/v1/needs", params={"domain": "smart_water", "limit": 1}).json()
    api_caps = httpx.get(f"{demo_server.url}/v1/capabilities", params={"domain": "smart_water", "limit": 1}).json()
    assert shown == [api_needs["total"], api_caps["total"]]
    assert "共收录场景需求" in page.inner_text("main")
    screenshot(page, "domains", full_page=True)

    tile.locator("h3 a").click()
    page.wait_for_selector(".record-list li")
    assert page.inner_text("h1") == "智慧水利"
    assert page.locator("section[aria-labelledby=list-needs] .record-list li").count() >= 1


def test_scenario_library_lists_filters_and_cites_cases(page, demo_server: LiveServer) -> None:  # noqa: ANN001
    page.goto(f"{demo_server.url}/#/scenarios")
    page.wait_for_selector(".results.scenarios > li")
    assert page.get_attribute("nav.primary a[data-section=scenarios]", "aria-current") == "page"
    listed = httpx.get(f"{demo_server.url}/v1/scenarios", params={"limit": 20}).json()
    assert f"/ {listed['total']} 个场景" in page.inner_text("#scenario-status")
    items = page.locator(".results.scenarios > li")
    assert [li.get_attribute("data-id") for li in items.all()] == [s["id"] for s in listed["items"]]  # priority order
    first = items.first
    assert first.locator(".evalbar").count() == 5  # overall and the four dimensions
    width = first.locator(".evalbar.overall .evalbar-fill").evaluate("el => el.style.width")
    assert width == f"{listed['items'][0]['evaluation']['overall']}%"
    screenshot(page, "scenarios", full_page=True)

    page.select_option("#scenario-stage", "promoting")
    page.select_option("#scenario-year", "2024")
    page.wait_for_selector("#scenario-domain option[value=smart_city]", state="attached")
    page.click("form.scenario-filters button[type=submit]")
    page.wait_for_function("() => location.hash.includes('stage=promoting') && location.hash.includes('year=2024')")
    page.wait_for_function("() => document.getElementById('scenario-status').textContent.startsWith('显示')")
    wanted = httpx.get(f"{demo_server.url}/v1/scenarios",
                       params={"stage": "promoting", "year": 2024, "limit": 100}).json()
    shown = page.locator(".results.scenarios > li")
    assert {li.get_attribute("data-stage") for li in shown.all()} == {"promoting"}
    assert f"/ {wanted['total']} 个场景" in page.inner_text("#scenario-status")
    screenshot(page, "scenarios-filtered")

    shown.first.locator("h3 a").click()
    page.wait_for_selector("svg.radar .shape")
    assert page.locator("svg.radar text").count() == 4 and "综合评价" in page.inner_text(".evaluation")
    screenshot(page, "scenario")

    page.goto(f"{demo_server.url}/#/record/capability/C-smart_water-002")
    page.wait_for_selector(".capability-cases li[data-id]")
    assert "SC-smart_water-05" in [li.get_attribute("data-id") for li in page.locator(".capability-cases li").all()]
    page.goto(f"{demo_server.url}/#/record/need/N-smart_water-001")
    cited = page.wait_for_selector(".results > li[data-id=C-smart_water-002] .cited-cases li[data-id]")
    assert cited.get_attribute("data-id") == "SC-smart_water-05" and "相似度" in cited.inner_text()
    assert "null" not in page.inner_text("main") and page.locator(".capability-cases").count() == 0
    screenshot(page, "cited-case")


def test_keyboard_only_navigation(page, demo_server: LiveServer) -> None:  # noqa: ANN001
    page.goto(f"{demo_server.url}/#/domains")
    page.wait_for_selector(".domain-tile")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.url.endswith("#/domains")  # the skip link does not clobber the route

    page.reload()  # focus starts again at the top of the document
    page.wait_for_selector(".domain-tile")
    for _ in range(5):  # skip link, 智能搜索, 领域概览, 场景库, 管理
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "管理"
    page.keyboard.press("Enter")
    page.wait_for_selector("#admin-token")
    assert page.evaluate("document.activeElement.tagName") == "H1"  # focus follows the new page
    assert page.get_attribute("nav.primary a[data-section=admin]", "aria-current") == "page"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "admin-token"

    page.goto(f"{demo_server.url}/#/search")
    assert page.evaluate("document.activeElement.id") == "q"  # ready to type
    page.keyboard.type("县域医共体远程影像诊断")
    page.keyboard.press("Enter")
    page.wait_for_selector(".results > li")
    assert page.locator("#result-status[aria-live=polite]").count() == 1


def test_admin_token_and_reindex(page, demo_server: LiveServer) -> None:  # noqa: ANN001
    require_endpoint(demo_server, "GET", "/v1/admin/index")
    page.goto(f"{demo_server.url}/#/admin")
    assert "输入管理员令牌" in page.inner_text(".index-status")

    page.fill("#admin-token", "not-the-token")
    page.press("#admin-token", "Enter")
    page.wait_for_selector(".index-status .message.error")
    assert "令牌无效" in page.inner_text(".index-status")
    assert "未保存" in page.inner_text(".token-status")
    assert page.evaluate("sessionStorage.getItem('scenematch.adminToken')") is None  # a rejected token is dropped
    assert page.locator("#admin-mode").is_hidden()
    screenshot(page, "admin-bad-token")

    page.fill("#admin-token", ADMIN)
    page.click("form.token-form button[type=submit]")
    page.wait_for_selector(".index-status dl")
    assert page.input_value("#admin-token") == ""  # not left on screen
    assert page.evaluate("sessionStorage.getItem('scenematch.adminToken')") == ADMIN
    assert page.evaluate("localStorage.length") == 0
    assert page.locator("#admin-mode").is_visible()
    before = page.locator(".index-status dd").first.inner_text()

    require_endpoint(demo_server, "GET", "/v1/admin/jobs/none", headers={"Authorization": f"Bearer {ADMIN}"})
    page.select_option("#reindex-mode", "full")
    page.click("#reindex-title ~ form button[type=submit]")
    page.wait_for_selector(".job[data-status]")
    page.wait_for_selector(".job[data-status=succeeded]", timeout=JOB_TIMEOUT_MS)
    assert "已完成" in page.inner_text(".job-text")
    page.wait_for_function("(old) => document.querySelector('.index-status dd')?.textContent !== old",
                           arg=before)
    screenshot(page, "admin-reindex", full_page=True)


def test_admin_exports_a_report(page, demo_server: LiveServer, tmp_path: Path) -> None:  # noqa: ANN001
    require_endpoint(demo_server, "GET", "/v1/reports", headers={"Authorization": f"Bearer {ADMIN}"})
    page.goto(f"{demo_server.url}/#/admin")
    page.fill("#admin-token", ADMIN)
    page.press("#admin-token", "Enter")
    page.wait_for_selector("#report-domain option[value=smart_water]", state="attached")
    page.select_option("#report-domain", "smart_water")
    page.fill("#report-per-need", "3")
    page.select_option("#report-format", "xlsx")
    page.click("#report-title ~ form button[type=submit]")
    page.wait_for_selector("#download-report", timeout=JOB_TIMEOUT_MS)
    with page.expect_download() as info:
        page.click("#download-report")
    download = info.value
    assert download.suggested_filename.endswith(".xlsx")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_bytes()[:2] == b"PK"  # an XLSX is a zip
    screenshot(page, "admin-report")


@pytest.fixture(scope="module")
def unready_server(tmp_path_factory: pytest.TempPathFactory, browser: object) -> Iterator[LiveServer]:
    """A service that never loads an index, so /readyz stays 503."""
    settings = make_settings(tmp_path_factory.mktemp("console-unready"), None, build_index_on_start=False)
    server = LiveServer(settings).start()
    yield server
    server.stop()


def test_banner_when_the_service_is_not_ready(page, unready_server: LiveServer) -> None:  # noqa: ANN001
    page.goto(f"{unready_server.url}/#/search")
    page.wait_for_selector("#banner:not([hidden])")
    assert "服务尚未就绪" in page.inner_text("#banner")
    page.fill("#q", QUERY)
    page.press("#q", "Enter")
    page.wait_for_selector(".message.error")
    assert "服务尚未就绪" in page.inner_text(".message.error")
    screenshot(page, "not-ready")
