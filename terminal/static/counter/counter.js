// The counter page: a clerk's view of the terminal daemon's API (same origin, bearer token, Chinese).
// Plain JavaScript, no library. Every answer of the API is read as data; a clerk sees sentences (the
// daemon's Chinese message with its code beside it), never JSON or a stack trace. Amounts are typed and
// shown in yuan and travel in fen (converted exactly, as text, never through floating point).
"use strict";

const $ = (sel) => document.querySelector(sel);
const S = {                       // the page's state
  token: "", operator: "", reader: null, readers: [], card: null, visit: null, receipt: null,
  events: null, eventsRetry: null,
};
window.counterPerf = [];          // card event -> card read -> holder shown, for the browser tests

// ---- money -----------------------------------------------------------------------------------------------
function toFen(text) {
  const m = /^\s*(\d{1,10})(?:\.(\d{1,2}))?\s*$/.exec(text || "");
  return m ? Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0")) : null;
}
function yuan(fen) {
  const sign = fen < 0 ? "-" : "";
  const a = Math.abs(fen);
  return `${sign}${Math.floor(a / 100)}.${String(a % 100).padStart(2, "0")}`;
}

// ---- the API -------------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(code, message, details = {}, status = 0) {
    super(message);
    Object.assign(this, { code, details, status });
  }
}
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${S.token}`, "Accept-Language": "zh-CN" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["Idempotency-Key"] = newKey(); // a retry after a lost answer gets the first one
  let response;
  for (let attempt = 0; ; attempt += 1) {
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      break;
    } catch (e) {
      if (attempt < 1) continue;
      throw new ApiError("NETWORK", "无法连接本机的终端服务，请确认终端程序正在运行。");
    }
  }
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    if (data && typeof data.code === "string" && typeof data.message === "string") {
      throw new ApiError(data.code, data.message, data.details || {}, response.status);
    }
    throw new ApiError(`HTTP_${response.status}`, `终端返回了无法识别的应答（HTTP ${response.status}），请联系技术支持。`);
  }
  if (data === null) throw new ApiError("BAD_ANSWER", "终端返回了无法识别的应答，请联系技术支持。");
  return data;
}

// ---- messages ------------------------------------------------------------------------------------------------
function showError(err) {
  const box = $("#error");
  const known = err instanceof ApiError;
  box.querySelector(".msg").textContent = known ? err.message : "页面出错，请刷新后重试。";
  box.querySelector(".code").textContent = known ? err.code : "PAGE_ERROR";
  box.hidden = false;
  $("#notice").hidden = true;
  if (!known) console.error(err);
}
function notice(text) {          // beside an error, never instead of it: an error stays until the next action
  const n = $("#notice");
  n.textContent = text;
  n.hidden = false;
}
function clearMessages() { $("#error").hidden = true; $("#notice").hidden = true; }
async function run(button, work) {   // one action: busy button, messages cleared, errors shown
  clearMessages();
  if (button) button.disabled = true;
  try { return await work(); } catch (e) { showError(e); return undefined; } finally { if (button) button.disabled = false; }
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// ---- sign-in ---------------------------------------------------------------------------------------------------
function signedIn() {
  S.token = sessionStorage.getItem("sscard.token") || "";
  S.operator = sessionStorage.getItem("sscard.operator") || "";
  return Boolean(S.token && S.operator);
}
async function start() {
  if (!signedIn()) { $("#sign-in").hidden = false; $("#desk").hidden = true; return; }
  try {
    const info = await api("GET", "/v1/counter");
    $("#institution").textContent = info.institution_name;
    $("#terminal").textContent = `终端 ${info.terminal_id}`;
    S.readers = info.readers;
    S.reader = S.readers.includes(sessionStorage.getItem("sscard.reader")) ? sessionStorage.getItem("sscard.reader") : S.readers[0];
    const select = $("#reader-select");
    select.replaceChildren(...S.readers.map((r) => { const o = el("option", r); o.value = r; return o; }));
    select.value = S.reader;
  } catch (e) {
    if (e.code === "UNAUTHORIZED") { sessionStorage.removeItem("sscard.token"); $("#sign-in").hidden = false; }
    showError(e);
    return;
  }
  clearMessages();
  $("#sign-in").hidden = true;
  $("#desk").hidden = false;
  $("#operator-name").textContent = `柜员：${S.operator}`;
  $("#sign-out").hidden = false;
  if (!$("#lines").children.length) addLine();
  await refreshReader();
  connectEvents();
  loadDay();
}

// ---- reader, card and holder ---------------------------------------------------------------------------------------
function readerState(available) {
  const p = $("#reader-state");
  p.textContent = available ? "读卡器正常" : "读卡器不可用";
  p.className = `pill ${available ? "ok" : "bad"}`;
  document.body.dataset.reader = available ? "available" : "unavailable";
}
function cardState(present) {
  const p = $("#card-state");
  p.textContent = present ? "已插卡" : "未插卡";
  p.className = `pill ${present ? "ok" : ""}`;
  document.body.dataset.card = present ? "present" : "absent";
}
async function refreshReader() {
  try {
    const list = await api("GET", "/v1/readers");
    const mine = list.find((r) => r.reader === S.reader);
    if (!mine) return;
    readerState(mine.available);
    cardState(mine.card_present);
    if (mine.card_present) await readCard();
    else showHolder(null);
  } catch (e) { showError(e); }
}
async function readCard(perf) {
  try {
    const card = await api("GET", `/v1/card?reader=${encodeURIComponent(S.reader)}`);
    if (perf) perf.read = performance.now();
    showHolder(card);
    if (perf) {
      requestAnimationFrame(() => { perf.shown = performance.now(); window.counterPerf.push(perf); });
    }
  } catch (e) {
    showHolder(null);
    showError(e);
  }
}
const SEX = { 1: "男", 2: "女", 9: "未说明" };
function showHolder(card) {
  if (!card || !S.kiosk || S.kiosk.card.card_no !== card.card_number) clearKiosk(); // another holder sees nothing
  S.card = card;
  $("#holder-empty").hidden = Boolean(card);
  $("#holder-data").hidden = !card;
  const warn = $("#holder-warnings");
  warn.hidden = true;
  if (!card) { document.body.dataset.holder = ""; return; }
  $("#h-name").textContent = card.name;
  $("#h-sex").textContent = SEX[card.sex] || "—";
  const ssn = card.social_security_number;
  $("#h-ssn").textContent = ssn.length === 18 ? `${ssn.slice(0, 6)}********${ssn.slice(14)}` : ssn;
  $("#h-card").textContent = card.card_number;
  $("#h-region").textContent = card.region_code;
  $("#h-expiry").textContent = card.expiry_date || "—";
  if (card.warnings && card.warnings.length) {
    warn.textContent = `卡片有 ${card.warnings.length} 项数据不规范，已按可读内容显示。`;
    warn.hidden = false;
  }
  document.body.dataset.holder = card.card_number;
}
async function connectEvents() {
  clearTimeout(S.eventsRetry);
  if (S.events) S.events.close();
  let grant;
  try {
    grant = await api("POST", "/v1/readers/events/token", { reader: S.reader });
  } catch (e) {
    readerState(false);
    S.eventsRetry = setTimeout(connectEvents, 3000);
    return;
  }
  const es = new EventSource(`${grant.url}&timeout=3600`);
  S.events = es;
  es.addEventListener("card", (ev) => {
    const data = JSON.parse(ev.data);
    if (data.kind === "inserted") {
      cardState(true);
      clearMessages();
      readCard({ event: performance.now() });
    } else if (data.kind === "removed") {
      cardState(false);
      showHolder(null);
      notice("卡片已拔出。");
    }
  });
  es.addEventListener("reader", (ev) => {
    const data = JSON.parse(ev.data);
    const available = data.kind === "reader_available";
    readerState(available);
    if (available) refreshReader();
    else { cardState(false); showHolder(null); showError(new ApiError("READER_UNAVAILABLE", "读卡器不可用，请检查读卡器连接。")); }
  });
  es.onopen = () => { document.body.dataset.events = "open"; };
  es.onerror = () => {        // the stream ended or broke: a new token, a new stream (the old token expires)
    es.close();
    document.body.dataset.events = "closed";
    S.eventsRetry = setTimeout(connectEvents, 1000);
  };
}

// ---- identity -------------------------------------------------------------------------------------------------
const REASONS = {
  UNKNOWN_PERSON: "社保中心没有此人的参保登记", DEATH_REPORTED: "已有死亡报告", NOT_ENROLLED: "当前没有有效参保",
  CARD_REPORTED_LOST: "该卡已挂失", CARD_CANCELLED: "该卡已注销", CARD_REPLACED: "该卡已补换，旧卡失效",
  CARD_EXPIRED: "该卡已过期", CARD_NOT_PERSONS: "该卡不是本人的卡", UNKNOWN_CARD: "社保中心没有这张卡的记录",
  PIN_NOT_VERIFIED: "密码未通过", BIOMETRIC_FAILED: "人脸/指纹比对未通过", CENTRE_UNREACHABLE: "社保中心无法连接",
};

function ago(seconds) {
  return seconds < 120 ? `${seconds} 秒` : seconds < 7200 ? `${Math.round(seconds / 60)} 分钟` : `${Math.round(seconds / 3600)} 小时`;
}

async function identityCheck(ev) {
  ev.preventDefault();
  const pin = $("#identity-pin");
  await run(ev.submitter, async () => {
    const r = await api("POST", "/v1/identity/check", { reader: S.reader, pin: pin.value });
    const out = $("#identity-result");
    const why = r.reasons.map((c) => REASONS[c] || c).join("；");
    const age = r.blacklist_age_seconds == null ? "从未更新" : `${ago(r.blacklist_age_seconds)}前更新`;
    out.textContent = r.status === "verified"
      ? `核验通过：${r.name}，卡片与密码均有效${r.card_authenticated ? "，卡片为真卡" : ""}。社保中心记录号 ${r.check_id}。`
      : r.status === "provisional"
        ? `暂时核验（社保中心无法连接，不作为正式核验）：卡片与密码有效，黑名单${age}。中心恢复后自动补报（${r.key}）。`
        : `核验未通过：${r.name}。${why}。社保中心记录号 ${r.check_id}。`;
    out.className = `result ${r.status === "verified" ? "good" : r.status === "provisional" ? "warn" : "bad"}`;
    out.hidden = false;
  });
  pin.value = "";
}

// ---- self-service (kiosk) ------------------------------------------------------------------------------------
const CARD_STATUS = { active: "正常", reported_lost: "已挂失", cancelled: "已注销", replaced: "已补换", expired: "已过期" };
function beijing(utc) {  // the centre's UTC stamps as Beijing time, "2024-03-01 10:00"
  return new Date(new Date(utc).getTime() + 8 * 3600 * 1000).toISOString().slice(0, 16).replace("T", " ");
}
function clearKiosk() {
  S.kiosk = null;
  $("#kiosk-result").hidden = true;
  for (const id of ["#kiosk-accounts", "#kiosk-accumulators", "#kiosk-settlements", "#kiosk-pension"]) $(id).replaceChildren();
}
function rows(target, list, cells) {
  $(target).replaceChildren(...list.map((item) => {
    const tr = document.createElement("tr");
    for (const [text, cls] of cells(item)) tr.append(el("td", text, cls));
    return tr;
  }));
}
async function kiosk(ev) {
  ev.preventDefault();
  const pin = $("#kiosk-pin");
  clearKiosk();
  await run(ev.submitter, async () => {
    const r = await api("POST", "/v1/kiosk/summary", { reader: S.reader, pin: pin.value });
    S.kiosk = r;
    const c = r.card;
    $("#kiosk-card").textContent = `${r.name}，卡号 ${c.card_no}，卡片状态：${CARD_STATUS[c.status] || c.status}`
      + (r.expiry_date ? `，有效期至 ${r.expiry_date}` : "") + "。";
    $("#kiosk-card").className = `result ${c.status === "active" ? "good" : "bad"}`;
    const lines = [["个人账户余额", `${yuan(r.personal_account)} 元`]];
    if (r.pensioner) {
      lines.push(["养老金账户余额", `${yuan(r.pensioner_account)} 元`], ["月养老金", `${yuan(r.pensioner.monthly_amount)} 元`]);
    }
    if (r.certification) {
      lines.push(["资格认证", r.certification.certified ? `有效至 ${r.certification.valid_until}` : "已过期或未认证"]);
    }
    rows("#kiosk-accounts", lines, ([k, v]) => [[k], [v, "num"]]);
    const a = r.accumulators;
    rows("#kiosk-accumulators", [
      ["门诊起付线已累计", a.outpatient.deductible_used], ["门诊统筹基金已支付", a.outpatient.hifp_paid],
      ["住院起付线已累计", a.inpatient.deductible_used], ["住院统筹基金已支付", a.inpatient.hifp_paid],
      ["大病保险已支付", a.hifmi_paid], ["医疗救助已支付", a.maf_paid],
    ], ([k, v]) => [[k], [yuan(v), "num"]]);
    rows("#kiosk-settlements", r.settlements, (x) => [
      [beijing(x.setl_time)], [x.institution || "—"], [yuan(x.medfee_sumamt), "num"],
      [yuan(x.fund_pay_sumamt), "num"], [yuan(x.acct_pay), "num"], [yuan(x.psn_cash_pay), "num"],
      [x.status === "voided" ? "已冲正" : x.refunded ? `已退 ${yuan(x.refunded)}` : "已结算"]]);
    rows("#kiosk-pension", r.pension_payments, (p) => [
      [beijing(p.at)], [p.kind === "issued" ? "发放" : "领取"], [p.month || p.institution || "—"],
      [yuan(p.amount), "num"]]);
    $("#kiosk-result").hidden = false;
  });
  pin.value = "";
}

// ---- hospital visit -------------------------------------------------------------------------------------------------
function addLine(line = {}) {
  const tr = document.createElement("tr");
  const code = el("input"); code.value = line.med_list_codg || ""; code.className = "code"; code.maxLength = 50;
  const cls = document.createElement("select");
  for (const [v, t] of [["A", "甲类"], ["B", "乙类"], ["C", "丙类（自费）"]]) { const o = el("option", t); o.value = v; cls.append(o); }
  cls.value = { "01": "A", "02": "B", "03": "C" }[line.chrgitm_lv] || line.chrgitm_lv || "A";
  cls.className = "cls";
  const amount = el("input"); amount.className = "amount"; amount.inputMode = "decimal";
  amount.value = line.det_item_fee_sumamt !== undefined ? yuan(line.det_item_fee_sumamt) : "";
  const over = el("input"); over.className = "over"; over.inputMode = "decimal";
  over.value = line.overlmt_amt ? yuan(line.overlmt_amt) : "";
  const del = el("button", "删除"); del.type = "button"; del.addEventListener("click", () => tr.remove());
  for (const c of [code, cls, amount, over, del]) { const td = document.createElement("td"); td.append(c); tr.append(td); }
  $("#lines").append(tr);
}
function readLines() {
  const lines = [];
  for (const [i, tr] of [...$("#lines").children].entries()) {
    const amountText = tr.querySelector(".amount").value;
    if (!amountText.trim() && !tr.querySelector(".code").value.trim()) continue;
    const amount = toFen(amountText);
    const over = tr.querySelector(".over").value.trim() ? toFen(tr.querySelector(".over").value) : 0;
    if (amount === null || amount === 0 || over === null || over > amount) {
      throw new ApiError("INVALID_AMOUNT", `第 ${i + 1} 行金额不对：请输入大于零、最多两位小数的元金额（超限价不超过金额）。`);
    }
    lines.push({ med_list_codg: tr.querySelector(".code").value.trim(), chrgitm_lv: tr.querySelector(".cls").value,
                 det_item_fee_sumamt: amount, overlmt_amt: over, feedetl_sn: String(i + 1) });
  }
  if (!lines.length) throw new ApiError("NO_FEE_LINES", "请先录入费用明细，或从 HIS 读取。");
  return lines;
}
function visitId() {
  const typed = $("#mdtrt-id").value.trim();
  if (typed) return typed;
  if (S.visit) return S.visit.mdtrt_id;
  throw new ApiError("NO_VISIT", "请先登记就诊，或输入 HIS 已登记的就诊号。");
}
async function registerVisit(ev) {
  ev.preventDefault();
  await run(ev.submitter, async () => {
    S.visit = await api("POST", "/v1/visits", { reader: S.reader, care: $("#care").value });
    $("#mdtrt-id").value = "";
    const info = $("#visit-info");
    info.textContent = `已登记：${S.visit.name}，${S.visit.care === "inpatient" ? "住院" : "门诊"}，就诊号 ${S.visit.mdtrt_id}。`;
    info.hidden = false;
    $("#presettle-result").hidden = true;
  });
}
async function loadFees(ev) {
  await run(ev.currentTarget, async () => {
    const fees = await api("GET", `/v1/visits/${encodeURIComponent(visitId())}/fees`);
    $("#lines").replaceChildren();
    fees.lines.forEach(addLine);
    notice(`已从 ${fees.source} 读取 ${fees.lines.length} 项费用（${fees.updated_at.slice(0, 19).replace("T", " ")}）。`);
  });
}
function amountsTable(table, lines) {
  table.replaceChildren(...lines.map((l) => {
    const tr = document.createElement("tr");
    tr.append(el("td", l.label), el("td", `${l.yuan} 元`, "num"));
    return tr;
  }));
}
async function presettle(ev) {
  await run(ev.currentTarget, async () => {
    const r = await api("POST", `/v1/visits/${encodeURIComponent(visitId())}/presettle`,
                        { lines: readLines(), use_account: $("#use-account").checked });
    amountsTable($("#presettle-lines"), r.lines);
    $("#explanation").replaceChildren(...r.explanation.map((s) => el("li", s)));
    $("#presettle-result").hidden = false;
  });
}
async function settle(ev) {
  ev.preventDefault();
  const pin = $("#settle-pin");
  await run(ev.submitter, async () => {
    const receipt = await api("POST", `/v1/visits/${encodeURIComponent(visitId())}/settle`,
                              { reader: S.reader, lines: readLines(), pin: pin.value, use_account: $("#use-account").checked });
    showReceipt(receipt);
    $("#presettle-result").hidden = true;
    loadDay();
  });
  pin.value = "";
}

// ---- pensions -------------------------------------------------------------------------------------------------
async function pensionStatus(ev) {
  await run(ev.currentTarget, async () => {
    const r = await api("GET", `/v1/pension/status?reader=${encodeURIComponent(S.reader)}`);
    const c = r.certification;
    const out = $("#pension-info");
    out.textContent = `待遇状态：${r.status_label}；月养老金 ${yuan(r.pensioner.monthly_amount)} 元；`
      + (c.certified ? `资格认证有效至 ${c.valid_until}。` : "资格认证已过期或未认证，请先认证。");
    out.className = `result ${c.certified && r.pensioner.status === 1 ? "good" : "bad"}`;
    out.hidden = false;
  });
}
async function certify(ev) {
  ev.preventDefault();
  const pin = $("#certify-pin");
  await run(ev.submitter, async () => {
    const r = await api("POST", "/v1/pension/certify", { reader: S.reader, pin: pin.value });
    const out = $("#certify-result");
    out.textContent = r.summary;
    out.className = `result ${r.passed ? "good" : "bad"}`;
    out.hidden = false;
  });
  pin.value = "";
}
async function collect(ev) {
  ev.preventDefault();
  const pin = $("#collect-pin");
  await run(ev.submitter, async () => {
    const amount = toFen($("#collect-amount").value);
    if (!amount) throw new ApiError("INVALID_AMOUNT", "领取金额不对：请输入大于零、最多两位小数的元金额。");
    showReceipt(await api("POST", "/v1/pension/collect", { reader: S.reader, pin: pin.value, amount }));
    loadDay();
  });
  pin.value = "";
}

// ---- the day's transactions ------------------------------------------------------------------------------------
async function loadDay() {
  try {
    const rows = await api("GET", "/v1/transactions");
    $("#day").replaceChildren(...rows.reverse().map((r) => {
      const tr = document.createElement("tr");
      tr.dataset.key = r.key;
      const view = el("button", "凭证"); view.type = "button";
      view.addEventListener("click", () => showReceipt(r));
      tr.append(el("td", r.at.slice(11, 19)), el("td", r.kind_label), el("td", r.name || "—"),
                el("td", r.amount ? r.amount_yuan : "—", "num"), el("td", r.state_label, `state-${r.state}`),
                el("td", r.reason || ""), el("td"));
      tr.lastChild.append(view);
      return tr;
    }));
  } catch (e) { showError(e); }
}

// ---- receipts and refunds -------------------------------------------------------------------------------------
const CARD_RECORD = { written: "已写入卡片" };
function receiptNode(r, paper) {
  const a = el("article", null, `receipt ${paper}`);
  const rows = [["姓名", r.name || "—"], ["卡号", r.card_no || "—"], ["时间", r.at.slice(0, 19).replace("T", " ")],
                ["流水号", r.key], ["状态", r.state_label]];
  const table = (pairs) => {
    const t = document.createElement("table");
    for (const [k, v] of pairs) { const tr = document.createElement("tr"); tr.append(el("td", k), el("td", v)); t.append(tr); }
    return t;
  };
  a.append(el("h1", r.institution_name), el("h2", r.title), table(rows), el("hr"));
  a.append(table(r.lines.length ? r.lines.map((l) => [l.label, `${l.yuan} 元`]) : [["金额", `${r.amount_yuan} 元`]]));
  a.append(el("hr"));
  const tail = [];
  if (r.original_key) tail.push(["原交易", r.original_key]);
  if (r.operator) tail.push(["经办人", r.operator]);
  if (r.card_record && (r.kind === "settle" || r.kind === "pension_collect")) {
    tail.push(["写卡", CARD_RECORD[r.card_record] || "未写入卡片（不影响结算）"]);
  }
  tail.push(["终端", `${r.terminal_id} ${r.terminal_number || ""}`.trim()]);
  a.append(table(tail));
  if (r.reason) a.append(el("p", `原因：${r.reason}`, "reason"));
  if (r.error) a.append(el("p", `代码：${r.error.code}`, "reason"));
  return a;
}
function showReceipt(r) {
  S.receipt = r;
  $("#receipt").replaceWith(Object.assign(receiptNode(r, $("#paper").value), { id: "receipt" }));
  $("#refund-open").hidden = !(r.kind === "settle" && r.state === "confirmed");
  $("#refund-form").hidden = true;
  const d = $("#receipt-dialog");
  if (!d.open) d.showModal();
}
const PAGE_SIZE = { p58: "58mm auto", p80: "80mm auto", a5: "A5" };
function printReceipt() {
  const paper = $("#paper").value;
  let area = $("#print-area");
  if (!area) { area = el("div"); area.id = "print-area"; document.body.append(area); }
  area.replaceChildren(receiptNode(S.receipt, paper));
  let size = $("#page-size");
  if (!size) { size = el("style"); size.id = "page-size"; document.head.append(size); }
  size.textContent = `@page { size: ${PAGE_SIZE[paper]}; margin: ${paper === "a5" ? "10mm" : "2mm"}; }`;
  window.print();
}
async function refund(ev) {
  ev.preventDefault();
  await run(ev.submitter, async () => {
    const text = $("#refund-amount").value.trim();
    const amount = text ? toFen(text) : null;
    if (text && !amount) throw new ApiError("INVALID_AMOUNT", "退费金额不对：请输入大于零、最多两位小数的元金额，或留空退全部。");
    const body = { reason: $("#refund-reason").value.trim(), operator: S.operator };
    if (amount) body.amount = amount;
    const r = await api("POST", `/v1/settlements/${encodeURIComponent(S.receipt.key)}/refund`, body);
    $("#refund-amount").value = "";
    $("#refund-reason").value = "";
    showReceipt(r);
    loadDay();
  });
}

// ---- wiring ---------------------------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#sign-in-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("sscard.operator", $("#operator").value.trim());
    sessionStorage.setItem("sscard.token", $("#token").value);
    $("#token").value = "";
    start();
  });
  $("#sign-out").addEventListener("click", () => { sessionStorage.clear(); location.reload(); });
  $("#reader-select").addEventListener("change", (ev) => {
    S.reader = ev.target.value;
    sessionStorage.setItem("sscard.reader", S.reader);
    refreshReader();
    connectEvents();
  });
  for (const b of document.querySelectorAll(".tabs button")) {
    b.addEventListener("click", () => {
      for (const o of document.querySelectorAll(".tabs button")) o.classList.toggle("active", o === b);
      for (const t of document.querySelectorAll(".tab")) t.hidden = t.id !== `tab-${b.dataset.tab}`;
      if (b.dataset.tab === "day") loadDay();
    });
  }
  $("#error .close").addEventListener("click", () => { $("#error").hidden = true; });
  $("#identity-form").addEventListener("submit", identityCheck);
  $("#register-form").addEventListener("submit", registerVisit);
  $("#add-line").addEventListener("click", () => addLine());
  $("#load-fees").addEventListener("click", loadFees);
  $("#presettle").addEventListener("click", presettle);
  $("#settle-form").addEventListener("submit", settle);
  $("#pension-status").addEventListener("click", pensionStatus);
  $("#certify-form").addEventListener("submit", certify);
  $("#collect-form").addEventListener("submit", collect);
  $("#kiosk-form").addEventListener("submit", kiosk);
  $("#refresh-day").addEventListener("click", loadDay);
  $("#print").addEventListener("click", printReceipt);
  $("#paper").addEventListener("change", () => { if (S.receipt) showReceipt(S.receipt); });
  $("#receipt-close").addEventListener("click", () => $("#receipt-dialog").close());
  $("#refund-open").addEventListener("click", () => {
    $("#refund-form").hidden = false;
    $("#refund-operator").textContent = S.operator;
  });
  $("#refund-form").addEventListener("submit", refund);
  window.addEventListener("error", (ev) => showError(ev.error));
  window.addEventListener("unhandledrejection", (ev) => showError(ev.reason));
  start();
});
