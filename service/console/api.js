// Calls to the scenematch API: one fetch wrapper, uniform errors, the admin token in sessionStorage.

const TOKEN_KEY = "scenematch.adminToken";

export class ApiFailure extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status; // 0: the service could not be reached
    this.code = code;
    this.details = details;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  // sessionStorage only: the token dies with the tab and is never written to disk by us.
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new CustomEvent("scenematch:token"));
}

function headersFor(body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = getToken();
  // Reads work without it; with it the admin also sees restricted records and contacts.
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

async function send(method, path, { body, signal, raw = false } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method, signal, headers: headersFor(body), cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiFailure(0, "unreachable", "无法连接服务，请检查网络或服务是否在运行。");
  }
  if (response.ok) return raw ? response : response.status === 204 ? null : response.json();
  let payload = null;
  try { payload = await response.json(); } catch { /* not JSON: keep the status only */ }
  const error = payload && payload.error ? payload.error : {};
  const failure = new ApiFailure(response.status, error.code || `http_${response.status}`,
    error.message || response.statusText || "请求失败", error.details);
  if (response.status === 503 && failure.code === "not_ready") {
    window.dispatchEvent(new CustomEvent("scenematch:not-ready", { detail: failure.message }));
  }
  throw failure;
}

export const api = {
  get: (path, opts) => send("GET", path, opts),
  post: (path, body, opts) => send("POST", path, { ...opts, body }),
  download: (path, opts) => send("GET", path, { ...opts, raw: true }),
};

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (Array.isArray(value)) value.forEach((v) => search.append(key, v));
    else if (value !== undefined && value !== null && value !== "") search.append(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

let domainsPromise = null;

export function loadDomains() {
  // The taxonomy never changes while the service runs: fetch it once per page load.
  if (!domainsPromise) {
    domainsPromise = api.get("/v1/domains").catch((err) => { domainsPromise = null; throw err; });
  }
  return domainsPromise;
}

export async function readiness() {
  try {
    const response = await fetch("/readyz", { cache: "no-store" });
    if (response.ok) return { ready: true };
    let reason = "";
    try { reason = (await response.json()).error.message; } catch { /* keep empty */ }
    return { ready: false, reason };
  } catch {
    return { ready: false, reason: "", unreachable: true };
  }
}

// A Chinese sentence for a failure, for the places that show it to the user.
export function describeError(err) {
  if (err.status === 0) return err.message;
  if (err.status === 401) return "需要管理员令牌：请先在“管理”页输入令牌。";
  if (err.status === 403) return "令牌无效，或服务端未启用管理功能（未设置管理员令牌）。";
  if (err.status === 404) return "未找到：记录不存在，或服务端尚未提供该接口。";
  if (err.status === 409) return "冲突：已有同类任务在运行。";
  if (err.status === 422 || err.status === 400) return "输入有误，请检查填写的内容。";
  if (err.status === 410) return "文件已过期并被删除，请重新生成。";
  if (err.status === 429) return "进行中的任务过多，请等当前任务完成后再试。";
  if (err.status === 503) return "服务尚未就绪：索引尚未加载，搜索和匹配暂不可用，请稍后再试。";
  return `请求失败（HTTP ${err.status}）。`;
}
