// Filter controls shared by the search page and the report export: domains by category, region.
import { h } from "./dom.js";

// Domains grouped by their category, in the taxonomy's order.
export function groupDomains(domainList) {
  const groups = new Map();
  for (const category of domainList.categories || []) groups.set(category.code, { ...category, domains: [] });
  for (const domain of domainList.items || []) {
    const code = domain.category_code || domain.category;
    if (!groups.has(code)) groups.set(code, { code, name: domain.category, domains: [] });
    groups.get(code).domains.push(domain);
  }
  return [...groups.values()];
}

/** Checkboxes in one fieldset per category, inside a disclosure that says how many are chosen. */
export function domainPicker(domainList, selected, idPrefix) {
  const chosen = new Set(selected);
  const count = h("span", { class: "picker-count" });
  const summary = h("summary", {}, "领域", count);
  const boxes = [];
  const update = () => {
    const n = boxes.filter((b) => b.checked).length;
    count.textContent = n ? `（已选 ${n} 个）` : "（全部）";
  };
  const groups = groupDomains(domainList).map((group) => h("fieldset", { class: "domain-group" },
    h("legend", {}, group.name),
    group.domains.map((domain) => {
      const id = `${idPrefix}-${domain.code}`;
      const box = h("input", {
        type: "checkbox", id, name: "domain", value: domain.code, checked: chosen.has(domain.code),
        onchange: update,
      });
      boxes.push(box);
      return h("label", { for: id, class: "check", title: domain.description || "" }, box, domain.name);
    })));
  const clearButton = h("button", {
    type: "button", class: "link-button",
    onclick: () => { boxes.forEach((b) => { b.checked = false; }); update(); },
  }, "清除领域选择");
  const picker = h("details", { class: "domain-picker", open: chosen.size > 0 },
    summary, h("div", { class: "domain-groups" }, groups), clearButton);
  update();
  return { element: picker, selected: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}

/** A single-choice select with one optgroup per category (used where one domain is enough). */
export function domainSelect(domainList, id, value = "") {
  return h("select", { id, name: "domain" },
    h("option", { value: "" }, "全部领域"),
    groupDomains(domainList).map((group) => h("optgroup", { label: group.name },
      group.domains.map((d) => h("option", { value: d.code, selected: d.code === value }, d.name)))));
}
