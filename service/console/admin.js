// The admin tab: token (sessionStorage only), index status, reindex with progress, report export.
import { api, describeError, getToken, loadDomains, setToken } from "./api.js";
import { clear, formatDate, h, JOB_STATUS, messageBox, percent, regionDatalist } from "./dom.js";
import { domainSelect } from "./filters.js";

const POLL_MS = 1000;
const REINDEX_JOB = "scenematch.reindexJob";
const REPORT_JOB = "scenematch.reportJob";
const COUNT_LABELS = { needs: "需求", capabilities: "能力", need: "需求", capability: "能力" };
const FORMATS = { xlsx: "Excel（xlsx）", csv: "CSV（Excel 可打开）", jsonl: "JSONL（含完整解释）", html: "网页（HTML，可打印）" };

function countsText(counts) {
  if (!counts || typeof counts !== "object") return counts;
  return Object.entries(counts).map(([k, v]) => `${COUNT_LABELS[k] || k} ${v} 条`).join("，");
}

function indexTypesText(types) {
  if (!types || typeof types !== "object") return types;
  const describe = (value) => (value && typeof value === "object"
    ? (value.type || Object.entries(value).map(([k, v]) => `${COUNT_LABELS[k] || k} ${describe(v)}`).join("、"))
    : String(value));
  const names = { dense: "向量", lexical: "关键词" };
  return Object.entries(types).map(([k, v]) => `${names[k] || k}：${describe(v)}`).join("；");
}

function minutes(seconds) {
  if (typeof seconds !== "number") return null;
  return seconds < 120 ? `${Math.round(seconds)} 秒` : `${Math.round(seconds / 60)} 分钟`;
}

// When the encoder adapts on its own next, and what the last adaptation decided.
function autoAdaptText(auto) {
  if (!auto) return null;
  if (!auto.enabled) return "已关闭";
  const state = auto.state || {};
  const parts = [];
  if (state.last_run_at) {
    parts.push(`上次 ${formatDate(state.last_run_at)}（${state.last_activated ? "已启用新模型" : "未启用"}，基线 ${state.baseline_records} 条）`);
  } else {
    parts.push("尚未运行");
  }
  if (auto.last_check && auto.last_check.reason) parts.push(`最近检查：${auto.last_check.reason}`);
  return parts.join("；");
}

