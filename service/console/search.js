// The search page: free text, target switch, domain/region/org-type filters, result cards.
import { api, describeError, loadDomains } from "./api.js";
import { matchCard } from "./cards.js";
import { clear, h, loading, messageBox, ORG_TYPES, regionDatalist } from "./dom.js";
import { domainPicker } from "./filters.js";

const PAGE = 10;

function stateFromParams(params) {
  return {
    q: params.get("q") || "",
    target: params.get("t") === "needs" ? "needs" : "capabilities",
    domains: (params.get("d") || "").split(",").filter(Boolean),
    region: params.get("r") || "",
    org: params.get("o") || "",
  };
}

function hashFor(state) {
  const params = new URLSearchParams();
  params.set("q", state.q);
  params.set("t", state.target);
  if (state.domains.length) params.set("d", state.domains.join(","));
  if (state.region) params.set("r", state.region);
  if (state.org && state.target === "capabilities") params.set("o", state.org);
  return `#/search?${params}`;
}

function targetSwitch(target) {
  const option = (value, label, hint) => h("label", { class: "segment" },
    h("input", { type: "radio", name: "target", value, checked: target === value }),
    h("span", {}, label), h("span", { class: "visually-hidden" }, hint));
  return h("fieldset", { class: "target-switch" }, h("legend", {}, "查找对象"),
    option("capabilities", "找能力", "（按描述查找企业、高校、院所的能力）"),
    option("needs", "找需求", "（按描述查找发布的场景需求）"));
}

export function renderSearch(main, params, ctx) {
  const state = stateFromParams(params);
  const textarea = h("textarea", {
    id: "q", name: "q", rows: 3, maxlength: 2000, required: true, "aria-describedby": "q-hint",
    placeholder: "例如：山洪灾害监测预警；总装车间人形机器人上料验证；县域医共体远程影像诊断",
  });
  textarea.value = state.q;
  const regionInput = h("input", {
    id: "region", name: "region", type: "text", list: "region-options", value: state.region,
    placeholder: "全部地区", autocomplete: "off",
  });
  const orgSelect = h("select", { id: "org-type", name: "org_type" },
    h("option", { value: "" }, "全部类型"),
    Object.entries(ORG_TYPES).map(([v, label]) => h("option", { value: v, selected: v === state.org }, label)));
  const orgField = h("div", { class: "field", hidden: state.target !== "capabilities" },
    h("label", { for: "org-type" }, "机构类型"), orgSelect);
  const pickerSlot = h("div", { class: "picker-slot" }, loading("正在加载领域…"));
  let picker = { selected: () => state.domains };
  const form = h("form", { class: "search-form", role: "search", "aria-label": "智能搜索", novalidate: true },
    h("label", { for: "q", class: "big-label" }, "描述您要找的能力或需求"),
    textarea,
    h("p", { id: "q-hint", class: "hint" }, "按回车键搜索，Shift + 回车换行。可粘贴整段需求或能力描述。"),
    h("div", { class: "form-row" }, targetSwitch(state.target),
      h("div", { class: "field" }, h("label", { for: "region" }, "地区"), regionInput,
        regionDatalist("region-options")),
      orgField,
      h("button", { type: "submit", class: "primary" }, "搜索")),
    pickerSlot);
  const status = h("p", { id: "result-status", class: "result-status", role: "status", "aria-live": "polite" });
  const results = h("ol", { class: "results", "aria-label": "搜索结果" });
  const more = h("button", { type: "button", class: "secondary more", hidden: true }, "显示更多结果");
  const errorSlot = h("div", { class: "error-slot" });

  main.append(h("h1", {}, "智能搜索"),
    h("p", { class: "lead" }, "用一段中文描述查找匹配的企业能力或场景需求；每条结果都附有匹配理由和证据段落。"),
    form, errorSlot, status, results, more);

  loadDomains().then((domains) => {
    if (!ctx.alive()) return;
    picker = domainPicker(domains, state.domains, "search-domain");
    clear(pickerSlot).append(picker.element);
  }).catch(() => {
    if (ctx.alive()) clear(pickerSlot).append(messageBox("error", "领域列表加载失败", "仍可不按领域搜索。"));
  });

  form.addEventListener("change", (event) => {
    if (event.target.name === "target") orgField.hidden = event.target.value !== "capabilities";
  });
  textarea.addEventListener("keydown", (event) => {
    // Enter searches; Shift/Ctrl+Enter adds a line. Enter while an IME is composing belongs to the IME.
    if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  let current = null;
  let shown = 0;

  async function run(offset) {
    clear(errorSlot);
    if (offset === 0) {
      clear(results);
      shown = 0;
    }
    more.hidden = true;
    status.textContent = offset === 0 ? "正在搜索…" : "正在加载更多结果…";
    const body = {
      query: current.q, target: current.target, limit: PAGE, offset,
      filters: {
        domain: current.domains, region: current.region ? [current.region] : [],
        org_type: current.target === "capabilities" && current.org ? [current.org] : [],
      },
    };
    try {
      const page = await api.post("/v1/search", body, { signal: ctx.signal });
      if (!ctx.alive()) return;
      const label = "查询内容";
      page.items.forEach((item) => results.append(matchCard(item, { queryText: current.q, queryLabel: label })));
      shown += page.items.length;
      if (shown === 0) {
        status.textContent = "没有找到匹配结果。";
        errorSlot.append(messageBox("empty", "没有找到匹配结果",
          "可以换一种说法、减少筛选条件（领域、地区、机构类型），或切换查找对象。"));
        return;
      }
      const what = current.target === "capabilities" ? "能力" : "需求";
      status.textContent = `显示 ${shown} 条${what}（共 ${page.total} 个候选，按匹配度排序；用时 ${Math.round(page.took_ms)} 毫秒）`;
      more.hidden = !(page.items.length === PAGE && shown < page.total);
    } catch (err) {
      if (err.name === "AbortError" || !ctx.alive()) return;
      status.textContent = "搜索失败。";
      const fields = Array.isArray(err.details) ? err.details.map((d) => `${d.field}：${d.reason}`).join("；") : "";
      errorSlot.append(messageBox("error", describeError(err), fields || err.message));
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = textarea.value.trim();
    if (!q) {
      textarea.setAttribute("aria-invalid", "true");
      clear(errorSlot).append(messageBox("error", "请输入要搜索的内容"));
      textarea.focus();
      return;
    }
    textarea.removeAttribute("aria-invalid");
    current = {
      q, target: form.elements.target.value, domains: picker.selected(),
      region: regionInput.value.trim(), org: orgSelect.value,
    };
    const hash = hashFor(current);
    // pushState (not location.hash) so the router does not rebuild the page under the user's cursor.
    if (location.hash !== hash) history.pushState(null, "", hash);
    run(0);
  });
  more.addEventListener("click", () => run(shown));

  if (state.q) {
    current = state;
    run(0);
  } else {
    textarea.focus();
  }
}
