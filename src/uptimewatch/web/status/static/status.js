// The status page: one script, no framework, no build step. Each view is a function that fetches
// its JSON from /api/v1 and renders it; server-sent events say when to fetch again, and a timer
// refetches anyway, so a proxy that drops the stream only makes the page slower, never stale.
"use strict";

const POLL_MS = 10000; // without a live stream
const REFRESH_MS = 30000; // with one: reasons and battery minutes change without a state change
const TOKEN_KEY = "uptimewatch.token";
const NAME_KEY = "uptimewatch.operator";
const STATES = ["down", "unreachable", "degraded", "up", "unknown"];
const STATE_WORDS = { up: "up", degraded: "degraded", down: "down", unreachable: "unreachable", unknown: "unknown" };

const main = document.getElementById("main");
let skew = 0; // server clock minus ours, seconds
let features = {};
let live = false;
let refreshTimer = null;
let pendingAck = null;

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function now() {
  return Date.now() / 1000 + skew;
}

function age(since) {
  if (since == null) return "–";
  let s = Math.max(0, Math.round(now() - since));
  if (s < 60) return `${s} s`;
  let m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  m %= 60;
  if (h < 48) return `${h} h ${String(m).padStart(2, "0")}`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function minutes(value) {
  if (value == null || !isFinite(value)) return "–";
  const m = Math.round(value);
  return m < 120 ? `${m} min` : `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")}`;
}

function num(value, unit, digits = 1) {
  return value == null ? "–" : `${Number(value).toFixed(digits)} ${unit}`;
}

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  return resp.json();
}

function stamp(data) {
  if (data && typeof data.generated_at === "number") skew = data.generated_at - Date.now() / 1000;
  document.getElementById("updated").textContent = new Date().toLocaleTimeString("vi-VN");
}

function pill(state) {
  return `<span class="pill ${esc(state)}">${esc(STATE_WORDS[state] || state)}</span>`;
}

function countsBlock(counts, total) {
  const parts = STATES.filter((s) => counts[s] || s === "down" || s === "up").map(
    (s) => `<div class="count ${s}" data-state="${s}"><b>${counts[s] || 0}</b>${esc(STATE_WORDS[s])}</div>`,
  );
  parts.push(`<div class="count"><b>${total}</b>sites</div>`);
  return `<div class="counts">${parts.join("")}</div>`;
}

// -- optional parts: time-to-dark, topology, alerts -------------------------------------------------

function listOf(data, keys) {
  if (Array.isArray(data)) return data;
  for (const k of keys) if (data && Array.isArray(data[k])) return data[k];
  return [];
}

async function timeToDark() {
  if (!features.time_to_dark) return new Map();
  try {
    const data = await getJSON("/api/v1/power/time-to-dark");
    const out = new Map();
    for (const e of listOf(data, ["sites", "items", "ranking", "estimates"])) {
      if (e.status && e.status !== "on_battery") continue; // recharging: no longer dispatch work
      const site = e.site_id ?? e.site ?? e.id;
      let seconds = e.time_to_dark_seconds ?? e.time_to_dark_s ?? e.seconds;
      if (seconds == null && e.minutes != null) seconds = e.minutes * 60;
      if (seconds == null && e.time_to_dark_minutes != null) seconds = e.time_to_dark_minutes * 60;
      if (site != null) out.set(site, { seconds, basis: e.reason ?? e.method ?? "" });
    }
    return out;
  } catch (err) {
    console.warn("time-to-dark unavailable:", err.message);
    return new Map();
  }
}

async function outages() {
  if (!features.topology) return [];
  try {
    return listOf(await getJSON("/api/v1/topology/outages"), ["outages", "items"]);
  } catch (err) {
    console.warn("topology unavailable:", err.message);
    return [];
  }
}

function ackedBy(a) {
  return (a.ack && a.ack.by) || a.ack_by || a.acknowledged_by || null;
}

async function alerts() {
  const data = await getJSON("/api/v1/alerts");
  return listOf(data, ["alerts", "items"]).filter((a) => (a.state ?? "firing") === "firing");
}

