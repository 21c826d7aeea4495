// Switchboard portal. Plain JavaScript against the public /v1 API: every
// request carries the API key or portal-link token that the user signed in
// with, kept in sessionStorage (never in a URL). Pages are hash routes, so
// that each has a URL of its own that a support person can send.
"use strict";

const TOKEN_KEY = "switchboard.portal.token";
// A page waits this long for the API, then says so rather than hang. Test
// sends wait for the receiver, up to the webhook's timeout (120 s at most).
const API_TIMEOUT_MS = 130000;
const STATUSES = ["active", "inactive", "too_many_errors"];
const AUTH_TYPES = [
  ["none", "None"], ["basic", "Basic (username and password)"], ["bearer", "Bearer token"],
  ["authheader", "Whole Authorization header"], ["header", "Token in a custom header"], ["querystring", "Token in the query string"],
];

const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  link: null, // the portal link's scope, null for an API key
  notice: "", // why the user was signed out
};
let catalogue = null; // the event types, loaded once per sign-in
let renderSeq = 0; // a view whose seq is stale stops drawing
let timers = []; // cleared on every route change

// ---------- helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return el("time", { datetime: iso, title: d.toString() },
    d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }));
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function statusBadge(status) {
  const cls = { active: "ok", inactive: "", too_many_errors: "bad" }[status] ?? "";
  const label = { active: "Active", inactive: "Inactive", too_many_errors: "Too many errors" }[status] ?? status;
  return el("span", { class: `badge ${cls}`, "data-status": status }, label);
}

function outcomeBadge(outcome) {
  const cls = { delivered: "ok", retrying: "warn", dead_lettered: "bad", pending: "info" }[outcome] ?? "";
  const label = { delivered: "Delivered", retrying: "Retrying", dead_lettered: "Dead-lettered", pending: "Pending" }[outcome] ?? outcome;
  return el("span", { class: `badge ${cls}` }, label);
}

function httpBadge(code) {
  if (!code) return el("span", { class: "badge plain" }, "no answer");
  const cls = code < 300 ? "ok" : code < 500 ? "warn" : "bad";
  return el("span", { class: `badge plain ${cls}` }, String(code));
}

function loading(text = "Loading…") {
  return el("div", { class: "loading", role: "status" }, el("span", { class: "spinner", "aria-hidden": "true" }), text);
}

function errorNotice(err, title = "Something went wrong") {
  return el("div", { class: "notice bad", role: "alert" }, el("strong", {}, title), err.message || String(err));
}

function emptyRow(cols, title, text) {
  return el("tr", {}, el("td", { colspan: cols, class: "empty" }, el("strong", {}, title), text || ""));
}

function busy(button, on) {
  button.disabled = on;
  button.setAttribute("aria-busy", on ? "true" : "false");
}

function confirmDialog(title, text, okLabel = "Confirm", danger = false) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = okLabel;
  ok.className = danger ? "btn btn-danger" : "btn btn-primary";
  dlg.returnValue = "";
  dlg.showModal();
  ok.focus();
  return new Promise((resolve) => dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true }));
}

function readOnly() { return Boolean(session.link && session.link.read_only); }
function agentScope() { return session.link && session.link.agent_id ? session.link.agent_id : ""; }

class APIError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The API answered ${status}.`);
    this.status = status;
    this.fields = (body && body.errors) || {};
  }
}

// api calls the API; a 401 signs the user out with the API's reason,
// unless keep401 (the sign-in form shows it beside the field).
async function api(method, path, body, keep401 = false) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(`/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(API_TIMEOUT_MS),
    });
  } catch (err) {
    if (err.name === "TimeoutError") throw new Error(`The API did not answer within ${API_TIMEOUT_MS / 1000} s; try again.`);
    throw new Error(`The API could not be reached (${err.message}).`);
  }
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch { data = null; }
  }
  if (!res.ok) {
    const err = new APIError(res.status, data);
    if (res.status === 401 && !keep401) signOut(err.message);
    throw err;
  }
  return data;
}

async function eventTypes() {
  if (!catalogue) {
    // Paginated like every list: read each page.
    const all = [];
    let cursor = "";
    do {
      const page = await api("GET", "/event-types" + q({ limit: 250, cursor }));
      all.push(...page.data);
      cursor = page.has_more ? page.next_cursor : "";
    } while (cursor);
    catalogue = all;
  }
  return catalogue;
}

function q(params) {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) s.set(k, v);
  const str = s.toString();
  return str ? `?${str}` : "";
}

// ---------- session ----------

function signIn(token) {
  session.token = token;
  session.notice = "";
  sessionStorage.setItem(TOKEN_KEY, token);
}

function signOut(notice) {
  session.token = null;
  session.link = null;
  session.notice = notice || "";
  catalogue = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (location.hash !== "#/signin") location.hash = "#/signin";
  else route();
}

async function loadScope() {
  try {
    session.link = await api("GET", "/portal-links/current");
  } catch (err) {
    if (err.status === 404) { session.link = null; return; } // an API key
    throw err;
  }
}

function drawChrome(active) {
  const signedIn = Boolean(session.token);
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("session").hidden = !signedIn;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.nav === active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const scope = document.getElementById("scope");
  scope.replaceChildren();
  if (session.link) {
    scope.append(el("span", { class: "badge info plain" }, session.link.agent_id ? `Agent ${session.link.agent_id}` : "Portal link"));
    if (session.link.read_only) scope.append(el("span", { class: "badge plain" }, "Read-only"));
    scope.append(el("span", { class: "expires" }, "expires ", fmtTime(session.link.expires_at)));
  } else if (signedIn) {
    scope.append(el("span", { class: "badge plain" }, "API key"));
  }
}

// ---------- router ----------

const routes = [
  [/^\/signin$/, viewSignIn, ""],
  [/^\/webhooks$/, viewWebhooks, "webhooks"],
  [/^\/webhooks\/new$/, viewWebhookForm, "webhooks"],
  [/^\/webhooks\/([^/]+)\/edit$/, viewWebhookForm, "webhooks"],
  [/^\/webhooks\/([^/]+)$/, viewWebhook, "webhooks"],
  [/^\/dead-letters$/, viewDeadLetters, "dead-letters"],
  [/^\/events$/, viewEventLookup, "events"],
  [/^\/events\/([^/]+)$/, viewEvent, "events"],
  [/^\/event-types$/, viewEventTypes, "event-types"],
];

