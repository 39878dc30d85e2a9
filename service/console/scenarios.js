// 场景库: the third list. Scenarios by stage, domain and year in the policy's priority order (their
// weighted evaluation), each with its four evaluation scores as bars; a scenario's page with a radar;
// the cases (delivered scenarios) of a capability.
import { api, describeError, loadDomains, query } from "./api.js";
import { recordHref, scenarioHref } from "./cards.js";
import { clear, formatNumber, h, loading, messageBox, STAGE_NAMES as STAGES } from "./dom.js";
import { domainSelect } from "./filters.js";

const PAGE = 20;
const SVG = "http://www.w3.org/2000/svg";
export const DIMENSIONS = [
  ["tech_advancement", "技术先进性"], ["economic_benefit", "经济效益"], ["social_benefit", "社会效益"],
  ["promotion_value", "推广价值"],
];
const YEARS = [2026, 2025, 2024, 2023, 2022];

function bar(label, value, cls = "") {
  const fill = h("span", { class: "evalbar-fill" });
  fill.style.width = `${Math.max(0, Math.min(100, value))}%`; // CSSOM, allowed by the page's CSP
  return h("div", { class: `evalbar ${cls}`, dataset: { value } },
    h("span", { class: "evalbar-label" }, label), h("span", { class: "evalbar-track", "aria-hidden": "true" }, fill),
    h("span", { class: "evalbar-value" }, formatNumber(value, value % 1 ? 1 : 0)));
}

export function evaluationBars(evaluation) {
  if (!evaluation) return h("p", { class: "hint evaluation none" }, "尚未评价");
  return h("div", { class: "evaluation", "aria-label": "评价得分" },
    bar("综合评价", evaluation.overall, "overall"), DIMENSIONS.map(([key, label]) => bar(label, evaluation[key])));
}

export function outcomeLine(outcome, benchmark) {
  const parts = [];
  if (outcome && outcome.contract_wan != null) parts.push(`合同 ${outcome.contract_wan} 万元`);
  if (outcome && outcome.signed_at) parts.push(`签约 ${outcome.signed_at}`);
  return h("p", { class: "meta outcome" }, parts.join(" · ") || "暂无签约信息",
    outcome && outcome.first_purchase ? h("span", { class: "badge ok" }, "首购首用") : null,
    benchmark ? h("span", { class: "badge benchmark" }, "标杆案例") : null);
}

function scenarioItem(s) {
  return h("li", { class: "card scenario", dataset: { id: s.id, stage: s.stage } },
    h("div", { class: "scenario-head" },
      h("div", {},
        h("h3", {}, h("a", { href: scenarioHref(s.id) }, s.title)),
        h("p", { class: "meta" }, [s.lead_org, s.region, s.year ? `${s.year}年` : null].filter(Boolean).join(" · "),
          " ", h("span", { class: "badge stage" }, s.stage_name || STAGES[s.stage]),
          (s.domain_names || []).map((n) => h("span", { class: "badge domain" }, n))),
        outcomeLine(s.outcome, s.benchmark_case)),
      evaluationBars(s.evaluation)));
}

function select(id, label, options, value) {
  return h("label", { for: id, class: "field" }, label,
    h("select", { id, name: id }, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))));
}

export function renderScenarios(main, params, ctx) {
  const stage = params.get("stage") || "";
  const year = params.get("year") || "";
  const sort = params.get("sort") || "evaluation";
  const domain = params.get("d") || "";
  const status = h("p", { id: "scenario-status", class: "result-status", role: "status", "aria-live": "polite" });
  const list = h("ol", { class: "results scenarios", "aria-label": "场景列表" });
  const more = h("button", { type: "button", class: "secondary more", hidden: true }, "显示更多");
  const domainSlot = h("span", {});
  const form = h("form", { class: "scenario-filters" },
    select("scenario-stage", "阶段", [["", "全部阶段"], ...Object.entries(STAGES)], stage),
    domainSlot,
    select("scenario-year", "年份", [["", "全部年份"], ...YEARS.map((y) => [String(y), `${y}年`])], year),
    select("scenario-sort", "排序", [["evaluation", "按综合评价（优先级）"], ["updated", "按更新时间"]], sort),
    h("button", { type: "submit", class: "primary" }, "筛选"));
  main.append(h("h1", {}, "场景库"),
    h("p", { class: "lead" }, "场景清单：征集、发布、对接、建设、测试、推广、退出各阶段的场景，按技术先进性、经济效益、社会效益、推广价值综合评价排序。"),
    form, status, list, more);
  loadDomains().then((domains) => {
    if (ctx.alive()) domainSlot.append(h("label", { for: "scenario-domain", class: "field" }, "领域",
      domainSelect(domains, "scenario-domain", domain)));
  }).catch(() => { /* the list still works without the domain filter */ });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const picked = { stage: form.querySelector("#scenario-stage").value, year: form.querySelector("#scenario-year").value,
      sort: form.querySelector("#scenario-sort").value, d: form.querySelector("#scenario-domain")?.value || "" };
    location.hash = `#/scenarios${query(picked)}`;
  });
  let shown = 0;
  async function load() {
    more.hidden = true;
    status.textContent = "正在加载…";
    try {
      const page = await api.get(`/v1/scenarios${query({ stage, year, sort, domain, limit: PAGE, offset: shown })}`,
        { signal: ctx.signal });
      if (!ctx.alive()) return;
      page.items.forEach((s) => list.append(scenarioItem(s)));
      shown += page.items.length;
      status.textContent = shown ? `显示 ${shown} / ${page.total} 个场景` : "没有符合条件的场景。";
      more.hidden = shown >= page.total;
    } catch (err) {
      if (ctx.alive() && err.name !== "AbortError") {
        status.textContent = "场景加载失败。";
        list.after(messageBox("error", describeError(err), err.message));
      }
    }
  }
  more.addEventListener("click", load);
  load();
}