async function updateAlertBadge() {
  if (!features.alerts) return;
  try {
    const firing = await alerts();
    const open = firing.filter((a) => !ackedBy(a)).length;
    document.getElementById("alert-count").textContent = open ? String(open) : "";
  } catch (err) {
    console.warn("alerts unavailable:", err.message);
  }
}

// -- views -------------------------------------------------------------------------------------------

async function overview() {
  const data = await getJSON("/api/v1/status/overview");
  stamp(data);
  features = data.features || {};
  const p = data.province;
  const cut = await outages();
  let html = `<h1>${esc(p.name)} ${pill(p.state)}</h1>${countsBlock(p.counts, p.total)}`;
  if (data.on_battery) {
    html += `<p class="notice"><a href="/status/dispatch">${data.on_battery} site(s) on battery</a>: dispatch list</p>`;
  }
  if (cut.length) {
    html += `<h2>Cut off behind a failed upstream</h2><ul>${cut
      .map((o) => {
        const n = (o.sites || []).length;
        return `<li><b>${esc(o.name ?? o.root)}</b>: ${esc(o.reason ?? "")} — ${n} site(s) cut off</li>`;
      })
      .join("")}</ul>`;
  }
  html += `<h2>Districts</h2><div class="grid">`;
  for (const d of data.districts) {
    const c = d.counts;
    const mini = STATES.filter((s) => c[s]).map((s) => `<span><span class="dot ${s}"></span>${c[s]} ${esc(STATE_WORDS[s])}</span>`);
    if (d.on_battery) mini.push(`<span>🔋 ${d.on_battery}</span>`);
    html += `<a class="card state-${esc(d.state)}" data-district="${esc(d.id)}" href="/status/district/${encodeURIComponent(d.id)}">
      <h2>${esc(d.name)}</h2><div class="mini">${mini.join("")}</div></a>`;
  }
  html += `</div>`;
  main.innerHTML = html;
  document.getElementById("battery-count").textContent = data.on_battery ? String(data.on_battery) : "";
  document.getElementById("province").textContent = p.name || "uptimewatch";
  document.title = `${p.name} — uptimewatch`;
}

function powerCell(power, ttd) {
  if (!power) return "–";
  const parts = [];
  if (power.on_battery) parts.push(`<b>🔋 battery</b>`);
  else if (power.on_battery === false) parts.push(esc(power.source && power.source !== "battery" ? power.source : "mains"));
  else parts.push(`<span class="muted">unknown</span>`);
  if (ttd && ttd.seconds != null) parts.push(`<span class="ttd">${minutes(ttd.seconds / 60)} to dark</span>`);
  else if (power.battery_minutes != null) parts.push(`${minutes(power.battery_minutes)} left`);
  if (power.charge_percent != null) parts.push(`${Math.round(power.charge_percent)} %`);
  return parts.join("<br>");
}

function linksCell(links) {
  if (!links || !links.length) return "–";
  return links
    .map((l) => {
      const bits = [];
      if (l.rx_level_dbm != null) bits.push(num(l.rx_level_dbm, "dBm"));
      if (l.snr_db != null) bits.push(`SNR ${num(l.snr_db, "dB")}`);
      if (l.oper_up === false) bits.push("<b>link down</b>");
      return `${esc(l.name)}: ${bits.join(", ") || "–"}`;
    })
    .join("<br>");
}

async function district(id) {
  const [data, ttd] = await Promise.all([getJSON(`/api/v1/status/districts/${encodeURIComponent(id)}`), timeToDark()]);
  stamp(data);
  let html = `<p><a href="/">← Overview</a></p><h1>${esc(data.name)} ${pill(data.state)}</h1>`;
  const total = Object.values(data.counts).reduce((a, b) => a + b, 0);
  html += countsBlock(data.counts, total);
  html += `<table class="list"><thead><tr><th>Site</th><th>State</th><th>Reason</th><th>In state</th><th>Power</th><th>Links</th></tr></thead><tbody>`;
  for (const s of data.sites) {
    html += `<tr class="state-${esc(s.state)}" data-site="${esc(s.id)}" data-state="${esc(s.state)}">
      <td><span class="site-name">${esc(s.name)}</span><div class="sub">${esc(s.commune_name ?? "")} · ${esc(s.carrier_name)}${s.priority !== "normal" ? " · " + esc(s.priority) : ""}</div></td>
      <td data-label="State">${pill(s.state)}</td>
      <td data-label="Reason">${esc(s.reason)}</td>
      <td data-label="In state" data-since="${s.since ?? ""}">${age(s.since)}</td>
      <td data-label="Power">${powerCell(s.power, ttd.get(s.id))}</td>
      <td data-label="Links">${linksCell(s.links)}</td></tr>`;
  }
  html += `</tbody></table>`;
  main.innerHTML = html;
  document.title = `${data.name} — uptimewatch`;
}