async function route() {
  takeLinkToken();
  for (const t of timers) clearInterval(t);
  timers = [];
  const seq = ++renderSeq;
  const raw = location.hash.replace(/^#/, "") || "/webhooks";
  const [path, qs] = raw.split("?");
  const params = new URLSearchParams(qs || "");
  const main = document.getElementById("view");
  if (!session.token && path !== "/signin") {
    location.replace("#/signin");
    return;
  }
  let match = null;
  for (const [re, view, nav] of routes) {
    const m = path.match(re);
    if (m) { match = { view, nav, args: m.slice(1).map(decodeURIComponent) }; break; }
  }
  drawChrome(match ? match.nav : "");
  main.replaceChildren(loading());
  if (!match) {
    main.replaceChildren(el("div", { class: "notice" }, el("strong", {}, "No such page"), el("a", { href: "#/webhooks" }, "Go to the webhooks")));
    return;
  }
  const page = el("div", { class: "page" });
  const stale = () => seq !== renderSeq;
  try {
    if (session.token && session.link === null && path !== "/signin" && !session.scopeLoaded) {
      await loadScope();
      session.scopeLoaded = true;
      drawChrome(match.nav);
    }
    await match.view(page, params, ...match.args, stale);
  } catch (err) {
    if (stale()) return;
    if (err.status === 401) return; // signOut redrew the page
    page.replaceChildren(errorNotice(err, "This page could not be loaded"));
  }
  if (stale()) return;
  main.replaceChildren(page);
  const h1 = page.querySelector("h1");
  document.title = `${h1 ? h1.textContent + " · " : ""}Switchboard webhooks`;
}

function every(ms, fn) { timers.push(setInterval(fn, ms)); }

// ---------- sign-in ----------

async function viewSignIn(page) {
  const input = el("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off", spellcheck: "false", required: true, "aria-describedby": "api-key-hint signin-error" });
  const error = el("p", { class: "field-error", id: "signin-error", role: "alert" });
  const submit = el("button", { class: "btn btn-primary", type: "submit", id: "signin-submit" }, "Sign in");
  const form = el("form", { class: "form", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = "";
    const token = input.value.trim();
    if (!token) { error.textContent = "Enter your API key."; input.setAttribute("aria-invalid", "true"); input.focus(); return; }
    busy(submit, true);
    signIn(token);
    session.scopeLoaded = false;
    try {
      await api("GET", "/event-types", undefined, true);
      location.hash = "#/webhooks";
    } catch (err) {
      session.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      busy(submit, false);
      error.textContent = err.message;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  } },
  el("div", { class: "field" },
    el("label", { for: "api-key" }, "API key"),
    input,
    el("p", { class: "hint", id: "api-key-hint" }, "Kept in this browser tab only, and forgotten when you close it.")),
  error,
  submit);
  const notice = session.notice ? el("div", { class: "notice bad", role: "alert", id: "session-notice" }, el("strong", {}, "Your session has ended"), session.notice) : null;
  page.append(el("div", { class: "signin" },
    notice,
    el("div", { class: "card" },
      el("h1", {}, "Sign in"),
      el("p", { class: "lead" }, "Manage your webhooks: endpoints, deliveries, dead letters and events."),
      form),
    el("p", { class: "hint" }, "Were you sent a portal link? Open it as it is: it signs you in.")));
  setTimeout(() => input.focus(), 0);
}

// ---------- webhooks list ----------

async function viewWebhooks(page, params, stale) {
  const filters = { status: params.get("status") || "", event_type: params.get("event_type") || "", agent_id: params.get("agent_id") || "" };
  const [types, list] = await Promise.all([eventTypes(), api("GET", `/webhooks${q({ ...filters, limit: 100 })}`)]);
  if (stale()) return;
  const apply = (e) => {
    e.preventDefault();
    const f = new FormData(e.target.form || e.target);
    location.hash = `#/webhooks${q({ status: f.get("status"), event_type: f.get("event_type"), agent_id: f.get("agent_id") || "" })}`;
  };
  const statusSel = el("select", { id: "filter-status", name: "status", onchange: apply },
    el("option", { value: "" }, "Any status"),
    STATUSES.map((s) => el("option", { value: s, selected: s === filters.status }, statusBadge(s).textContent)));
  const typeSel = el("select", { id: "filter-event-type", name: "event_type", onchange: apply },
    el("option", { value: "" }, "Any event type"),
    types.map((t) => el("option", { value: t.name, selected: t.name === filters.event_type }, t.name)));
  const filterForm = el("form", { class: "filters", role: "search", "aria-label": "Filter webhooks", onsubmit: apply },
    el("div", { class: "field" }, el("label", { for: "filter-status" }, "Status"), statusSel),
    el("div", { class: "field" }, el("label", { for: "filter-event-type" }, "Receives event type"), typeSel),
    agentScope() ? null : el("div", { class: "field" }, el("label", { for: "filter-agent" }, "Agent"),
      el("input", { type: "search", id: "filter-agent", name: "agent_id", value: filters.agent_id, placeholder: "All agents", onchange: apply })),
    (filters.status || filters.event_type || filters.agent_id) ? el("a", { class: "btn btn-ghost", href: "#/webhooks" }, "Clear filters") : null);

  const tbody = el("tbody", { id: "webhook-rows" });
  const addRows = (whs) => {
    for (const wh of whs) {
      tbody.append(el("tr", { "data-webhook": wh.id },
        el("td", {}, el("a", { href: `#/webhooks/${encodeURIComponent(wh.id)}`, class: "wh-name" }, wh.name),
          el("div", { class: "hint mono truncate", title: wh.url }, wh.url)),
        el("td", {}, statusBadge(wh.status)),
        el("td", { class: "hide-sm" }, wh.events.slice(0, 3).map((e) => el("span", { class: "chip" }, e)), wh.events.length > 3 ? el("span", { class: "hint" }, `+${wh.events.length - 3}`) : null),
        el("td", { class: "hide-sm" }, wh.agent_id ? el("span", { class: "mono" }, wh.agent_id) : el("span", { class: "hint" }, "All agents")),
        el("td", { class: "nowrap hide-sm" }, fmtTime(wh.updated_at))));
    }
  };
  addRows(list.data);
  if (list.data.length === 0) {
    const filtered = filters.status || filters.event_type || filters.agent_id;
    tbody.append(emptyRow(5, filtered ? "No webhook matches these filters" : "No webhooks yet",
      filtered ? "" : readOnly() ? "" : " Create one to start receiving events."));
  }
  let cursor = list.has_more ? list.next_cursor : "";
  const more = el("button", { class: "btn", type: "button", id: "more-webhooks", hidden: !cursor, onclick: async () => {
    busy(more, true);
    try {
      const next = await api("GET", `/webhooks${q({ ...filters, limit: 100, cursor })}`);
      addRows(next.data);
      cursor = next.has_more ? next.next_cursor : "";
      more.hidden = !cursor;
    } catch (err) { more.after(errorNotice(err)); }
    busy(more, false);
  } }, "Load more");

  page.append(
    el("div", { class: "page-head" },
      el("div", {}, el("h1", {}, "Webhooks"), el("p", {}, "Endpoints that receive your events, signed with their secret.")),
      readOnly() ? null : el("div", { class: "toolbar" }, el("a", { class: "btn btn-primary", href: "#/webhooks/new", id: "new-webhook" }, "New webhook"))),
    el("section", { class: "card card-flush", "aria-label": "Webhooks" },
      filterForm,
      el("div", { class: "table-wrap" }, el("table", {},
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Status"),
          el("th", { scope: "col", class: "hide-sm" }, "Events"), el("th", { scope: "col", class: "hide-sm" }, "Agent"),
          el("th", { scope: "col", class: "hide-sm" }, "Updated"))),
        tbody))),
    el("div", { class: "actions" }, more));
}

