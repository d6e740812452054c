// The relay's admin dashboard: every figure and every change goes through POST /api/admin
// (madmail's envelope). The page holds no data of its own; the token stays in this tab's
// sessionStorage. Data is put into the page with textContent only, never parsed as HTML.
"use strict";

const TOKEN_KEY = "relay-admin-token";
const SERVICES = {
  turn: "TURN: audio and video calls through the relay",
  iroh: "iroh relay: realtime webxdc apps",
  shadowsocks: "Shadowsocks proxy",
  webimap: "WebIMAP: mail over HTTPS for web clients",
  websmtp: "WebSMTP: sending through WebIMAP",
};

let token = "";

const $ = (id) => document.getElementById(id);

// el("td", {class: "x", title: "y"}, "text", child, ...): attributes are set as attributes,
// strings become text nodes.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== undefined && child !== null) node.append(child);
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  get auth() {
    return this.status === 401 || this.status === 429;
  }
}

// Calls in flight: the page says aria-busy while any is (and the cursor shows it).
let busy = 0;
function setBusy(delta) {
  busy += delta;
  document.body.setAttribute("aria-busy", busy > 0 ? "true" : "false");
}

async function api(method, resource, body) {
  setBusy(1);
  try {
    return await call(method, resource, body);
  } finally {
    setBusy(-1);
  }
}

async function call(method, resource, body) {
  let response;
  try {
    response = await fetch("/api/admin", {
      method: "POST",
      cache: "no-store",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        method,
        resource,
        headers: { Authorization: "Bearer " + token },
        body: body || {},
      }),
    });
  } catch (e) {
    throw new ApiError(0, "the relay did not answer (" + e.message + ")");
  }
  let answer;
  try {
    answer = await response.json();
  } catch (e) {
    throw new ApiError(response.status, "the relay answered HTTP " + response.status);
  }
  if (answer.status === 200) return answer.body;
  const error = new ApiError(answer.status, answer.error || "status " + answer.status);
  if (error.auth) logout(error.message);
  throw error;
}

// Runs an action; an error is shown (an authentication error has already led to the login).
async function run(task) {
  try {
    await task();
  } catch (e) {
    if (!(e instanceof ApiError && e.auth)) notice(e.message, "error");
  }
}

function notice(text, kind) {
  const box = $("notice");
  box.textContent = text || "";
  box.className = kind || "";
  box.hidden = !text;
}

// What a change's answer says beyond "done": applied live, after a restart, or not at all.
// restart_required names every key the file has changed that waits for a restart, this
// change's or an earlier one's; `key` says which one this change set.
function outcome(answer, what, key) {
  const restart = answer.restart_required || [];
  const pending = restart.length ? " Waiting for a restart: " + restart.join(", ") + "." : "";
  if (answer.error) return [what + " was saved, but applying it failed: " + answer.error, "error"];
  if (key && restart.includes(key)) return [what + " was saved; it takes effect after a restart." + pending, "warn"];
  return [what + " was saved and applied." + pending, "ok"];
}

function report(answer, what) {
  const [text, kind] = outcome(answer, what);
  notice(text, kind);
  return kind;
}

// Formatting

function bytes(n) {
  if (typeof n !== "number" || n < 0) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i ? n.toFixed(n < 10 ? 1 : 0) : String(n)) + " " + units[i];
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d) return d + " d " + h + " h";
  if (h) return h + " h " + m + " min";
  if (m) return m + " min";
  return seconds + " s";
}

function when(value) {
  if (!value) return "never";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return isNaN(date) ? String(value) : date.toLocaleString();
}

function count(n, one, many) {
  return n + " " + (n === 1 ? one : many);
}

function settingText(value) {
  if (Array.isArray(value)) return value.join(", ");
  return String(value);
}

// Tables: rows of cells; on a phone screen the stylesheet stacks them with these labels.
function fillTable(table, rows, empty) {
  const labels = [...table.tHead.rows[0].cells].map((cell) => cell.textContent);
  const body = table.tBodies[0];
  if (!rows.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: labels.length, class: "empty" }, empty)));
    return;
  }
  body.replaceChildren(
    ...rows.map((cells) =>
      el("tr", {}, ...cells.map((cell, i) => el("td", { "data-label": labels[i] || null }, cell)))
    )
  );
}