async function dispatch() {
  const [data, ttd] = await Promise.all([getJSON("/api/v1/status/dispatch"), timeToDark()]);
  stamp(data);
  const rows = data.sites.map((s) => ({ ...s, ttd: ttd.get(s.id) }));
  const key = (s) => (s.ttd && s.ttd.seconds != null ? s.ttd.seconds / 60 : s.power.battery_minutes ?? Infinity);
  rows.sort((a, b) => key(a) - key(b));
  const ranked = ttd.size ? "time to dark" : "battery minutes left";
  let html = `<h1>On battery: dispatch list</h1><p class="muted">${rows.length} site(s), ranked by ${ranked}.</p>`;
  if (!rows.length) {
    main.innerHTML = html + `<p class="notice">No site is on battery.</p>`;
    document.getElementById("battery-count").textContent = "";
    return;
  }
  html += `<table class="list"><thead><tr><th>#</th><th>Site</th><th>Left</th><th>Charge</th><th>On battery for</th><th>State</th></tr></thead><tbody>`;
  rows.forEach((s, i) => {
    const left = key(s);
    const urgent = left < 60 ? " urgent" : "";
    const basis = s.ttd && s.ttd.basis ? `<div class="sub">${esc(s.ttd.basis)}</div>` : "";
    html += `<tr class="state-${esc(s.state)}" data-site="${esc(s.id)}">
      <td>${i + 1}</td>
      <td><span class="site-name">${esc(s.name)}</span><div class="sub">${esc(s.district_name)} · ${esc(s.carrier_name)}</div></td>
      <td data-label="Left"><span class="ttd${urgent}">${minutes(left)}</span>${basis}</td>
      <td data-label="Charge">${s.power.charge_percent == null ? "–" : Math.round(s.power.charge_percent) + " %"}</td>
      <td data-label="On battery for">${s.power.on_battery_seconds == null ? "–" : minutes(s.power.on_battery_seconds / 60)}</td>
      <td data-label="State">${pill(s.state)}</td></tr>`;
  });
  main.innerHTML = html + `</tbody></table>`;
  document.getElementById("battery-count").textContent = String(rows.length);
}

async function alertsView() {
  if (!features.alerts) {
    main.innerHTML = `<h1>Alerts</h1><p class="notice">This daemon does not evaluate alerts.</p>`;
    return;
  }
  const firing = await alerts();
  stamp(null);
  firing.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === "critical" ? -1 : 1));
  let html = `<h1>Active alerts</h1>`;
  if (!firing.length) {
    main.innerHTML = html + `<p class="notice">No alert is firing.</p>`;
    return;
  }
  html += `<table class="list"><thead><tr><th>Alert</th><th>Severity</th><th>Since</th><th></th></tr></thead><tbody>`;
  for (const a of firing) {
    const id = a.fingerprint ?? a.id;
    const by = ackedBy(a);
    const since = a.fired_at ?? a.starts_at ?? a.active_since;
    const action = by
      ? `<span class="acked" data-acked="1">acknowledged by ${esc(by)}</span>`
      : `<button class="primary ack" data-id="${esc(id)}">Acknowledge</button>`;
    html += `<tr class="state-${a.severity === "critical" ? "down" : "degraded"}" data-alert="${esc(id)}">
      <td><span class="site-name">${esc(a.summary || a.name)}</span><div class="sub">${esc(a.name)} · ${esc((a.labels || {}).site ?? "")}</div></td>
      <td data-label="Severity">${esc(a.severity)}</td>
      <td data-label="Since" data-since="${since ?? ""}">${age(since)}</td>
      <td>${action}</td></tr>`;
  }
  main.innerHTML = html + `</tbody></table><p id="ack-message" class="error" role="status"></p>`;
  for (const button of main.querySelectorAll("button.ack")) button.addEventListener("click", () => ack(button.dataset.id));
}

