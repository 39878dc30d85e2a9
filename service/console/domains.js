// The 20-domain overview with record counts, and a page listing one domain's needs and capabilities.
import { api, describeError, loadDomains, query } from "./api.js";
import { recordHref } from "./cards.js";
import { clear, h, loading, messageBox, NEED_STATUS, ORG_TYPES } from "./dom.js";
import { groupDomains } from "./filters.js";

const LIST_PAGE = 20;

async function count(plural, domain, signal) {
  const page = await api.get(`/v1/${plural}${query({ domain, limit: 1 })}`, { signal });
  return page.total;
}

function bar(value, max) {
  const fill = h("span", { class: "minibar-fill" });
  fill.style.width = max ? `${Math.round((value / max) * 100)}%` : "0";
  return h("span", { class: "minibar", "aria-hidden": "true" }, fill);
}

export function renderDomains(main, ctx) {
  const totals = h("p", { class: "lead" }, "正在统计…");
  const body = h("div", {}, loading("正在加载领域…"));
  main.append(h("h1", {}, "领域概览"),
    h("p", { class: "lead" }, "湖北省场景创新方案的 5 大类 20 个重点领域，以及各领域已收录的场景需求与企业能力数量。"),
    totals, body);
  const signal = ctx.signal;
  Promise.all([count("needs", undefined, signal), count("capabilities", undefined, signal)])
    .then(([needs, caps]) => {
      if (ctx.alive()) totals.textContent = `共收录场景需求 ${needs} 条、企业能力 ${caps} 条（一条能力可属于多个领域）。`;
    })
    .catch((err) => { if (ctx.alive() && err.name !== "AbortError") totals.textContent = describeError(err); });

  loadDomains().then(async (domains) => {
    if (!ctx.alive()) return;
    const cells = new Map();
    const groups = groupDomains(domains).map((group) => h("section", { class: "category" },
      h("h2", {}, group.name),
      h("ul", { class: "domain-grid" }, group.domains.map((domain) => {
        const needs = h("span", { class: "count" }, "…");
        const caps = h("span", { class: "count" }, "…");
        const bars = h("span", { class: "bars" });
        cells.set(domain.code, { needs, caps, bars });
        return h("li", { class: "domain-tile", dataset: { code: domain.code } },
          h("h3", {}, h("a", { href: `#/domains/${domain.code}` }, domain.name)),
          h("p", { class: "domain-desc" }, domain.description || ""),
          h("p", { class: "counts" }, "需求 ", needs, " 条 · 能力 ", caps, " 条"), bars);
      }))));
    clear(body).append(...groups);
    try {
      const results = await Promise.all(domains.items.map(async (d) => [d.code,
        await count("needs", d.code, signal), await count("capabilities", d.code, signal)]));
      if (!ctx.alive()) return;
      const max = Math.max(1, ...results.flatMap(([, n, c]) => [n, c]));
      for (const [code, n, c] of results) {
        const cell = cells.get(code);
        cell.needs.textContent = n;
        cell.caps.textContent = c;
        cell.bars.append(h("span", { class: "bar-line" }, h("span", { class: "bar-label" }, "需求"), bar(n, max)),
          h("span", { class: "bar-line caps" }, h("span", { class: "bar-label" }, "能力"), bar(c, max)));
      }
    } catch (err) {
      if (ctx.alive() && err.name !== "AbortError") body.prepend(messageBox("error", "数量统计失败", describeError(err)));
    }
  }).catch((err) => {
    if (ctx.alive() && err.name !== "AbortError") clear(body).append(messageBox("error", "领域列表加载失败", describeError(err)));
  });
}

function recordList(kind, plural, code, ctx) {
  const list = h("ul", { class: "record-list" });
  const status = h("p", { class: "result-status", role: "status", "aria-live": "polite" }, "正在加载…");
  const more = h("button", { type: "button", class: "secondary more", hidden: true }, "显示更多");
  let shown = 0;
  async function load() {
    more.hidden = true;
    try {
      const page = await api.get(`/v1/${plural}${query({ domain: code, limit: LIST_PAGE, offset: shown })}`,
        { signal: ctx.signal });
      if (!ctx.alive()) return;
      for (const r of page.items) {
        const meta = kind === "need"
          ? [r.publisher, r.region, NEED_STATUS[r.status]] : [r.organization, ORG_TYPES[r.org_type], r.region];
        list.append(h("li", {}, h("a", { href: recordHref(kind, r.id) }, r.title),
          h("span", { class: "meta" }, meta.filter(Boolean).join(" · "))));
      }
      shown += page.items.length;
      status.textContent = shown ? `显示 ${shown} / ${page.total} 条` : "该领域暂无记录。";
      more.hidden = shown >= page.total;
    } catch (err) {
      if (ctx.alive() && err.name !== "AbortError") status.textContent = describeError(err);
    }
  }
  more.addEventListener("click", load);
  load();
  return [status, list, more];
}

export function renderDomain(main, code, ctx) {
  const slot = h("div", {}, loading());
  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/domains" }, "领域概览"), " / 领域"), slot);
  loadDomains().then((domains) => {
    if (!ctx.alive()) return;
    const domain = domains.items.find((d) => d.code === code);
    if (!domain) {
      clear(slot).append(h("h1", {}, "领域"), messageBox("error", `没有编码为“${code}”的领域`));
      return;
    }
    clear(slot).append(
      h("h1", {}, domain.name),
      h("p", { class: "lead" }, `${domain.category} · ${domain.description || ""}`),
      (domain.key_terms || []).length
        ? h("p", { class: "terms" }, h("span", { class: "terms-label" }, "关键词："),
          domain.key_terms.slice(0, 20).map((t) => h("span", { class: "chip" }, t))) : null,
      h("div", { class: "two-columns" },
        h("section", { "aria-labelledby": "list-needs" }, h("h2", { id: "list-needs" }, "场景需求"),
          recordList("need", "needs", code, ctx)),
        h("section", { "aria-labelledby": "list-caps" }, h("h2", { id: "list-caps" }, "企业能力"),
          recordList("capability", "capabilities", code, ctx))));
  }).catch((err) => {
    if (ctx.alive() && err.name !== "AbortError") clear(slot).append(messageBox("error", describeError(err)));
  });
}