function button(text, onClick, cls) {
  const node = el("button", { type: "button", class: cls }, text);
  node.addEventListener("click", () => {
    node.disabled = true;
    run(onClick).finally(() => (node.disabled = false));
  });
  return node;
}

// A checkbox that asks the relay and shows what the relay answered, not what was clicked.
function wireSwitch(box, change) {
  box.addEventListener("change", () => {
    const wanted = box.checked;
    box.disabled = true;
    run(async () => {
      box.checked = !wanted; // until the answer says otherwise
      await change(wanted);
    }).finally(() => (box.disabled = false));
  });
}

// Overview

function card(id, title, figure, ...details) {
  return el(
    "div",
    { class: "card", id: "card-" + id },
    el("h3", {}, title),
    el("p", { class: "figure" }, figure),
    ...details.filter((d) => d).map((d) => el("p", { class: "detail" }, d))
  );
}

async function loadOverview() {
  const o = await api("GET", "/admin/overview");
  const s = o.status;
  $("relay-name").textContent = s.domain;
  const health = s.health;
  const problems = health.problems.length
    ? el("ul", { class: "problems" }, ...health.problems.map((p) => el("li", {}, p)))
    : "no problems";
  const healthCard = card("health", "Health", health.state, problems);
  healthCard.classList.add("health-" + health.state);
  const disk = o.storage.disk;
  const queue = s.queue.messages;
  $("overview-cards").replaceChildren(
    healthCard,
    card("accounts", "Accounts", String(s.accounts),
      "registration " + o.registration.status + ", JIT " + o.jit.status),
    card("disk", "Disk", disk.percent + " %",
      bytes(disk.used) + " used of " + bytes(disk.total),
      "relay data " + bytes(o.storage.state_dir.size)),
    card("queue", "Queue", String(queue),
      (queue === 1 ? "message waits" : "messages wait") + " for other servers"),
    card("uptime", "Uptime", duration(s.uptime), s.lan ? "LAN mode" : "domain mode"),
    card("mail", "Mail since start", String(s.received_messages) + " received",
      s.sent_messages + " sent to other servers", s.outbound_messages + " queued for them",
      count(s.email_servers, "server", "servers") + " seen")
  );
  const services = Object.keys(s.ports);
  for (const name of Object.keys(s.connections_total)) {
    if (!services.includes(name)) services.push(name);
  }
  fillTable(
    $("connections"),
    services.map((name) => [
      s.ports[name] ? name + " (" + s.ports[name] + ")" : name,
      String(s.connections[name] || 0),
      String(s.connections_total[name] || 0),
    ]),
    "no listeners"
  );
  return o;
}

// Services

async function loadServices() {
  const o = await api("GET", "/admin/overview");
  $("service-list").replaceChildren(
    ...Object.entries(o.services).map(([name, state]) => serviceSwitch(name, state))
  );
}

function serviceState(span, box, state) {
  box.checked = state.status === "enabled";
  span.textContent = state.running ? "running" : state.status === "enabled" ? "not running" : "off";
}

function serviceSwitch(name, state) {
  const box = el("input", { type: "checkbox", id: "service-" + name });
  const span = el("span", { class: "state", id: "service-" + name + "-state" });
  serviceState(span, box, state);
  wireSwitch(box, async (on) => {
    const answer = await api("POST", "/admin/services/" + name, { action: on ? "enable" : "disable" });
    serviceState(span, box, answer);
    report(answer, name + " " + (on ? "on" : "off"));
  });
  return el("li", {}, el("label", {}, box, " ", el("strong", {}, name), " ", SERVICES[name] || ""), " ", span);
}

// Registration

async function loadRegistration() {
  const [registration, jit] = await Promise.all([
    api("GET", "/admin/registration"),
    api("GET", "/admin/registration/jit"),
  ]);
  showRegistration(registration);
  showJit(jit);
}

function showRegistration(answer) {
  $("registration-open").checked = answer.status === "open";
  $("registration-state").textContent = answer.status;
}

function showJit(answer) {
  $("jit").checked = answer.status === "enabled";
  $("jit-state").textContent = answer.status;
}

// Accounts