// -- acknowledging: the token lives in sessionStorage, for this tab only ---------------------------

function authHeader(token) {
  // "user:password" is HTTP basic; anything else a bearer token
  if (token.includes(":") && !token.includes(" ")) return "Basic " + btoa(unescape(encodeURIComponent(token)));
  return "Bearer " + token;
}

function askToken(id) {
  pendingAck = id;
  document.getElementById("auth").hidden = false;
  document.getElementById("auth-token").focus();
}

async function ack(id) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return askToken(id);
  const msg = document.getElementById("ack-message");
  const resp = await fetch(`/api/v1/alerts/${encodeURIComponent(id)}/ack`, {
    method: "POST",
    headers: { Authorization: authHeader(token), "Content-Type": "application/json" },
    body: JSON.stringify({ by: sessionStorage.getItem(NAME_KEY) || "status page", comment: "acknowledged on the status page" }),
  });
  if (resp.status === 401 || resp.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (msg) msg.textContent = "The token was refused; enter it again.";
    return askToken(id);
  }
  if (!resp.ok && msg) msg.textContent = `Acknowledge failed: HTTP ${resp.status}`;
  await refresh();
}

document.getElementById("auth-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("auth-token");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  const who = document.getElementById("auth-name").value.trim();
  if (who) sessionStorage.setItem(NAME_KEY, who);
  input.value = "";
  document.getElementById("auth").hidden = true;
  if (pendingAck) ack(pendingAck);
  pendingAck = null;
});
document.getElementById("auth-cancel").addEventListener("click", () => {
  document.getElementById("auth").hidden = true;
  pendingAck = null;
});

// -- routing, refresh and the live stream ----------------------------------------------------------

function route() {
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const m = path.match(/^\/status\/district\/([^/]+)$/);
  if (m) return ["district", () => district(decodeURIComponent(m[1]))];
  if (path === "/status/dispatch") return ["dispatch", dispatch];
  if (path === "/status/alerts") return ["alerts", alertsView];
  return ["overview", overview];
}

let refreshing = null;
let again = false;

async function refresh() {
  if (refreshing) {
    again = true; // one more pass after this one: never drop an update, never run two at once
    return refreshing;
  }
  const [name, view] = route();
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === name);
  refreshing = (async () => {
    try {
      if (name !== "overview") {
        const meta = await getJSON("/api/v1/status/overview");
        features = meta.features || {};
        document.getElementById("battery-count").textContent = meta.on_battery ? String(meta.on_battery) : "";
        document.getElementById("province").textContent = meta.province.name || "uptimewatch";
      }
      await view();
      document.getElementById("nav-alerts").hidden = !features.alerts;
      await updateAlertBadge();
    } catch (err) {
      console.warn("refresh failed:", err.message);
      const note = document.createElement("p");
      note.className = "error";
      note.textContent = `Cannot reach the daemon (${err.message}); retrying.`;
      main.prepend(note);
    }
  })();
  try {
    await refreshing;
  } finally {
    refreshing = null;
  }
  if (again) {
    again = false;
    await refresh();
  }
}

function schedule() {
  clearInterval(refreshTimer);
  refreshTimer = setInterval(refresh, live ? REFRESH_MS : POLL_MS);
}

function connect() {
  if (!("EventSource" in window)) return schedule();
  const source = new EventSource("/api/v1/events");
  let version = null;
  source.addEventListener("changed", (ev) => {
    const v = JSON.parse(ev.data).version;
    if (version !== null && v !== version) refresh();
    version = v;
  });
  source.addEventListener("open", () => {
    live = true;
    document.getElementById("live").classList.add("on");
    schedule();
  });
  source.addEventListener("error", () => {
    live = false;
    document.getElementById("live").classList.remove("on");
    schedule(); // EventSource reconnects by itself; poll meanwhile
  });
}

setInterval(() => {
  for (const el of document.querySelectorAll("[data-since]")) {
    const since = parseFloat(el.dataset.since);
    if (!isNaN(since)) el.textContent = age(since);
  }
}, 5000);

refresh();
connect();
schedule();