// The fields an operator looks at first, in Chinese; the whole answer stays available as JSON below.
function indexRows(info) {
  const modes = { full: "全量", incremental: "增量" };
  return [
    ["当前版本", info.version],
    ["构建时间", info.built_at ? `${formatDate(info.built_at)}${modes[info.mode] ? `（${modes[info.mode]}）` : ""}` : null],
    ["已启用", minutes(info.age_s)],
    ["构建用时", minutes(info.build_seconds)],
    ["嵌入模型", info.model ? `${info.model}${info.dim ? `（${info.dim} 维）` : ""}` : null],
    ["已索引", countsText(info.counts || info.indexed_counts)],
    ["数据库中", countsText(info.stored_counts)],
    ["待索引变更", info.pending_changes],
    ["索引类型", indexTypesText(info.index_types || info.index_type)],
    ["正在重建", typeof info.rebuilding === "boolean" ? (info.rebuilding ? "是" : "否") : null],
    ["最近刷新错误", info.last_refresh_error],
    ["自动自适应", autoAdaptText(info.auto_adapt)],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
}

/** Polls a job until it ends; shows a progress bar, its status and its error. */
function jobWatcher(ctx, { title, statusPath, storageKey, onSucceeded }) {
  const bar = h("progress", { max: 1, value: 0, "aria-label": `${title}进度` });
  const text = h("p", { class: "job-text" });
  const live = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const extra = h("div", {});
  const box = h("div", { class: "job", hidden: true }, bar, text, live, extra);
  let lastAnnounced = "";

  function show(job) {
    const progress = job.status === "succeeded" ? 1 : Number(job.progress) || 0;
    bar.value = progress;
    const note = job.message || (job.result && job.result.message);
    const message = note ? `：${note}` : "";
    const seconds = job.duration_s != null ? `，用时 ${Math.round(job.duration_s)} 秒` : "";
    const state = JOB_STATUS[job.status] || job.status;
    text.textContent = job.status === "succeeded" ? `${title}${state}${seconds}。`
      : job.status === "failed" ? `${title}${state}。` : `${title}${state} ${percent(progress)}${message}`;
    box.dataset.status = job.status;
    // Announce status changes and quarter steps only: once a second would drown a screen reader.
    const step = `${job.status}-${Math.floor(progress * 4)}`;
    if (step !== lastAnnounced) {
      lastAnnounced = step;
      live.textContent = text.textContent;
    }
    clear(extra);
    if (job.status === "failed") extra.append(messageBox("error", `${title}失败`, job.error || ""));
  }

  async function watch(jobId) {
    sessionStorage.setItem(storageKey, jobId);
    box.hidden = false;
    while (ctx.alive()) {
      let job;
      try {
        job = await api.get(statusPath(jobId), { signal: ctx.signal });
      } catch (err) {
        if (err.name === "AbortError" || !ctx.alive()) return;
        if (err.status === 404) sessionStorage.removeItem(storageKey);
        clear(extra).append(messageBox("error", describeError(err), err.message));
        return;
      }
      if (!ctx.alive()) return;
      show(job);
      if (job.status === "succeeded" || job.status === "failed") {
        if (job.status === "succeeded" && onSucceeded) onSucceeded(job, extra);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
  const resumeId = sessionStorage.getItem(storageKey);
  return { element: box, watch, resume: () => { if (resumeId && getToken()) watch(resumeId); } };
}

function filenameFrom(disposition, fallback) {
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition || "");
  if (star) return decodeURIComponent(star[1].trim().replace(/^"|"$/g, ""));
  const plain = /filename="?([^";]+)"?/i.exec(disposition || "");
  return plain ? plain[1] : fallback;
}

async function download(jobId, format, button, errorSlot) {
  button.disabled = true;
  clear(errorSlot);
  try {
    // fetch + blob rather than a link: the file needs the Authorization header.
    const response = await api.download(`/v1/reports/${encodeURIComponent(jobId)}/file`);
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: filenameFrom(response.headers.get("content-disposition"), `匹配报告-${jobId}.${format}`) });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    errorSlot.append(messageBox("error", `下载失败：${describeError(err)}`, err.message));
  } finally {
    button.disabled = false;
  }
}