// ---------- webhook form ----------

function field(id, label, control, hint) {
  const err = el("p", { class: "field-error", id: `err-${id}` });
  control.setAttribute("aria-describedby", [hint ? `hint-${id}` : "", `err-${id}`].filter(Boolean).join(" "));
  return el("div", { class: "field", "data-field": id },
    el("label", { for: control.id }, label),
    control,
    hint ? el("p", { class: "hint", id: `hint-${id}` }, hint) : null,
    err);
}

function showFieldErrors(form, fields) {
  for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
  for (const c of form.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
  const rest = [];
  let first = null;
  for (const [key, msgs] of Object.entries(fields)) {
    const name = form.querySelector(`#err-${CSS.escape(key)}`) ? key : key.split(/[.[]/)[0];
    const target = form.querySelector(`#err-${CSS.escape(name)}`);
    const text = msgs.map((m) => (name === key ? m : `${key.slice(name.length + 1)}: ${m}`)).join("; ");
    if (!target) { rest.push(`${key}: ${msgs.join("; ")}`); continue; }
    target.textContent = target.textContent ? `${target.textContent}; ${text}` : text;
    const box = target.closest("[data-field]");
    const control = box && box.querySelector("input, select, textarea");
    if (control) {
      control.setAttribute("aria-invalid", "true");
      if (!first) first = control;
    }
  }
  if (first) first.focus();
  return rest;
}

async function viewWebhookForm(page, params, idOrStale, maybeStale) {
  const editing = typeof idOrStale === "string";
  const id = editing ? idOrStale : "";
  const stale = editing ? maybeStale : idOrStale;
  if (readOnly()) throw new Error("This portal link is read-only: webhooks cannot be created or changed with it.");
  const [types, wh, defaults] = await Promise.all([
    eventTypes(),
    editing ? api("GET", `/webhooks/${encodeURIComponent(id)}`) : null,
    editing ? null : api("GET", "/webhooks/defaults"),
  ]);
  if (stale()) return;
  const v = wh || defaults;
  const input = (id, attrs) => el("input", { id, name: id, ...attrs });

  const name = input("name", { type: "text", value: v.name || "", required: true, maxlength: 255, autocomplete: "off" });
  const url = input("url", { type: "text", inputmode: "url", value: v.url || "", required: true, placeholder: "https://example.com/webhooks", autocomplete: "off", spellcheck: "false" });
  const method = el("select", { id: "method", name: "method" }, ["POST", "PUT", "PATCH"].map((m) => el("option", { value: m, selected: m === v.method }, m)));
  const status = el("select", { id: "status", name: "status" },
    ["active", "inactive"].map((s) => el("option", { value: s, selected: s === v.status }, s === "active" ? "Active" : "Inactive")),
    v.status === "too_many_errors" ? el("option", { value: "too_many_errors", selected: true, disabled: true }, "Too many errors (re-enable to resume)") : null);
  const timeout = input("timeout", { type: "number", min: 5, max: 120, step: 1, value: v.timeout });
  const retries = input("max_retries", { type: "number", min: 0, max: 10, step: 1, value: v.max_retries });
  const agent = input("agent_id", { type: "text", value: editing ? (v.agent_id || "") : agentScope() || params.get("agent_id") || "", placeholder: "All agents", disabled: editing || Boolean(agentScope()), autocomplete: "off" });
  const secret = input("secret", { type: "text", placeholder: "Generated when left empty", autocomplete: "off", spellcheck: "false" });

  // Events: the catalogue's types as checkboxes, patterns (call.*, *) as text.
  const chosen = new Set(v.events || []);
  const known = new Set(types.map((t) => t.name));
  const boxes = types.map((t) => el("label", { class: "check" },
    el("input", { type: "checkbox", name: "events", value: t.name, checked: chosen.has(t.name) }),
    el("span", {}, el("span", { class: "mono" }, t.name), t.description ? el("small", {}, t.description) : null)));
  const patterns = input("event_patterns", { type: "text", value: [...chosen].filter((e) => !known.has(e)).join(", "), placeholder: "e.g. call.*  or  *", autocomplete: "off" });
  const eventsField = el("fieldset", { class: "field", "data-field": "events", "aria-describedby": "err-events" },
    el("legend", { class: "sr-only" }, "Events"),
    el("div", { class: "events-grid", id: "events" }, boxes),
    el("div", { class: "field" }, el("label", { for: "event_patterns" }, "Patterns"), patterns,
      el("p", { class: "hint" }, "Comma-separated. A trailing * matches every type under a prefix.")),
    el("p", { class: "field-error", id: "err-events" }));

  // Outbound auth: the password and token are never shown back, so auth is
  // sent on edit only when touched.
  let authDirty = !editing;
  const touch = () => { authDirty = true; };
  const authType = el("select", { id: "auth.type", name: "auth.type", onchange: () => { touch(); showAuth(); } },
    AUTH_TYPES.map(([val, label]) => el("option", { value: val, selected: val === ((v.auth && v.auth.type) || "none") }, label)));
  const authUser = input("auth.username", { type: "text", value: (v.auth && v.auth.username) || "", autocomplete: "off", oninput: touch });
  const authPass = input("auth.password", { type: "password", autocomplete: "new-password", placeholder: editing ? "Unchanged" : "", oninput: touch });
  const authToken = input("auth.token", { type: "password", autocomplete: "off", placeholder: editing ? "Unchanged" : "", oninput: touch });
  const authName = input("auth.name", { type: "text", value: (v.auth && v.auth.name) || "", autocomplete: "off", oninput: touch });
  const fUser = field("auth.username", "Username", authUser);
  const fPass = field("auth.password", "Password", authPass);
  const fToken = field("auth.token", "Token", authToken);
  const fName = field("auth.name", "Header or parameter name", authName, "X-Auth-Token or token when left empty.");
  const showAuth = () => {
    const t = authType.value;
    fUser.hidden = fPass.hidden = t !== "basic";
    fToken.hidden = t === "none" || t === "basic";
    fName.hidden = t !== "header" && t !== "querystring";
  };
  showAuth();

  // Headers: rows of name and value.
  const headerRows = el("div", { id: "headers" });
  const addHeader = (k = "", val = "") => {
    const n = headerRows.children.length;
    const row = el("div", { class: "kv" },
      el("input", { type: "text", "aria-label": `Header ${n + 1} name`, placeholder: "Name", value: k, class: "h-name", autocomplete: "off" }),
      el("input", { type: "text", "aria-label": `Header ${n + 1} value`, placeholder: "Value", value: val, class: "h-value", autocomplete: "off" }),
      el("button", { type: "button", class: "btn btn-ghost btn-sm", "aria-label": `Remove header ${n + 1}`, onclick: () => row.remove() }, "Remove"));
    headerRows.append(row);
  };
  for (const [k, val] of Object.entries(v.headers || {})) addHeader(k, val);
  const headersField = el("div", { class: "field", "data-field": "headers" },
    el("span", { class: "label", id: "headers-label" }, "Custom headers"),
    headerRows,
    el("div", {}, el("button", { type: "button", class: "btn btn-sm", id: "add-header", onclick: () => addHeader() }, "Add header")),
    el("p", { class: "field-error", id: "err-headers" }));

  const props = el("textarea", { id: "properties", name: "properties", spellcheck: "false", placeholder: '{"region": "eu"}' },
    v.properties ? JSON.stringify(v.properties, null, 2) : "");
  const alert = el("input", { type: "checkbox", id: "is_alert_hook", name: "is_alert_hook", checked: v.is_alert_hook });

  const formError = el("div", { id: "form-error", role: "alert" });
  const submit = el("button", { type: "submit", class: "btn btn-primary", id: "save-webhook" }, editing ? "Save changes" : "Create webhook");
  const form = el("form", { class: "card form", novalidate: true, "aria-label": editing ? "Edit webhook" : "New webhook" },
    el("section", { class: "form-section" }, el("h2", {}, "Endpoint"),
      el("div", { class: "row" }, field("name", "Name", name), field("url", "URL", url, "Where deliveries are sent (http or https).")),
      el("div", { class: "row" }, field("method", "HTTP method", method), field("status", "Status", status),
        field("agent_id", "Agent", agent, editing ? "Fixed when the webhook was created." : "Only this agent's events; empty for all."))),
    el("section", { class: "form-section" }, el("h2", {}, "Events"), el("p", { class: "hint" }, "What this endpoint receives."), eventsField),
    el("section", { class: "form-section" }, el("h2", {}, "Delivery"),
      el("div", { class: "row" }, field("timeout", "Timeout (seconds)", timeout, "5 to 120."), field("max_retries", "Retries", retries, "0 to 10, with backoff.")),
      editing ? null : field("secret", "Signing secret", secret, "whsec_ and base64, or at least 32 bytes. Rotate it later from the webhook's page."),
      el("label", { class: "check", for: "is_alert_hook" }, alert, el("span", {}, "Alert hook", el("small", { class: "hint" }, " — receives Switchboard's own operational events (e.g. a webhook disabled)"))),
      el("p", { class: "field-error", id: "err-is_alert_hook" })),
    el("section", { class: "form-section" }, el("h2", {}, "Authentication"),
      el("p", { class: "hint" }, "Credentials sent with each delivery, besides the signature."),
      el("div", { class: "row" }, field("auth.type", "Type", authType), fUser, fPass, fToken, fName),
      el("p", { class: "field-error", id: "err-auth" })),
    el("section", { class: "form-section" }, el("h2", {}, "Headers and properties"),
      headersField,
      field("properties", "Properties (JSON object)", props, "Your own metadata, kept with the webhook.")),
    formError,
    el("div", { class: "actions" },
      el("a", { class: "btn", href: editing ? `#/webhooks/${encodeURIComponent(id)}` : "#/webhooks" }, "Cancel"), submit));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    formError.replaceChildren();
    const body = {
      name: name.value, url: url.value.trim(), method: method.value,
      timeout: Number(timeout.value), max_retries: Number(retries.value), is_alert_hook: alert.checked,
    };
    if (status.value !== "too_many_errors") body.status = status.value;
    body.events = [...form.querySelectorAll('input[name="events"]:checked')].map((c) => c.value)
      .concat(patterns.value.split(",").map((s) => s.trim()).filter(Boolean));
    body.headers = {};
    for (const row of headerRows.children) {
      const k = row.querySelector(".h-name").value.trim();
      if (k) body.headers[k] = row.querySelector(".h-value").value;
    }
    const local = {};
    if (props.value.trim()) {
      try { body.properties = JSON.parse(props.value); } catch (err) { local.properties = [`is not valid JSON: ${err.message}`]; }
    } else body.properties = null;
    if (authDirty) {
      const t = authType.value;
      body.auth = { type: t };
      if (t === "basic") { body.auth.username = authUser.value; body.auth.password = authPass.value; }
      if (t !== "none" && t !== "basic") body.auth.token = authToken.value;
      if (t === "header" || t === "querystring") body.auth.name = authName.value;
    }
    if (!editing && secret.value.trim()) body.secret = secret.value.trim();
    if (Object.keys(local).length) { showFieldErrors(form, local); return; }
    busy(submit, true);
    try {
      let saved;
      if (editing) saved = await api("PATCH", `/webhooks/${encodeURIComponent(id)}`, body);
      else if (agent.value.trim()) saved = await api("POST", `/agents/${encodeURIComponent(agent.value.trim())}/webhooks`, body);
      else saved = await api("POST", "/webhooks", body);
      if (!editing && saved.secret) sessionStorage.setItem(`switchboard.portal.new-secret.${saved.id}`, saved.secret);
      location.hash = `#/webhooks/${encodeURIComponent(saved.id)}`;
    } catch (err) {
      busy(submit, false);
      const rest = showFieldErrors(form, err.fields || {});
      formError.replaceChildren(el("div", { class: "notice bad" }, el("strong", {}, err.status === 422 ? "Some fields need attention" : "Not saved"),
        err.message, rest.length ? el("ul", {}, rest.map((r) => el("li", {}, r))) : null));
    }
  });

  page.append(
    el("div", { class: "page-head" }, el("div", {},
      el("div", { class: "crumbs" }, el("a", { href: "#/webhooks" }, "Webhooks"), editing ? [" / ", el("a", { href: `#/webhooks/${encodeURIComponent(id)}` }, v.name)] : null),
      el("h1", {}, editing ? `Edit ${v.name}` : "New webhook"))),
    form);
  setTimeout(() => name.focus(), 0);
}