async function loadAccounts() {
  const [listed, blocked] = await Promise.all([
    api("GET", "/admin/accounts"),
    api("GET", "/admin/blocklist"),
  ]);
  $("account-total").textContent = "(" + listed.total + ")";
  fillTable(
    $("account-table"),
    listed.accounts.map((a) => [
      el("span", { class: "address" }, a.username),
      when(a.created),
      bytes(a.used_bytes) + " of " + bytes(a.max_bytes),
      el("span", { class: "actions" },
        button("Block", () => blockAccount(a.username), "danger"),
        button("Delete", () => deleteAccount(a.username), "danger")),
    ]),
    "no accounts yet"
  );
  const list = $("blocklist");
  list.replaceChildren(
    ...blocked.blocked.map((b) =>
      el("li", {}, el("span", { class: "address" }, b.username), " ",
        button("Unblock", () => unblock(b.username)))
    )
  );
  if (!blocked.blocked.length) list.append(el("li", { class: "empty" }, "none"));
}

async function blockAccount(username) {
  if (!confirm("Block " + username + "?\n\nIts account and all its mail are deleted, and the address can neither log in nor be registered again.")) return;
  await api("POST", "/admin/blocklist", { username });
  notice(username + " is blocked.", "ok");
  await loadAccounts();
}

async function deleteAccount(username) {
  if (!confirm("Delete " + username + " and all its mail?\n\nThe address can be registered again.")) return;
  await api("DELETE", "/admin/accounts", { username });
  notice(username + " is deleted.", "ok");
  await loadAccounts();
}

async function unblock(username) {
  await api("DELETE", "/admin/blocklist", { username });
  notice(username + " is no longer blocked.", "ok");
  await loadAccounts();
}

// Federation

async function loadFederation() {
  const [federation, rules, servers] = await Promise.all([
    api("GET", "/admin/settings/federation"),
    api("GET", "/admin/federation/rules"),
    api("GET", "/admin/federation/servers"),
  ]);
  showFederation(federation);
  showRules(rules);
  fillTable(
    $("peers"),
    Object.entries(servers).map(([domain, p]) => [
      el("span", { class: "address" }, domain),
      String(p.successful_deliveries),
      p.success_http + " / " + p.success_smtp,
      p.failed_http + " / " + p.failed_smtp,
      p.mean_latency_ms === null ? "–" : p.mean_latency_ms + " ms",
      when(p.last_active),
    ]),
    "no mail exchanged with other servers since the start"
  );
}

function showFederation(answer) {
  $("federation-enabled").checked = answer.enabled;
  $("federation-state").textContent = answer.enabled ? "on" : "off";
  $("policy").value = answer.policy;
}

function showRules(rules) {
  const list = $("rules");
  list.replaceChildren(
    ...rules.domains.map((domain) =>
      el("li", {}, el("span", { class: "address" }, domain), " ",
        button("Remove", () => removeRule(domain)))
    )
  );
  if (!rules.domains.length) {
    list.append(el("li", { class: "empty" }, rules.policy === "REJECT"
      ? "none: no other server is accepted"
      : "none: every other server is accepted"));
  }
}

async function removeRule(domain) {
  const answer = await api("DELETE", "/admin/federation/rules", { domain });
  showRules(answer);
  report(answer, "Removing " + domain);
}

// Settings

async function loadSettings() {
  const settings = await api("GET", "/admin/settings");
  const groups = new Map();
  for (const [key, value] of Object.entries(settings)) {
    const section = key.includes(".") ? key.split(".")[0] : "general";
    if (!groups.has(section)) groups.set(section, []);
    groups.get(section).push(settingRow(key, value));
  }
  $("setting-groups").replaceChildren(
    ...[...groups].map(([section, rows]) =>
      el("fieldset", {}, el("legend", {}, section), ...rows))
  );
}

function settingInput(key, value) {
  const id = "setting-" + key;
  if (typeof value === "boolean") {
    const select = el("select", { id }, el("option", {}, "true"), el("option", {}, "false"));
    select.value = String(value);
    return select;
  }
  const secret = /secret|password/.test(key);
  return el("input", { id, type: secret ? "password" : "text", value: settingText(value), spellcheck: "false", autocomplete: "off" });
}