export function renderAdmin(main, ctx) {
  // ---- token -------------------------------------------------------------------------------
  const tokenInput = h("input", { id: "admin-token", type: "password", autocomplete: "off", spellcheck: "false" });
  const tokenStatus = h("p", { class: "token-status", role: "status", "aria-live": "polite" });
  const tokenForm = h("form", { class: "token-form" },
    h("label", { for: "admin-token" }, "管理员令牌"), tokenInput,
    h("button", { type: "submit", class: "primary" }, "保存并验证"),
    h("button", { type: "button", class: "secondary", id: "clear-token" }, "清除令牌"));
  const showTokenState = () => {
    tokenStatus.textContent = getToken() ? "已设置令牌（仅保存在本标签页的会话中，关闭标签页即清除）。" : "尚未设置令牌。";
  };

  // ---- index status ------------------------------------------------------------------------
  const indexBody = h("div", { class: "index-status", "aria-live": "polite" });
  const refreshButton = h("button", { type: "button", class: "secondary" }, "刷新状态");
  // Resolves to null when the status was shown, or to the failure (its status tells a bad token).
  async function loadIndex() {
    if (!getToken()) {
      clear(indexBody).append(messageBox("info", "输入管理员令牌后可查看索引状态。"));
      return null;
    }
    clear(indexBody).append(h("p", { class: "loading" }, "正在读取索引状态…"));
    try {
      const info = await api.get("/v1/admin/index", { signal: ctx.signal });
      if (!ctx.alive()) return false;
      clear(indexBody).append(
        h("dl", { class: "fields" }, indexRows(info).map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)])),
        h("details", { class: "raw" }, h("summary", {}, "全部字段（JSON）"),
          h("pre", {}, JSON.stringify(info, null, 2))));
      return null;
    } catch (err) {
      if (err.name !== "AbortError" && ctx.alive()) {
        clear(indexBody).append(messageBox("error", describeError(err), err.message));
      }
      return err;
    }
  }

  // ---- reindex -----------------------------------------------------------------------------
  const reindexErrors = h("div", {});
  const reindexWatcher = jobWatcher(ctx, {
    title: "重建索引", statusPath: (id) => `/v1/admin/jobs/${encodeURIComponent(id)}`,
    storageKey: REINDEX_JOB, onSucceeded: () => loadIndex(),
  });
  const modeSelect = h("select", { id: "reindex-mode" },
    h("option", { value: "full" }, "全量重建（重新构建整个索引）"),
    h("option", { value: "incremental" }, "增量刷新（只处理变更）"));
  const reindexButton = h("button", { type: "submit", class: "primary" }, "开始重建索引");
  const reindexForm = h("form", { class: "inline-form" },
    h("label", { for: "reindex-mode" }, "方式"), modeSelect, reindexButton);
  reindexForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(reindexErrors);
    reindexButton.disabled = true;
    try {
      const { job_id: jobId } = await api.post("/v1/admin/reindex", { mode: modeSelect.value }, { signal: ctx.signal });
      await reindexWatcher.watch(jobId);
    } catch (err) {
      if (err.name === "AbortError" || !ctx.alive()) return;
      const running = err.status === 409 && err.details && (err.details.job_id || err.details.running_job_id);
      if (running) {
        reindexErrors.append(messageBox("info", "已有重建任务在运行，下面显示它的进度。"));
        await reindexWatcher.watch(running);
      } else {
        reindexErrors.append(messageBox("error", describeError(err), err.message));
      }
    } finally {
      reindexButton.disabled = false;
    }
  });

  // ---- report export -----------------------------------------------------------------------
  const reportErrors = h("div", {});
  const domainSlot = h("div", { class: "field" }, h("label", { for: "report-domain" }, "领域"),
    h("select", { id: "report-domain" }, h("option", { value: "" }, "全部领域")));
  const regionInput = h("input", { id: "report-region", list: "report-regions", placeholder: "全部地区", autocomplete: "off" });
  const perNeed = h("input", { id: "report-per-need", type: "number", min: 1, max: 50, value: 5, required: true });
  const formatSelect = h("select", { id: "report-format" },
    Object.entries(FORMATS).map(([v, label]) => h("option", { value: v }, label)));
  const reportButton = h("button", { type: "submit", class: "primary" }, "生成报告");
  let lastFormat = "xlsx";
  const reportWatcher = jobWatcher(ctx, {
    title: "生成报告", statusPath: (id) => `/v1/reports/${encodeURIComponent(id)}`, storageKey: REPORT_JOB,
    onSucceeded: (job, extra) => {
      const format = job.format || (job.params && job.params.format) || lastFormat;
      const errors = h("div", {});
      const facts = [job.file_name && `文件：${job.file_name}`, job.needs != null && `需求 ${job.needs} 条`,
        job.rows != null && `共 ${job.rows} 行`, job.size_bytes != null && `${Math.max(1, Math.round(job.size_bytes / 1024))} KB`];
      if (facts.some(Boolean)) extra.append(h("p", { class: "hint" }, facts.filter(Boolean).join(" · ")));
      const button = h("button", { type: "button", class: "primary", id: "download-report" }, "下载报告");
      button.addEventListener("click", () => download(job.job_id || sessionStorage.getItem(REPORT_JOB), format, button, errors));
      extra.append(button, errors);
    },
  });
  const reportForm = h("form", { class: "report-form" },
    domainSlot,
    h("div", { class: "field" }, h("label", { for: "report-region" }, "地区"), regionInput, regionDatalist("report-regions")),
    h("div", { class: "field" }, h("label", { for: "report-per-need" }, "每条需求的匹配数"), perNeed),
    h("div", { class: "field" }, h("label", { for: "report-format" }, "格式"), formatSelect),
    reportButton);
  loadDomains().then((domains) => {
    if (ctx.alive()) domainSlot.replaceChild(domainSelect(domains, "report-domain"), domainSlot.querySelector("select"));
  }).catch(() => { /* the select keeps “全部领域” */ });
  reportForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(reportErrors);
    const n = Number(perNeed.value);
    if (!Number.isInteger(n) || n < 1 || n > 50) {
      perNeed.setAttribute("aria-invalid", "true");
      reportErrors.append(messageBox("error", "每条需求的匹配数应为 1 到 50 之间的整数。"));
      perNeed.focus();
      return;
    }
    perNeed.removeAttribute("aria-invalid");
    const filters = {};
    const domain = reportForm.querySelector("#report-domain").value;
    if (domain) filters.domain = [domain];
    if (regionInput.value.trim()) filters.region = [regionInput.value.trim()];
    lastFormat = formatSelect.value;
    reportButton.disabled = true;
    try {
      const accepted = await api.post("/v1/reports", { filters, per_need: n, format: lastFormat }, { signal: ctx.signal });
      if (typeof accepted.needs === "number") {
        reportErrors.append(messageBox("info", `已选择 ${accepted.needs} 条需求，每条列出前 ${n} 个匹配能力。`));
      }
      await reportWatcher.watch(accepted.job_id);
    } catch (err) {
      if (err.name === "AbortError" || !ctx.alive()) return;
      reportErrors.append(messageBox("error", describeError(err), err.message));
    } finally {
      reportButton.disabled = false;
    }
  });

  // ---- wiring ------------------------------------------------------------------------------
  tokenForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = tokenInput.value.trim();
    if (!token) {
      tokenStatus.textContent = "请输入令牌。";
      tokenInput.focus();
      return;
    }
    setToken(token);
    tokenInput.value = "";
    const failure = await loadIndex();
    if (!ctx.alive()) return;
    if (!failure) {
      tokenStatus.textContent = "令牌有效，已保存到本标签页的会话中。";
    } else if (failure.status === 401 || failure.status === 403) {
      setToken(""); // a rejected token is not kept
      tokenStatus.textContent = `令牌无效（HTTP ${failure.status}），未保存。请检查后重新输入。`;
      tokenInput.focus();
    } else {
      tokenStatus.textContent = "令牌已保存，但暂时无法验证：见下方“索引状态”的说明。";
    }
  });
  tokenForm.querySelector("#clear-token").addEventListener("click", () => {
    setToken("");
    showTokenState();
    loadIndex();
  });
  refreshButton.addEventListener("click", loadIndex);

  const section = (id, title, ...children) => h("section", { class: "panel", "aria-labelledby": id },
    h("h2", { id }, title), ...children);
  main.append(h("h1", {}, "管理"),
    h("p", { class: "lead" }, "运维人员使用：查看索引状态、重建索引、导出匹配报告。需要管理员令牌。"),
    section("token-title", "令牌", tokenForm, tokenStatus,
      h("p", { class: "hint" }, "令牌只保存在当前标签页的 sessionStorage 中，不写入磁盘，也不会发送给本服务以外的地址。")),
    section("index-title", "索引状态", indexBody, refreshButton),
    section("reindex-title", "重建索引", h("p", { class: "hint" },
      "重建期间查询照常由当前版本回答，新版本构建完成后自动切换。"), reindexForm, reindexErrors, reindexWatcher.element),
    section("report-title", "导出匹配报告", h("p", { class: "hint" },
      "为选定的需求生成推荐能力清单（含匹配理由），生成后可下载。"), reportForm, reportErrors, reportWatcher.element));
  showTokenState();
  loadIndex();
  reindexWatcher.resume();
  reportWatcher.resume();
}