// ---------- one webhook ----------

async function viewWebhook(page, params, id, stale) {
  const enc = encodeURIComponent(id);
  const since = new Date(Date.now() - 3600e3).toISOString();
  const [wh, hour] = await Promise.all([
    api("GET", `/webhooks/${enc}`),
    api("GET", `/webhooks/${enc}/attempts${q({ since, limit: 250 })}`),
  ]);
  if (stale()) return;
  const ro = readOnly();

  // Success rate over the last hour, from its attempts.
  const total = hour.data.length;
  const ok = hour.data.filter((a) => a.outcome === "delivered").length;
  const lat = hour.data.map((a) => a.latency_ms).sort((x, y) => x - y);
  const rate = total ? `${((ok / total) * 100).toFixed(ok === total ? 0 : 1)}%` : "—";
  const stats = el("div", { class: "stats", id: "stats" },
    el("div", { class: "stat" }, el("div", { class: "stat-label" }, "Success rate, last hour"), el("div", { class: "stat-value", id: "success-rate" }, rate),
      el("div", { class: "stat-note" }, total ? `${ok} of ${total}${hour.has_more ? "+" : ""} attempts delivered` : "No attempts in the last hour")),
    el("div", { class: "stat" }, el("div", { class: "stat-label" }, "Attempts, last hour"), el("div", { class: "stat-value" }, `${total}${hour.has_more ? "+" : ""}`),
      el("div", { class: "stat-note" }, `${total - ok} failed`)),
    el("div", { class: "stat" }, el("div", { class: "stat-label" }, "Median latency"), el("div", { class: "stat-value" }, total ? fmtMs(lat[Math.floor(lat.length / 2)]) : "—"),
      el("div", { class: "stat-note" }, total ? `p95 ${fmtMs(lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.95))])}` : "")));

  const flash = el("div", { id: "flash", role: "status" });
  const say = (kind, title, text) => flash.replaceChildren(el("div", { class: `notice ${kind}` }, el("strong", {}, title), text || ""));

  // Actions.
  const actions = el("div", { class: "toolbar" });
  if (!ro) {
    actions.append(el("a", { class: "btn", href: `#/webhooks/${enc}/edit`, id: "edit-webhook" }, "Edit"));
    if (wh.status !== "active") {
      const enable = el("button", { type: "button", class: "btn btn-primary", id: "enable-webhook", onclick: async () => {
        busy(enable, true);
        try { await api("PATCH", `/webhooks/${enc}`, { status: "active" }); route(); } catch (err) { busy(enable, false); say("bad", "Not enabled", err.message); }
      } }, wh.status === "too_many_errors" ? "Re-enable" : "Enable");
      actions.append(enable);
    }
    const del = el("button", { type: "button", class: "btn btn-danger", id: "delete-webhook", onclick: async () => {
      if (!await confirmDialog(`Delete ${wh.name}?`, "Deliveries stop at once and the webhook cannot be restored. Its attempt log stays until retention removes it.", "Delete webhook", true)) return;
      busy(del, true);
      try { await api("DELETE", `/webhooks/${enc}`); location.hash = "#/webhooks"; } catch (err) { busy(del, false); say("bad", "Not deleted", err.message); }
    } }, "Delete");
    actions.append(del);
  }

  const details = el("section", { class: "card", "aria-labelledby": "details-h" }, el("h2", { id: "details-h" }, "Details"),
    el("dl", { class: "props" },
      el("dt", {}, "URL"), el("dd", { class: "mono", id: "wh-url" }, wh.url),
      el("dt", {}, "Method"), el("dd", {}, wh.method),
      el("dt", {}, "Events"), el("dd", {}, wh.events.map((e) => el("span", { class: "chip" }, e))),
      el("dt", {}, "Agent"), el("dd", {}, wh.agent_id ? el("span", { class: "mono" }, wh.agent_id) : "All agents"),
      el("dt", {}, "Timeout"), el("dd", {}, `${wh.timeout} s, ${wh.max_retries} ${wh.max_retries === 1 ? "retry" : "retries"}`),
      el("dt", {}, "Authentication"), el("dd", {}, wh.auth.type === "none" ? "None" : `${wh.auth.type}${wh.auth.username ? ` (${wh.auth.username})` : ""}${wh.auth.name ? ` in ${wh.auth.name}` : ""}`),
      el("dt", {}, "Headers"), el("dd", {}, Object.keys(wh.headers).length ? Object.entries(wh.headers).map(([k, val]) => el("div", { class: "mono" }, `${k}: ${val}`)) : "None"),
      el("dt", {}, "Properties"), el("dd", {}, wh.properties ? el("code", {}, JSON.stringify(wh.properties)) : "None"),
      el("dt", {}, "Alert hook"), el("dd", {}, wh.is_alert_hook ? "Yes" : "No"),
      el("dt", {}, "Id"), el("dd", { class: "mono" }, wh.id),
      el("dt", {}, "Created"), el("dd", {}, fmtTime(wh.created_at), wh.created_by ? ` by ${wh.created_by}` : ""),
      el("dt", {}, "Updated"), el("dd", {}, fmtTime(wh.updated_at), wh.updated_by ? ` by ${wh.updated_by}` : "")));

  // Test send.
  const testOut = el("div", { class: "test-result", id: "test-result", "aria-live": "polite" });
  const testBtn = el("button", { type: "button", class: "btn", id: "send-test", disabled: ro, onclick: async () => {
    busy(testBtn, true);
    testOut.replaceChildren(loading("Sending a webhook.test event…"));
    try {
      const r = await api("POST", `/webhooks/${enc}/test`);
      testOut.replaceChildren(el("div", { class: `notice ${r.success ? "ok" : "bad"}` },
        el("strong", {}, r.success ? "Delivered" : "Not delivered"),
        el("div", {}, "Receiver answered ", el("span", { id: "test-status" }, r.status ? String(r.status) : "nothing"), ` in ${fmtMs(r.latency_ms)}.`),
        r.error ? el("div", {}, r.error) : null,
        r.body ? el("pre", { class: "json" }, r.body) : null));
    } catch (err) { testOut.replaceChildren(errorNotice(err, "Test not sent")); }
    busy(testBtn, false);
  } }, "Send test event");
  const testCard = el("section", { class: "card", "aria-labelledby": "test-h" }, el("h2", { id: "test-h" }, "Test"),
    el("p", { class: "hint" }, "Sends a signed webhook.test event now and shows the receiver's answer."), el("div", { class: "toolbar" }, testBtn), testOut);

  // Secret.
  const secretOut = el("div", { id: "secret-out" });
  const showSecret = (s, note) => {
    const code = el("code", { id: "secret-value" }, s);
    secretOut.replaceChildren(el("div", { class: "secret-box" }, code,
      el("button", { type: "button", class: "btn btn-sm", onclick: (e) => { navigator.clipboard?.writeText(s); e.target.textContent = "Copied"; } }, "Copy")),
    note ? el("p", { class: "hint" }, note) : null);
  };
  const fresh = sessionStorage.getItem(`switchboard.portal.new-secret.${id}`);
  if (fresh) { sessionStorage.removeItem(`switchboard.portal.new-secret.${id}`); showSecret(fresh, "The webhook was created: keep its signing secret now; you can reveal it again here."); }
  const reveal = el("button", { type: "button", class: "btn", id: "reveal-secret", disabled: ro, onclick: async () => {
    if (!await confirmDialog("Reveal the signing secret?", "Anyone who sees it can sign requests that your endpoint will trust. Make sure no one is looking over your shoulder.", "Reveal")) return;
    busy(reveal, true);
    try { const r = await api("GET", `/webhooks/${enc}/secret`); showSecret(r.secret, r.retiring_secrets.length ? `${r.retiring_secrets.length} earlier secret(s) still sign until their grace period ends.` : ""); } catch (err) { secretOut.replaceChildren(errorNotice(err)); }
    busy(reveal, false);
  } }, "Reveal secret");
  const rotate = el("button", { type: "button", class: "btn", id: "rotate-secret", disabled: ro, onclick: async () => {
    if (!await confirmDialog("Rotate the signing secret?", "A new secret signs from now on; the current one keeps signing for the grace period, so update your endpoint soon.", "Rotate secret")) return;
    busy(rotate, true);
    try { const r = await api("POST", `/webhooks/${enc}/secret/rotate`, {}); showSecret(r.secret, "New secret. The previous one still signs during its grace period."); } catch (err) { secretOut.replaceChildren(errorNotice(err)); }
    busy(rotate, false);
  } }, "Rotate");
  const secretCard = el("section", { class: "card", "aria-labelledby": "secret-h" }, el("h2", { id: "secret-h" }, "Signing secret"),
    el("p", { class: "hint" }, "Verify the webhook-signature header with it (Standard Webhooks)."), el("div", { class: "toolbar" }, reveal, rotate), secretOut);

  // Recover since a time.
  const recoverOut = el("div", { id: "recover-out", "aria-live": "polite" });
  const sinceInput = el("input", { type: "datetime-local", id: "recover-since", step: 1 });
  const d = new Date(Date.now() - 3600e3);
  sinceInput.value = new Date(d.getTime() - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
  const recoverBtn = el("button", { type: "submit", class: "btn", id: "recover", disabled: ro }, "Recover");
  const recoverCard = el("section", { class: "card", "aria-labelledby": "recover-h" }, el("h2", { id: "recover-h" }, "Recover"),
    el("p", { class: "hint" }, "Queue again every event this webhook matched since a time (in your time zone)."),
    el("form", { class: "form", onsubmit: async (e) => {
      e.preventDefault();
      if (!sinceInput.value) return;
      busy(recoverBtn, true);
      try {
        const r = await api("POST", `/webhooks/${enc}/recover${q({ since: new Date(sinceInput.value).toISOString() })}`);
        recoverOut.replaceChildren(el("div", { class: "notice ok" }, `${r.queued} event(s) queued again${r.has_more ? "; more remain: recover again from the last one." : "."}`));
      } catch (err) { recoverOut.replaceChildren(errorNotice(err, "Not recovered")); }
      busy(recoverBtn, false);
    } },
    el("div", { class: "field" }, el("label", { for: "recover-since" }, "Since"), sinceInput), el("div", {}, recoverBtn)), recoverOut);

  // Recent attempts, refreshed while the page is open.
  const rows = el("tbody", { id: "attempt-rows" });
  const attemptsNote = el("span", { class: "hint", "aria-live": "polite" });
  const drawAttempts = (list) => {
    rows.replaceChildren();
    for (const a of list.data) {
      rows.append(el("tr", { "data-attempt": a.id },
        el("td", { class: "nowrap" }, fmtTime(a.at)),
        el("td", {}, el("a", { href: `#/events/${encodeURIComponent(a.event_id)}`, class: "mono" }, a.event_type), el("div", { class: "hint" }, `attempt ${a.attempt}`)),
        el("td", {}, outcomeBadge(a.outcome)),
        el("td", {}, httpBadge(a.status_code)),
        el("td", { class: "num hide-sm" }, fmtMs(a.latency_ms)),
        el("td", { class: "hide-sm" }, el("span", { class: "excerpt", title: a.response_body || a.error || "" }, a.response_body || a.error || "—"))));
    }
    if (!list.data.length) rows.append(emptyRow(6, "No attempts yet", " Deliveries show here as they are made."));
    attemptsNote.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  };
  const refresh = async () => {
    try { drawAttempts(await api("GET", `/webhooks/${enc}/attempts${q({ limit: 25 })}`)); } catch (err) { attemptsNote.textContent = err.message; }
  };
  drawAttempts(await api("GET", `/webhooks/${enc}/attempts${q({ limit: 25 })}`));
  if (stale()) return;
  every(4000, refresh);
  const attemptsCard = el("section", { class: "card card-flush", "aria-labelledby": "attempts-h" },
    el("div", { class: "card-head" }, el("h2", { id: "attempts-h" }, "Recent attempts"),
      el("div", { class: "toolbar" }, attemptsNote, el("button", { type: "button", class: "btn btn-sm", id: "refresh-attempts", onclick: refresh }, "Refresh"),
        el("a", { class: "btn btn-sm", href: `#/dead-letters${q({ webhook_id: id })}` }, "Dead letters"))),
    el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Time"), el("th", { scope: "col" }, "Event"), el("th", { scope: "col" }, "Outcome"),
        el("th", { scope: "col" }, "Status"), el("th", { scope: "col", class: "hide-sm" }, "Latency"), el("th", { scope: "col", class: "hide-sm" }, "Response"))),
      rows)));

  page.append(
    el("div", { class: "page-head" },
      el("div", {}, el("div", { class: "crumbs" }, el("a", { href: "#/webhooks" }, "Webhooks")),
        el("h1", {}, wh.name, " ", statusBadge(wh.status)),
        wh.status === "too_many_errors" ? el("p", {}, "Stopped after too many failed deliveries. Fix the endpoint, then re-enable it.") : null),
      actions),
    flash,
    stats,
    el("div", { class: "grid grid-2" },
      el("div", {}, attemptsCard, details),
      el("div", {}, testCard, secretCard, recoverCard)));
}

