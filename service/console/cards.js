// One match as a card: score, summary, shared terms highlighted in both texts, evidence, signals.
import {
  h, highlight, termsFrom, scoreLevel, formatNumber, ORG_TYPES, NEED_STATUS, KIND_LABEL, STAGE_NAMES,
} from "./dom.js";

const LONG_TEXT = 180;

export function recordHref(kind, id) {
  return kind === "scenario" ? scenarioHref(id) : `#/record/${kind}/${encodeURIComponent(id)}`;
}

export function scenarioHref(id) {
  return `#/scenarios/${encodeURIComponent(id)}`;
}

// The cases a match cites (explanation.cases): scenarios like this one that the capability delivered.
function citedCases(cases) {
  if (!cases || !cases.length) return null;
  return h("section", { class: "cited-cases", "aria-label": "已落地类似场景" },
    h("h4", {}, "已落地类似场景"),
    h("ul", {}, cases.map((c) => h("li", { dataset: { id: c.id } },
      h("a", { href: scenarioHref(c.id) }, c.title),
      h("span", { class: "meta" }, [c.year ? `${c.year}年` : null, STAGE_NAMES[c.stage],
        `相似度 ${formatNumber(c.similarity)}`, c.via === "organization" ? "同单位其他能力承担" : null]
        .filter(Boolean).join(" · "))))));
}

export function domainBadges(record, kind) {
  const names = kind === "need"
    ? (record.domain_name ? [record.domain_name] : [])
    : (record.domain_names || []);
  const badges = names.map((name) => h("span", { class: "badge domain" }, name));
  if (record.domain_predicted && names.length) {
    badges.push(h("span", { class: "badge predicted", title: "未填写领域，由系统自动分类" }, "自动分类"));
  }
  if (!names.length) badges.push(h("span", { class: "badge muted" }, "未分类"));
  return h("span", { class: "badges", "aria-label": "所属领域" }, badges);
}

export function recordMeta(record, kind) {
  const parts = kind === "need"
    ? [record.publisher, record.region, NEED_STATUS[record.status],
      record.budget_wan != null ? `预算 ${record.budget_wan} 万元` : null,
      record.deadline ? `截止 ${record.deadline}` : null]
    : [record.organization, ORG_TYPES[record.org_type], record.region];
  if (record.visibility === "restricted") parts.push("受限可见");
  return h("p", { class: "meta" }, parts.filter(Boolean).join(" · "));
}

export function scoreBlock(score) {
  const level = scoreLevel(score);
  const bar = h("span", { class: "scorebar-fill" });
  bar.style.width = `${Math.round(score * 100)}%`; // CSSOM, allowed by the page's CSP
  return h("div", { class: `score ${level}` },
    h("span", { class: "score-label" }, "匹配度"),
    h("span", { class: "score-value" }, formatNumber(score)),
    h("span", { class: "scorebar", "aria-hidden": "true" }, bar));
}

// A text block that starts clamped when long, with a button to show it all.
export function textBlock(label, text, terms) {
  const body = h("p", { class: "text-body" }, highlight(text, terms));
  const block = h("div", { class: "text-block" }, h("h4", {}, label), body);
  if (String(text || "").length > LONG_TEXT) {
    body.classList.add("clamped");
    const toggle = h("button", { type: "button", class: "link-button", "aria-expanded": "false" }, "展开全文");
    toggle.addEventListener("click", () => {
      const expanded = body.classList.toggle("clamped") === false;
      toggle.setAttribute("aria-expanded", String(expanded));
      toggle.textContent = expanded ? "收起" : "展开全文";
    });
    block.append(toggle);
  }
  return block;
}

function sharedTermList(shared) {
  if (!shared || !shared.length) {
    return h("p", { class: "terms none" }, "没有共同关键词：用词不同，按语义相近匹配。");
  }
  return h("p", { class: "terms" }, h("span", { class: "terms-label" }, "共同关键词："),
    shared.map((t) => h("span", {
      class: t.generic ? "chip generic" : "chip",
      title: `权重 ${formatNumber(t.weight)}${t.generic ? "（通用词）" : ""}`,
    }, t.term)));
}

function evidenceList(evidence, terms, queryLabel) {
  if (!evidence || !evidence.length) return null;
  return h("section", { class: "evidence", "aria-label": "证据段落" },
    h("h4", {}, "证据段落"),
    h("ol", {}, evidence.map((e) => h("li", { class: "evidence-pair" },
      h("span", { class: "similarity" }, `语义相似度 ${formatNumber(e.similarity)}`),
      h("div", { class: "pair" },
        h("blockquote", { class: "span query-span" }, h("span", { class: "span-label" }, queryLabel),
          highlight(e.query_span, terms)),
        h("blockquote", { class: "span match-span" }, h("span", { class: "span-label" }, "匹配方"),
          highlight(e.match_span, terms)))))));
}

function signalTable(explanation) {
  const signals = Object.entries(explanation.signals || {});
  const rows = signals.map(([name, s]) => h("tr", {},
    h("th", { scope: "row" }, s.label || name),
    h("td", {}, formatNumber(s.raw, 3)), h("td", {}, formatNumber(s.normalized, 3)),
    h("td", {}, formatNumber(s.weight, 2)), h("td", {}, formatNumber(s.contribution, 3)),
    h("td", {}, s.rank ?? "—")));
  return h("details", { class: "signals" },
    h("summary", {}, "排序信号明细"),
    h("table", {},
      h("caption", {}, "各排序信号的得分（贡献 = 权重 × 归一化值）"),
      h("thead", {}, h("tr", {}, ["信号", "原始值", "归一化", "权重", "贡献", "单项排名"]
        .map((label) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, rows)),
    h("p", { class: "score-rule" },
      `${explanation.score_rule || ""}；偏置 ${formatNumber(explanation.bias, 2)}，`
      + `logit ${formatNumber(explanation.logit, 3)}`));
}

/**
 * @param match one item of a match response
 * @param context {queryText, queryLabel}: the searched text, or the record's own description
 */
export function matchCard(match, { queryText, queryLabel }) {
  const record = match.item || {};
  const explanation = match.explanation || {};
  const terms = termsFrom(explanation.shared_terms);
  const sameDomain = Boolean((explanation.domain_match || {}).match);
  const titleId = `match-${match.kind}-${match.id}`.replace(/[^A-Za-z0-9_-]/g, "_");
  return h("li", { class: "card match", dataset: { id: match.id, kind: match.kind } },
    h("article", { "aria-labelledby": titleId },
      h("header", { class: "card-head" },
        h("span", { class: "rank", "aria-label": `第 ${match.rank} 名` }, `#${match.rank}`),
        h("div", { class: "card-title" },
          h("h3", { id: titleId },
            h("a", { href: recordHref(match.kind, match.id) }, highlight(record.title || match.id, terms))),
          recordMeta(record, match.kind),
          h("p", { class: "badge-row" }, h("span", { class: "badge kind" }, KIND_LABEL[match.kind]),
            domainBadges(record, match.kind),
            sameDomain ? h("span", { class: "badge ok" }, "同领域") : null)),
        scoreBlock(match.score)),
      h("p", { class: "summary" }, explanation.summary || ""),
      citedCases(explanation.cases),
      sharedTermList(explanation.shared_terms),
      h("div", { class: "texts" },
        textBlock(queryLabel, queryText, terms),
        textBlock(`${KIND_LABEL[match.kind]}描述`, record.description, terms)),
      evidenceList(explanation.evidence, terms, queryLabel),
      signalTable(explanation)));
}
