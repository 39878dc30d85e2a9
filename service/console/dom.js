// Small DOM helpers. Every piece of data goes in as text (never as HTML), so records can't inject markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// Shared terms as the API gives them; "a≈b" (synonyms) highlights both words.
export function termsFrom(sharedTerms) {
  const out = new Map();
  for (const term of sharedTerms || []) {
    for (const part of String(term.term).split("≈")) {
      const word = part.trim();
      if (word && !out.has(word)) out.set(word, Boolean(term.generic));
    }
  }
  return out;
}

// The text with every occurrence of the terms wrapped in <mark>; longest terms win overlaps.
export function highlight(text, terms) {
  const fragment = document.createDocumentFragment();
  const value = String(text || "");
  const words = [...terms.keys()].sort((a, b) => b.length - a.length);
  if (!words.length || !value) {
    fragment.append(value);
    return fragment;
  }
  const pattern = new RegExp(`(${words.map(escapeRegExp).join("|")})`, "gi");
  let last = 0;
  for (const match of value.matchAll(pattern)) {
    if (match.index > last) fragment.append(value.slice(last, match.index));
    const generic = terms.get(match[0]) ?? terms.get(words.find((w) => w.toLowerCase() === match[0].toLowerCase()));
    fragment.append(h("mark", { class: generic ? "term generic" : "term" }, match[0]));
    last = match.index + match[0].length;
  }
  if (last < value.length) fragment.append(value.slice(last));
  return fragment;
}

export const ORG_TYPES = {
  enterprise: "企业", university: "高校", institute: "科研院所", service: "服务机构", other: "其他",
};
export const NEED_STATUS = { open: "征集中", matching: "对接中", closed: "已关闭", withdrawn: "已撤回" };
export const PUBLISHER_TYPES = {
  government: "政府部门", soe: "国有企业", chain_leader: "链主企业", private: "民营企业",
  hospital: "医院", park: "园区", university: "高校", other: "其他",
};
export const JOB_STATUS = { queued: "排队中", running: "运行中", succeeded: "已完成", failed: "失败" };
export const KIND_LABEL = { need: "场景需求", capability: "企业能力", scenario: "场景" };
export const STAGE_NAMES = {
  collecting: "征集", published: "发布", matching: "对接", building: "建设", testing: "测试", promoting: "推广",
  retired: "退出",
};

// Hubei's city-level divisions (the demo corpus and the policy's pilots are mostly there).
export const HUBEI_REGIONS = [
  "湖北省", "武汉市", "黄石市", "十堰市", "宜昌市", "襄阳市", "鄂州市", "荆门市", "孝感市", "荆州市",
  "黄冈市", "咸宁市", "随州市", "恩施土家族苗族自治州", "仙桃市", "潜江市", "天门市", "神农架林区",
];

export function regionDatalist(id) {
  return h("datalist", { id }, HUBEI_REGIONS.map((r) => h("option", { value: r })));
}

export function scoreLevel(score) {
  if (score >= 0.7) return "high";
  if (score >= 0.4) return "medium";
  return "low";
}

export function formatNumber(value, digits = 2) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

export function formatDate(value) {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString("zh-CN", { hour12: false });
}

export function percent(fraction) {
  return `${Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100)}%`;
}

export function messageBox(kind, title, detail) {
  // kind: "error" | "empty" | "info"
  return h("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : null },
    h("p", { class: "message-title" }, title),
    detail ? h("p", { class: "message-detail" }, detail) : null);
}

export function loading(text = "正在加载…") {
  return h("p", { class: "loading", role: "status" }, text);
}

export function focusHeading(container) {
  const heading = container.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}