// ---------- dead letters ----------

async function viewDeadLetters(page, params, stale) {
  const agent = agentScope();
  const whs = (await api("GET", `/webhooks${q({ limit: 250 })}`)).data;
  if (stale()) return;
  let webhookID = params.get("webhook_id") || "";
  if (agent && !webhookID && whs.length) webhookID = whs[0].id;
  const names = Object.fromEntries(whs.map((w) => [w.id, w.name]));
  const ro = readOnly();
  const flash = el("div", { id: "dl-flash", role: "status", "aria-live": "polite" });
  const say = (kind, title, text) => flash.replaceChildren(el("div", { class: `notice ${kind}` }, el("strong", {}, title), text || ""));

  const sel = el("select", { id: "dl-webhook", name: "webhook_id", onchange: () => { location.hash = `#/dead-letters${q({ webhook_id: sel.value })}`; } },
    agent ? null : el("option", { value: "" }, "All webhooks"),
    whs.map((w) => el("option", { value: w.id, selected: w.id === webhookID }, w.name)));
  const head = el("div", { class: "page-head" },
    el("div", {}, el("h1", {}, "Dead letters"), el("p", {}, "Deliveries that were given up. Replay them once the endpoint is fixed.")));
  page.append(head, flash);
  if (agent && !whs.length) {
    page.append(el("div", { class: "card empty" }, el("strong", {}, "No webhooks"), "Dead letters belong to webhooks; this agent has none."));
    return;
  }
  const list = await api("GET", `/dead-letters${q({ webhook_id: webhookID, limit: 100 })}`);
  if (stale()) return;

  const rows = el("tbody", { id: "dl-rows" });
  const selected = new Set();
  const replaySel = el("button", { type: "button", class: "btn", id: "replay-selected", disabled: true }, "Replay selected");
  const countSel = () => { replaySel.disabled = ro || selected.size === 0; replaySel.textContent = selected.size ? `Replay selected (${selected.size})` : "Replay selected"; };
  const replay = async (body, button) => {
    busy(button, true);
    try {
      const r = await api("POST", "/dead-letters/replay", body);
      say("ok", `${r.replayed} dead letter(s) replayed`, r.not_found.length ? `${r.not_found.length} were gone already.` : r.has_more ? "More remain: replay again." : "They are queued for delivery with a fresh retry budget.");
      setTimeout(route, 600);
    } catch (err) { busy(button, false); say("bad", "Not replayed", err.message); }
  };
  for (const dl of list.data) {
    const box = el("input", { type: "checkbox", "aria-label": `Select ${dl.id}`, disabled: ro, onchange: (e) => { e.target.checked ? selected.add(dl.id) : selected.delete(dl.id); countSel(); } });
    const one = el("button", { type: "button", class: "btn btn-sm", disabled: ro, "data-replay": dl.id, onclick: () => replay({ ids: [dl.id] }, one) }, "Replay");
    rows.append(el("tr", { "data-dead-letter": dl.id },
      el("td", {}, box),
      el("td", {}, el("a", { href: `#/events/${encodeURIComponent(dl.event_id)}`, class: "mono" }, dl.event_type || dl.event_id),
        el("div", { class: "hint mono" }, dl.id)),
      el("td", { class: "hide-sm" }, el("a", { href: `#/webhooks/${encodeURIComponent(dl.webhook_id)}` }, names[dl.webhook_id] || dl.webhook_id)),
      el("td", {}, el("span", { class: "badge bad plain" }, dl.reason.replaceAll("_", " "))),
      el("td", { class: "num hide-sm" }, String(dl.attempts)),
      el("td", { class: "hide-sm" }, dl.last_status ? httpBadge(dl.last_status) : el("span", { class: "excerpt", title: dl.last_error || "" }, dl.last_error || "—")),
      el("td", { class: "nowrap hide-sm" }, fmtTime(dl.dead_lettered_at)),
      el("td", {}, one)));
  }
  if (!list.data.length) rows.append(emptyRow(8, "No dead letters", webhookID ? " Every delivery of this webhook arrived or is still being retried." : " Every delivery arrived or is still being retried."));
  replaySel.addEventListener("click", () => replay({ ids: [...selected] }, replaySel));
  const replayAll = el("button", { type: "button", class: "btn btn-primary", id: "replay-all", disabled: ro || !webhookID || !list.data.length, title: webhookID ? "" : "Pick a webhook first", onclick: async () => {
    if (!await confirmDialog("Replay all dead letters?", `Every dead letter of ${names[webhookID] || webhookID} is delivered again.`, "Replay all")) return;
    replay({ webhook_id: webhookID }, replayAll);
  } }, "Replay all");

  page.append(el("section", { class: "card card-flush", "aria-label": "Dead letters" },
    el("div", { class: "filters" },
      el("div", { class: "field" }, el("label", { for: "dl-webhook" }, "Webhook"), sel),
      el("div", { class: "toolbar" }, replaySel, replayAll)),
    el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, el("span", { class: "hide-sm" }, "Pick")), el("th", { scope: "col" }, "Event"),
        el("th", { scope: "col", class: "hide-sm" }, "Webhook"), el("th", { scope: "col" }, "Reason"), el("th", { scope: "col", class: "hide-sm" }, "Attempts"),
        el("th", { scope: "col", class: "hide-sm" }, "Last answer"), el("th", { scope: "col", class: "hide-sm" }, "Given up"), el("th", { scope: "col" }, el("span", { class: "hide-sm" }, "Action")))),
      rows)),
    list.has_more ? el("p", { class: "hint card-head" }, "More dead letters follow: replay these, or narrow to one webhook.") : null));
}

