// Entry point: hash router, navigation state, the "service not ready" banner.
import { getToken, readiness } from "./api.js";
import { renderAdmin } from "./admin.js";
import { renderDomain, renderDomains } from "./domains.js";
import { clear, focusHeading, h, messageBox } from "./dom.js";
import { renderRecord } from "./record.js";
import { renderScenario, renderScenarios } from "./scenarios.js";
import { renderSearch } from "./search.js";

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const READY_POLL_MS = 5000;
let navigation = null;
let firstRender = true;

function parseHash() {
  const raw = location.hash.startsWith("#/") ? location.hash.slice(2) : "search";
  const [path, queryString = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map((p) => decodeURIComponent(p));
  return { parts, params: new URLSearchParams(queryString) };
}

function route() {
  if (location.hash && !location.hash.startsWith("#/")) return; // an in-page anchor, not a route
  if (navigation) navigation.abort();
  navigation = new AbortController();
  const { signal } = navigation;
  const ctx = { signal, alive: () => !signal.aborted };
  const { parts, params } = parseHash();
  const [section = "search", ...rest] = parts;
  clear(main);
  let title = "智能搜索";
  if (section === "search") {
    renderSearch(main, params, ctx);
  } else if (section === "record" && (rest[0] === "need" || rest[0] === "capability") && rest[1]) {
    title = rest[0] === "need" ? "场景需求" : "企业能力";
    renderRecord(main, rest[0], rest[1], ctx);
  } else if ((section === "scenarios" && rest[0]) || (section === "record" && rest[0] === "scenario" && rest[1])) {
    title = "场景";
    renderScenario(main, section === "scenarios" ? rest[0] : rest[1], ctx);
  } else if (section === "scenarios") {
    title = "场景库";
    renderScenarios(main, params, ctx);
  } else if (section === "domains" && rest[0]) {
    title = "领域";
    renderDomain(main, rest[0], ctx);
  } else if (section === "domains") {
    title = "领域概览";
    renderDomains(main, ctx);
  } else if (section === "admin") {
    title = "管理";
    renderAdmin(main, ctx);
  } else {
    title = "页面不存在";
    main.append(h("h1", {}, "页面不存在"),
      messageBox("error", "没有这个页面", "请从上方导航进入：智能搜索、领域概览、场景库或管理。"));
  }
  document.title = `${title} · 场景供需匹配控制台`;
  markNavigation(section);
  // Move focus to the new page's heading (for screen readers), unless the page focused a field itself.
  if (!firstRender && !main.contains(document.activeElement)) focusHeading(main);
  firstRender = false;
}

function markNavigation(section) {
  const active = section === "record" ? "search" : section;
  for (const link of document.querySelectorAll("nav.primary a")) {
    if (link.dataset.section === active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showAdminMode() {
  document.getElementById("admin-mode").hidden = !getToken();
}

let readyTimer = null;

async function checkReady() {
  clearTimeout(readyTimer);
  const state = await readiness();
  if (state.ready) {
    const wasShown = !banner.hidden;
    banner.hidden = true;
    clear(banner);
    if (wasShown) route(); // the page may have failed while the service was starting
    return;
  }
  clear(banner).append(h("strong", {}, state.unreachable ? "无法连接服务。" : "服务尚未就绪。"),
    " ", state.unreachable ? "请确认服务正在运行。"
      : `搜索和匹配暂不可用（索引尚未加载${state.reason ? `；服务端说明：${state.reason}` : ""}）。`,
    " 页面每 5 秒自动重试。");
  banner.hidden = false;
  readyTimer = setTimeout(checkReady, READY_POLL_MS);
}

document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault(); // a plain #main would replace the route in the hash
  main.focus();
});
window.addEventListener("hashchange", route);
window.addEventListener("scenematch:token", showAdminMode);
window.addEventListener("scenematch:not-ready", () => { if (banner.hidden) checkReady(); });
showAdminMode();
route();
checkReady();