function settingRow(key, value) {
  const input = settingInput(key, value);
  const state = el("span", { class: "state", id: "setting-" + key + "-state" });
  const form = el("form", { class: "setting" },
    el("label", { for: input.id }, key), input,
    el("button", { type: "submit" }, "Save"));
  const reset = button("Reset", () => saveSetting(key, input, state, { action: "reset" }), "quiet");
  form.append(reset, state);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(() => saveSetting(key, input, state, { action: "set", value: input.value }));
  });
  return form;
}

async function saveSetting(key, input, state, body) {
  state.textContent = "saving…";
  state.className = "state";
  let answer;
  try {
    answer = await api("POST", "/admin/settings/" + key, body);
  } catch (e) {
    state.textContent = e.message;
    state.className = "state error";
    throw e;
  }
  const [text, kind] = outcome(answer, key, key);
  if (!(answer.restart_required || []).includes(key)) input.value = settingText(answer.value);
  // A restart-only key answers its running value; the field keeps the one saved in the file.
  state.textContent = kind === "ok" ? "saved" : kind === "warn" ? "saved: applies after a restart" : "saved, not applied";
  state.className = "state " + kind;
  notice(text, kind);
}

// Login, tabs, wiring

const LOADERS = {
  overview: loadOverview,
  services: loadServices,
  registration: loadRegistration,
  accounts: loadAccounts,
  federation: loadFederation,
  settings: loadSettings,
};
let current = "overview";

function showTab(name, load = true) {
  current = name;
  for (const section of document.querySelectorAll("section.tab")) section.hidden = section.id !== name;
  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.setAttribute("aria-current", tab.dataset.tab === name ? "page" : "false");
  }
  notice("");
  if (load) run(LOADERS[name]);
}

function showLogin(error) {
  for (const section of document.querySelectorAll("section.tab")) section.hidden = true;
  $("tabs").hidden = true;
  $("logout").hidden = true;
  $("relay-name").textContent = "";
  $("login").hidden = false;
  notice(error, "error");
  $("token").focus();
}

function logout(error) {
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(error);
}

async function enter(candidate) {
  token = candidate;
  try {
    await loadOverview(); // the first call tells whether the token is right
  } catch (e) {
    if (!(e instanceof ApiError && e.auth)) notice(e.message, "error");
    if (!token) return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("token").value = "";
  $("tabs").hidden = false;
  $("logout").hidden = false;
  showTab(current, current !== "overview"); // the overview is there already
}

function wire() {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    enter($("token").value.trim());
  });
  $("logout").addEventListener("click", () => logout(""));
  for (const tab of document.querySelectorAll("#tabs button")) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab));
  }
  for (const refresh of document.querySelectorAll("button.refresh")) {
    refresh.addEventListener("click", () => run(LOADERS[current]));
  }
  wireSwitch($("registration-open"), async (open) => {
    const answer = await api("POST", "/admin/registration", { action: open ? "open" : "close" });
    showRegistration(answer);
    report(answer, "Registration " + answer.status);
  });
  wireSwitch($("jit"), async (on) => {
    const answer = await api("POST", "/admin/registration/jit", { action: on ? "enable" : "disable" });
    showJit(answer);
    report(answer, "JIT registration " + answer.status);
  });
  wireSwitch($("federation-enabled"), async (on) => {
    const answer = await api("POST", "/admin/settings/federation", { enabled: on });
    showFederation(answer);
    report(answer, "Federation " + (answer.enabled ? "on" : "off"));
  });
  $("policy-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(async () => {
      const answer = await api("POST", "/admin/settings/federation", { policy: $("policy").value });
      showFederation(answer);
      await loadFederation();
      report(answer, "Policy " + answer.policy);
    });
  });
  $("rule-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("rule-domain");
    run(async () => {
      const answer = await api("POST", "/admin/federation/rules", { domain: input.value.trim() });
      input.value = "";
      showRules(answer);
      report(answer, "The rule");
    });
  });
  $("block-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("block-address");
    run(async () => {
      const answer = await api("POST", "/admin/blocklist", { username: input.value.trim() });
      input.value = "";
      notice(answer.username + " is blocked.", "ok");
      await loadAccounts();
    });
  });
}

function start() {
  setBusy(0);
  wire();
  // The link `relay admin-token` prints: /admin#token=...; taken, then removed from the address
  // bar and the history so that it is not left on screen or in a bookmark.
  const link = location.hash.match(/^#token=([^&]+)/);
  if (link) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(link[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) enter(saved);
  else showLogin("");
}

start();