// ---------- events ----------

async function viewEventLookup(page) {
  const input = el("input", { type: "text", id: "event-id", name: "event-id", required: true, autocomplete: "off", spellcheck: "false", placeholder: "evt_…" });
  page.append(
    el("div", { class: "page-head" }, el("div", {}, el("h1", {}, "Events"), el("p", {}, "Look up an event to see which webhooks it matched and what became of each delivery."))),
    el("form", { class: "card form", onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) location.hash = `#/events/${encodeURIComponent(input.value.trim())}`; } },
      field("event-id", "Event id", input, "The id your platform published it with, or one from a webhook's attempts."),
      el("div", {}, el("button", { type: "submit", class: "btn btn-primary" }, "Look up"))));
  setTimeout(() => input.focus(), 0);
}

async function viewEvent(page, params, id, stale) {
  const [evt, whs] = await Promise.all([api("GET", `/events/${encodeURIComponent(id)}`), api("GET", `/webhooks${q({ limit: 250 })}`)]);
  if (stale()) return;
  const names = Object.fromEntries(whs.data.map((w) => [w.id, w.name]));
  const deliveries = evt.deliveries.map((d) => el("section", { class: "card card-flush", "data-delivery": d.webhook_id },
    el("div", { class: "card-head" },
      el("h2", {}, el("a", { href: `#/webhooks/${encodeURIComponent(d.webhook_id)}` }, names[d.webhook_id] || d.webhook_id)),
      outcomeBadge(d.state)),
    d.attempts.length ? el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "#"), el("th", { scope: "col" }, "Time"), el("th", { scope: "col" }, "Outcome"), el("th", { scope: "col" }, "Status"),
        el("th", { scope: "col", class: "hide-sm" }, "Latency"), el("th", { scope: "col", class: "hide-sm" }, "Response"))),
      el("tbody", {}, d.attempts.map((a) => el("tr", {},
        el("td", { class: "num" }, String(a.attempt)), el("td", { class: "nowrap" }, fmtTime(a.at)), el("td", {}, outcomeBadge(a.outcome)),
        el("td", {}, httpBadge(a.status_code)), el("td", { class: "num hide-sm" }, fmtMs(a.latency_ms)),
        el("td", { class: "hide-sm" }, el("span", { class: "excerpt", title: a.response_body || a.error || "" }, a.response_body || a.error || "—"))))))) :
      el("p", { class: "empty" }, "Matched; no attempt recorded yet.")));
  page.append(
    el("div", { class: "page-head" }, el("div", {},
      el("div", { class: "crumbs" }, el("a", { href: "#/events" }, "Events")),
      el("h1", { class: "mono" }, evt.type),
      el("p", { class: "mono" }, evt.id))),
    el("div", { class: "grid grid-2" },
      el("div", {}, el("h2", {}, `Deliveries (${evt.deliveries.length})`),
        deliveries.length ? deliveries : el("div", { class: "card empty" }, el("strong", {}, "No webhook matched this event"), "Subscribe a webhook to its type to receive such events.")),
      el("div", {}, el("section", { class: "card", "aria-labelledby": "evt-h" }, el("h2", { id: "evt-h" }, "Event"),
        el("dl", { class: "props" },
          el("dt", {}, "Type"), el("dd", { class: "mono" }, evt.type),
          el("dt", {}, "Agent"), el("dd", {}, evt.agent_id || "None"),
          el("dt", {}, "Occurred"), el("dd", {}, fmtTime(evt.timestamp)),
          el("dt", {}, "Accepted"), el("dd", {}, fmtTime(evt.accepted_at))),
        el("h3", {}, "Data"),
        el("pre", { class: "json" }, JSON.stringify(evt.data, null, 2))))));
}