// The four scores on four axes (SVG built node by node: nothing from the record becomes markup).
export function radar(evaluation, size = 240) {
  const svg = document.createElementNS(SVG, "svg");
  const width = size + 150;
  const cx = width / 2;
  const cy = size / 2;
  const r = size / 2 - 40;
  svg.setAttribute("viewBox", `0 0 ${width} ${size}`);
  svg.setAttribute("class", "radar");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", DIMENSIONS.map(([k, l]) => `${l} ${evaluation[k]}`).join("，"));
  const point = (i, v) => {
    const a = -Math.PI / 2 + (i * Math.PI) / 2;
    return [cx + (r * v * Math.cos(a)) / 100, cy + (r * v * Math.sin(a)) / 100];
  };
  const node = (tag, attrs, text) => {
    const el = document.createElementNS(SVG, tag);
    Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, v));
    if (text !== undefined) el.textContent = text;
    svg.append(el);
    return el;
  };
  for (const ring of [20, 40, 60, 80, 100]) {
    node("polygon", { points: DIMENSIONS.map((_, i) => point(i, ring).join(",")).join(" "), class: "ring" });
  }
  DIMENSIONS.forEach(([key, label], i) => {
    const [x, y] = point(i, 100);
    const [lx, ly] = point(i, 116);
    node("line", { x1: cx, y1: cy, x2: x, y2: y, class: "axis" });
    const anchor = i % 2 === 0 ? "middle" : (i === 1 ? "start" : "end");
    node("text", { x: lx, y: ly + 4, "text-anchor": anchor }, `${label} ${evaluation[key]}`);
  });
  node("polygon", { points: DIMENSIONS.map(([key], i) => point(i, evaluation[key]).join(",")).join(" "), class: "shape" });
  return svg;
}

export function renderScenario(main, id, ctx) {
  const slot = h("div", {}, loading("正在加载场景…"));
  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/scenarios" }, "场景库"), " / 场景"), slot);
  api.get(`/v1/scenarios/${encodeURIComponent(id)}`, { signal: ctx.signal }).then((s) => {
    if (!ctx.alive()) return;
    const capabilities = h("ul", { class: "record-list delivered" });
    clear(slot).append(
      h("h1", {}, s.title),
      h("p", { class: "meta" }, h("span", { class: "badge stage" }, s.stage_name),
        (s.domain_names || []).map((n) => h("span", { class: "badge domain" }, n)),
        " ", [s.lead_org, s.region, s.year ? `${s.year}年` : null].filter(Boolean).join(" · ")),
      outcomeLine(s.outcome, s.benchmark_case),
      h("div", { class: "record scenario-detail" },
        h("section", { "aria-labelledby": "scenario-eval" }, h("h2", { id: "scenario-eval" }, "评价"),
          s.evaluation ? [radar(s.evaluation), evaluationBars(s.evaluation)] : evaluationBars(null)),
        h("section", { class: "record-text", "aria-labelledby": "scenario-desc" },
          h("h2", { id: "scenario-desc" }, "场景描述"), h("p", { class: "text-body" }, s.description || "（无描述）"),
          h("h2", {}, "承担单位（企业能力）"), capabilities,
          s.need_id ? h("p", {}, "源自需求：", h("a", { href: recordHref("need", s.need_id) }, s.need_id)) : null)));
    if (!s.capability_ids.length) capabilities.append(h("li", { class: "hint" }, "尚未确定承担单位。"));
    s.capability_ids.forEach((capId) => {
      const item = h("li", {}, h("a", { href: recordHref("capability", capId) }, capId));
      capabilities.append(item);
      api.get(`/v1/capabilities/${encodeURIComponent(capId)}`, { signal: ctx.signal }).then((c) => {
        if (ctx.alive()) clear(item).append(h("a", { href: recordHref("capability", capId) }, c.title),
          h("span", { class: "meta" }, c.organization || ""));
      }).catch(() => { item.append(h("span", { class: "meta" }, "（未收录）")); });
    });
  }).catch((err) => {
    if (err.name === "AbortError" || !ctx.alive()) return;
    clear(slot).append(h("h1", {}, "场景"),
      messageBox("error", err.status === 404 ? `未找到场景“${id}”` : describeError(err), err.message));
  });
}

// A capability's cases: the scenarios it delivered or is delivering (for its record page).
export function capabilityCases(capabilityId, ctx) {
  const list = h("ul", { class: "record-list cases" });
  const section = h("section", { class: "capability-cases", "aria-labelledby": "cases-title" },
    h("h2", { id: "cases-title" }, "落地案例（场景库）"), list);
  api.get(`/v1/scenarios${query({ capability_id: capabilityId, limit: 50 })}`, { signal: ctx.signal }).then((page) => {
    if (!ctx.alive()) return;
    if (!page.items.length) list.append(h("li", { class: "hint" }, "场景库中暂无该能力承担的场景。"));
    page.items.forEach((s) => list.append(h("li", { dataset: { id: s.id } },
      h("a", { href: scenarioHref(s.id) }, s.title),
      h("span", { class: "meta" }, [s.year ? `${s.year}年` : null, s.stage_name,
        s.evaluation ? `综合评价 ${formatNumber(s.evaluation.overall, 1)}` : null].filter(Boolean).join(" · ")))));
  }).catch((err) => {
    if (ctx.alive() && err.name !== "AbortError") list.append(h("li", { class: "hint" }, describeError(err)));
  });
  return section;
}
