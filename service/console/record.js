// A record page: the need or capability itself, then its matches in the other direction.
import { api, describeError, query } from "./api.js";
import { domainBadges, matchCard } from "./cards.js";
import { capabilityCases } from "./scenarios.js";
import {
  clear, formatDate, h, KIND_LABEL, loading, messageBox, NEED_STATUS, ORG_TYPES, PUBLISHER_TYPES,
} from "./dom.js";

const PAGE = 10;
const PLURAL = { need: "needs", capability: "capabilities" };

function field(label, value) {
  if (value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length)) return null;
  return [h("dt", {}, label), h("dd", {}, value)];
}

function recordFields(record, kind) {
  const common = [
    field("编号", record.id),
    field("领域", domainBadges(record, kind)),
    field("地区", record.region),
  ];
  const specific = kind === "need"
    ? [field("发布单位", record.publisher), field("发布主体", PUBLISHER_TYPES[record.publisher_type]),
      field("状态", NEED_STATUS[record.status]),
      field("预算", record.budget_wan != null ? `${record.budget_wan} 万元` : null),
      field("截止日期", record.deadline)]
    : [field("单位", record.organization), field("机构类型", ORG_TYPES[record.org_type])];
  return h("dl", { class: "fields" }, common, specific,
    field("标签", (record.tags || []).join("、")),
    field("可见性", record.visibility === "restricted" ? "受限（仅管理员可见）" : "公开"),
    field("联系方式", record.contact),
    field("更新时间", formatDate(record.updated_at)));
}

export function renderRecord(main, kind, id, ctx) {
  const slot = h("div", {}, loading("正在加载记录…"));
  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/search" }, "智能搜索"), " / ", KIND_LABEL[kind]), slot);
  api.get(`/v1/${PLURAL[kind]}/${encodeURIComponent(id)}`, { signal: ctx.signal })
    .then((record) => { if (ctx.alive()) showRecord(clear(slot), record, kind, ctx); })
    .catch((err) => {
      if (err.name === "AbortError" || !ctx.alive()) return;
      const title = err.status === 404 ? `未找到${KIND_LABEL[kind]}“${id}”` : describeError(err);
      clear(slot).append(h("h1", {}, KIND_LABEL[kind]), messageBox("error", title, err.message));
    });
}

function showRecord(slot, record, kind, ctx) {
  const other = kind === "need" ? "capability" : "need";
  const description = h("section", { class: "record-text", "aria-labelledby": "record-desc" },
    h("h2", { id: "record-desc" }, "描述"), h("p", { class: "text-body" }, record.description || "（无描述）"),
    record.cases ? [h("h2", {}, "落地案例"), h("p", { class: "text-body" }, record.cases)] : null);
  const status = h("p", { class: "result-status", role: "status", "aria-live": "polite" });
  const results = h("ol", { class: "results", "aria-label": `匹配的${KIND_LABEL[other]}` });
  const more = h("button", { type: "button", class: "secondary more", hidden: true }, "显示更多匹配");
  const errorSlot = h("div", { class: "error-slot" });
  slot.append(
    h("h1", {}, record.title),
    h("p", { class: "kind-line" }, h("span", { class: "badge kind" }, KIND_LABEL[kind])),
    h("div", { class: "record" }, recordFields(record, kind), description),
    ...(kind === "capability" ? [capabilityCases(record.id, ctx)] : []),
    h("section", { class: "matches", "aria-labelledby": "matches-title" },
      h("h2", { id: "matches-title" }, kind === "need" ? "匹配的企业能力" : "匹配的场景需求"),
      errorSlot, status, results, more));
  // The record's text as the matcher sees it, so shared terms light up on this side too.
  const queryText = [record.title, record.description].filter(Boolean).join("\n");
  const queryLabel = kind === "need" ? "本需求" : "本能力";
  let shown = 0;

  async function load(offset) {
    more.hidden = true;
    status.textContent = "正在计算匹配…";
    try {
      const page = await api.get(`/v1/${PLURAL[kind]}/${encodeURIComponent(record.id)}/matches`
        + query({ limit: PAGE, offset }), { signal: ctx.signal });
      if (!ctx.alive()) return;
      page.items.forEach((item) => results.append(matchCard(item, { queryText, queryLabel })));
      shown += page.items.length;
      if (!shown) {
        status.textContent = "暂无匹配结果。";
        errorSlot.append(messageBox("empty", "暂无匹配结果", "索引中还没有与之相关的记录，或它们不对您公开。"));
        return;
      }
      status.textContent = `显示 ${shown} 条（共 ${page.total} 个候选，按匹配度排序；用时 ${Math.round(page.took_ms)} 毫秒）`;
      more.hidden = !(page.items.length === PAGE && shown < page.total);
    } catch (err) {
      if (err.name === "AbortError" || !ctx.alive()) return;
      status.textContent = "匹配加载失败。";
      clear(errorSlot).append(messageBox("error", describeError(err), err.message));
    }
  }
  more.addEventListener("click", () => load(shown));
  load(0);
}