// ---------- event types ----------

async function viewEventTypes(page, params, stale) {
  catalogue = null;
  const types = await eventTypes();
  if (stale()) return;
  const canAdd = !readOnly() && !agentScope();
  const rows = types.map((t) => el("tr", {},
    el("td", {}, el("span", { class: "mono" }, t.name)),
    el("td", {}, t.description || el("span", { class: "hint" }, "—")),
    el("td", {}, t.custom ? el("span", { class: "badge info plain" }, "Yours") : el("span", { class: "badge plain" }, "Built in"))));
  page.append(
    el("div", { class: "page-head" }, el("div", {}, el("h1", {}, "Event types"), el("p", {}, "What webhooks can subscribe to: the built-in catalogue and your own types."))),
    el("section", { class: "card card-flush", "aria-label": "Event types" }, el("div", { class: "table-wrap" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Description"), el("th", { scope: "col" }, "Source"))),
      el("tbody", { id: "event-type-rows" }, rows)))));
  if (!canAdd) return;
  const nameIn = el("input", { type: "text", id: "et-name", name: "name", placeholder: "invoice.paid", autocomplete: "off" });
  const descIn = el("input", { type: "text", id: "et-description", name: "description", autocomplete: "off" });
  const out = el("div", { role: "alert" });
  const form = el("form", { class: "card form", novalidate: true, "aria-labelledby": "et-h", onsubmit: async (e) => {
    e.preventDefault();
    out.replaceChildren();
    try {
      await api("POST", "/event-types", { name: nameIn.value.trim(), description: descIn.value });
      route();
    } catch (err) {
      const rest = showFieldErrors(form, Object.fromEntries(Object.entries(err.fields || {}).map(([k, m]) => [`et-${k}`, m])));
      out.replaceChildren(errorNotice(err, "Not added"));
      void rest;
    }
  } },
  el("h2", { id: "et-h" }, "Add an event type"),
  el("div", { class: "row" }, field("et-name", "Name", nameIn, "Lowercase words joined by dots."), field("et-description", "Description", descIn)),
  out,
  el("div", {}, el("button", { type: "submit", class: "btn btn-primary" }, "Add event type")));
  page.append(form);
}

// ---------- start ----------

// takeLinkToken signs in with a portal link's token, which the link carries
// in the fragment, then drops it from the address bar and the history. A
// link opened in a tab that shows the portal already changes only the
// fragment, so this runs on every route.
function takeLinkToken() {
  const m = location.hash.match(/^#token=([^&]+)/);
  if (!m) return;
  signIn(decodeURIComponent(m[1]));
  session.link = null;
  session.scopeLoaded = false;
  catalogue = null;
  history.replaceState(null, "", `${location.pathname}${location.search}#/webhooks`);
}

function start() {
  document.getElementById("signout").addEventListener("click", () => signOut(""));
  window.addEventListener("hashchange", route);
  route();
}

start();
