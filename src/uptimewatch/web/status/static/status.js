// The status page: one script, no framework, no build step. Each view is a function that fetches
// its JSON from /api/v1 and renders it; server-sent events say when to fetch again, and a timer
// refetches anyway, so a proxy that drops the stream only makes the page slower, never stale.
//
// Words: every string a person reads goes through _() / ngettext(), which look it up in the
// gettext catalog of the "status" domain that the daemon renders into the page (and serves at
// /api/v1/status/i18n for the language switch). `pybabel extract` finds the calls in this file,
// so their first arguments are plain string literals. Numbers, dates and durations follow the
// locale's symbols and patterns, which come from Babel with the catalog.
"use strict";

const POLL_MS = 10000; // without a live stream
const REFRESH_MS = 30000; // with one: reasons and battery minutes change without a state change
const TOKEN_KEY = "uptimewatch.token";
const NAME_KEY = "uptimewatch.operator";
const LANG_COOKIE = "uptimewatch_lang";
const STATES = ["down", "unreachable", "degraded", "up", "unknown"];
const SVG_NS = "http://www.w3.org/2000/svg";

const main = document.getElementById("main");
let I18N = readCatalog();
let skew = 0; // server clock minus ours, seconds
let features = {};
let live = false;
let refreshTimer = null;
let pendingAck = null;

// -- words and formats ------------------------------------------------------------------------------

function readCatalog() {
  const el = document.getElementById("i18n");
  try {
    return JSON.parse(el.textContent);
  } catch (err) {
    console.warn("no catalog in the page:", err.message);
    return { lang: "en", messages: {}, plural: "n != 1", formats: {}, units: {} };
  }
}

let pluralIndex = compilePlural(I18N.plural);

function compilePlural(expr) {
  // a gettext Plural-Forms expression; the daemon only sends ones made of n, numbers and operators
  if (typeof expr !== "string" || !/^[n0-9\s!=<>%&|?:()]+$/.test(expr)) return (n) => (n === 1 ? 0 : 1);
  const f = new Function("n", `return Number(${expr});`);
  return (n) => f(n);
}

function fill(text, params) {
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (all, key) => (key in params ? String(params[key]) : all));
}

function _(msgid, params) {
  const found = I18N.messages[msgid];
  const text = typeof found === "string" && found ? found : Array.isArray(found) && found[0] ? found[0] : msgid;
  return fill(text, params);
}

function ngettext(singular, plural, n, params) {
  const forms = I18N.messages[singular];
  let text;
  if (Array.isArray(forms) && forms.length) text = forms[Math.min(pluralIndex(n), forms.length - 1)] || null;
  if (!text) text = n === 1 ? singular : plural;
  return fill(text, { n: fmtInt(n), ...params });
}

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function stateWord(state) {
  const words = { up: _("up"), degraded: _("degraded"), down: _("down"), unreachable: _("unreachable"), unknown: _("unknown") };
  return words[state] || state;
}

function checkWord(state) {
  const words = { ok: _("OK"), warning: _("warning"), critical: _("critical"), unknown: _("unknown") };
  return words[state] || state;
}

function roleWord(role) {
  const words = { bts: _("base station"), power: _("power plant"), link: _("transmission link"), router: _("router") };
  return words[role] || role;
}

function priorityWord(priority) {
  const words = { critical: _("critical priority"), high: _("high priority"), normal: _("normal priority"), low: _("low priority") };
  return words[priority] || priority;
}

function checkName(name) {
  const words = {
    "snmp.reachable": _("SNMP answers"),
    "icmp.reachable": _("Answers ping"),
    "icmp.loss": _("Packet loss"),
    "icmp.rtt": _("Round-trip time"),
    "power.on_battery": _("Power source"),
    "power.battery_minutes": _("Battery time left"),
    "power.battery_charge": _("Battery charge"),
    "power.alarms": _("Power alarms"),
    "link.oper": _("Radio link"),
    "link.rx_level": _("Receive level"),
    "link.snr": _("Signal-to-noise ratio"),
    "device.rebooted": _("Restarted"),
    "device.temperature": _("Temperature"),
  };
  return words[name] || name;
}

function methodWord(method) {
  const words = {
    vendor: _("the plant's own figure"),
    charge_trend: _("charge trend"),
    voltage_trend: _("voltage trend"),
    trends: _("charge and voltage trends"),
    elapsed: _("charge used since mains failed"),
    none: _("no estimate yet"),
  };
  return words[method] || method;
}

function confidenceWord(confidence) {
  const words = { high: _("high confidence"), medium: _("medium confidence"), low: _("low confidence"), none: _("no confidence") };
  return words[confidence] || confidence;
}

function sourceWord(source) {
  const words = { mains: _("mains"), battery: _("battery"), generator: _("generator"), solar: _("solar") };
  return words[source] || source;
}

function fmtNumber(value, digits = 0) {
  if (value == null || !isFinite(value)) return "–";
  const f = I18N.formats || {};
  const fixed = Math.abs(Number(value)).toFixed(digits);
  const [int, frac] = fixed.split(".");
  const grouped = int.length > 4 || (int.length === 4 && f.group_four !== false) ? int.replace(/\B(?=(\d{3})+(?!\d))/g, f.group ?? ",") : int;
  const sign = Number(value) < 0 && Number(fixed) !== 0 ? "-" : "";
  return sign + grouped + (frac ? (f.decimal ?? ".") + frac : "");
}

function fmtInt(value) {
  return fmtNumber(value, 0);
}

function fmtUnit(value, unit, digits = 0) {
  if (value == null || !isFinite(value)) return "–";
  return unit === "%" ? `${fmtNumber(value, digits)}%` : `${fmtNumber(value, digits)} ${unit}`;
}

function zoned(ts) {
  // the province's wall clock, whatever the browser's time zone
  const parts = {};
  const fmt = new Intl.DateTimeFormat("en-GB", {
    timeZone: I18N.timezone || undefined,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
  for (const p of fmt.formatToParts(new Date(ts * 1000))) parts[p.type] = p.value;
  return parts;
}

function pattern(ts, name) {
  // CLDR-style patterns from the daemon (the ones its emails and reports use)
  const p = zoned(ts);
  const f = I18N.formats || {};
  const months = f.months || ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const tokens = { yyyy: p.year, MMM: months[Number(p.month) - 1], MM: p.month, dd: p.day, d: String(Number(p.day)), HH: p.hour, mm: p.minute, ss: p.second };
  const text = f[name] || { date: "dd/MM/yyyy", time: "HH:mm", time_seconds: "HH:mm:ss", datetime: "HH:mm dd/MM/yyyy" }[name];
  return text.replace(/yyyy|MMM|MM|dd|d|HH|mm|ss/g, (t) => tokens[t]);
}

function fmtDate(ts) {
  return pattern(ts, "date");
}

function fmtTime(ts, seconds = false) {
  return pattern(ts, seconds ? "time_seconds" : "time");
}

function fmtDateTime(ts) {
  if (ts == null) return "–";
  // today: the time alone; otherwise date and time
  return fmtDate(ts) === fmtDate(now()) ? fmtTime(ts) : pattern(ts, "datetime");
}

function fmtPercent(value, digits = 0) {
  return value == null || !isFinite(value) ? "–" : `${fmtNumber(value, digits)}%`;
}

function unitText(unit, n) {
  const forms = (I18N.units || {})[unit];
  const fallback = { day: "{0} d", hour: "{0} h", minute: "{0} min", second: "{0} s" }[unit];
  if (!forms) return fallback.replace("{0}", fmtInt(n));
  const form = n === 1 && forms.one ? forms.one : forms.other || fallback;
  return form.replace("{0}", fmtInt(n));
}

function fmtDuration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  let s = Math.max(0, Math.round(seconds));
  if (s < 60) return unitText("second", s);
  let m = Math.floor(s / 60);
  if (m < 60) return unitText("minute", m);
  let h = Math.floor(m / 60);
  m %= 60;
  if (h < 48) return m ? `${unitText("hour", h)} ${unitText("minute", m)}` : unitText("hour", h);
  const d = Math.floor(h / 24);
  h %= 24;
  return h ? `${unitText("day", d)} ${unitText("hour", h)}` : unitText("day", d);
}

function now() {
  return Date.now() / 1000 + skew;
}

function age(since) {
  return since == null ? "–" : fmtDuration(now() - since);
}

async function getJSON(url) {
  // the status views write reasons in the page's language
  if ((url.startsWith("/api/v1/status/") || url.startsWith("/api/v1/power/")) && !url.includes("lang=")) url += (url.includes("?") ? "&" : "?") + "lang=" + encodeURIComponent(I18N.lang);
  const resp = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  return resp.json();
}

function stamp(data) {
  if (data && typeof data.generated_at === "number") skew = data.generated_at - Date.now() / 1000;
  const el = document.getElementById("updated");
  el.textContent = fmtTime(now(), true);
  el.title = _("Last update");
}

function pill(state) {
  return `<span class="pill ${esc(state)}">${esc(stateWord(state))}</span>`;
}

function checkPill(state) {
  const cls = { ok: "up", warning: "degraded", critical: "down", unknown: "unknown" }[state] || "unknown";
  return `<span class="pill ${cls}">${esc(checkWord(state))}</span>`;
}

function countsBlock(counts, total) {
  const parts = STATES.filter((s) => counts[s] || s === "down" || s === "up").map(
    (s) => `<div class="count ${s}" data-state="${s}"><b>${fmtInt(counts[s] || 0)}</b>${esc(stateWord(s))}</div>`,
  );
  parts.push(`<div class="count"><b>${fmtInt(total)}</b>${esc(ngettext("site", "sites", total))}</div>`);
  return `<div class="counts">${parts.join("")}</div>`;
}

// A battery drawn in SVG: emoji are missing from the fonts of many wall-screen machines.
function batteryIcon(level = 0.5) {
  const w = Math.max(0, Math.min(1, level)) * 12;
  return `<svg class="icon battery" viewBox="0 0 18 10" aria-hidden="true"><rect x="0.5" y="0.5" width="15" height="9" rx="1.5" fill="none" stroke="currentColor"/><rect x="16" y="3" width="1.6" height="4" fill="currentColor"/><rect x="2" y="2" width="${w.toFixed(1)}" height="6" fill="currentColor"/></svg>`;
}

function siteLink(id, name) {
  return `<a class="site-link" href="/status/site/${encodeURIComponent(id)}">${esc(name)}</a>`;
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
    for (const e of listOf(data, ["sites"])) {
      if (e.status && e.status !== "on_battery") continue; // recharging: no longer dispatch work
      if (e.site_id != null) out.set(e.site_id, e);
    }
    return out;
  } catch (err) {
    console.warn("time-to-dark unavailable:", err.message);
    return new Map();
  }
}

function ackedBy(a) {
  return (a.ack && a.ack.by) || null;
}

async function alerts() {
  const data = await getJSON("/api/v1/alerts");
  return listOf(data, ["alerts"]).filter((a) => (a.state ?? "firing") === "firing");
}

async function updateAlertBadge() {
  if (!features.alerts) return;
  try {
    const firing = await alerts();
    const open = firing.filter((a) => !ackedBy(a)).length;
    document.getElementById("alert-count").textContent = open ? fmtInt(open) : "";
  } catch (err) {
    console.warn("alerts unavailable:", err.message);
  }
}

// -- the province map -------------------------------------------------------------------------------

function hull(points) {
  // Andrew's monotone chain; points as [x, y]
  const pts = points.slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (pts.length < 3) return pts;
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower = [];
  for (const p of pts) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper = [];
  for (const p of pts.reverse()) {
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], p) <= 0) upper.pop();
    upper.push(p);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

function areaPath(points) {
  const h = hull(points);
  if (!h.length) return "";
  return "M" + h.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join("L") + "Z";
}

function projection(sites, width, padRight) {
  const lats = sites.map((s) => s.lat);
  const lons = sites.map((s) => s.lon);
  const [minLat, maxLat, minLon, maxLon] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
  const k = Math.cos((((minLat + maxLat) / 2) * Math.PI) / 180); // a degree of longitude is shorter
  const spanX = Math.max((maxLon - minLon) * k, 0.02);
  const spanY = Math.max(maxLat - minLat, 0.02);
  const pad = 50;
  const room = width - pad - padRight;
  const scale = Math.min(room / spanX, (1.4 * width) / spanY);
  const height = Math.round(spanY * scale + 2 * pad);
  const offX = pad + (room - spanX * scale) / 2;
  return {
    width,
    height,
    xy: (s) => [offX + (s.lon - minLon) * k * scale, pad + (maxLat - s.lat) * scale],
  };
}

function mapSvg(data) {
  const sites = data.sites;
  if (!sites.length) return `<p class="muted">${esc(_("No site has coordinates (location) in the configuration."))}</p>`;
  // a phone gets a smaller drawing space, so markers and names come out larger on its screen
  const narrow = main.clientWidth < 700;
  // site names are written to the right of their markers; a phone names only the sites down
  const p = projection(sites, narrow ? 560 : 1000, narrow ? 120 : 170);
  const at = new Map(sites.map((s) => [s.id, p.xy(s)]));
  const byDistrict = new Map();
  for (const s of sites) {
    if (!byDistrict.has(s.district)) byDistrict.set(s.district, []);
    byDistrict.get(s.district).push(at.get(s.id));
  }
  const districtState = new Map(data.districts.map((d) => [d.id, d]));
  let areas = "";
  let labels = "";
  for (const [id, pts] of byDistrict) {
    const d = districtState.get(id) || { name: id, state: "unknown" };
    areas += `<path class="district state-${esc(d.state)}" data-district="${esc(id)}" d="${areaPath(pts)}"/>`;
    const top = pts.reduce((a, b) => (b[1] < a[1] ? b : a));
    const cx = pts.reduce((a, b) => a + b[0], 0) / pts.length;
    labels += `<text class="district-label" x="${cx.toFixed(1)}" y="${(top[1] - 22).toFixed(1)}">${esc(d.name)}</text>`;
  }
  let cuts = "";
  for (const o of data.outages) {
    const ids = [o.root.split(":")[0], ...o.sites].filter((id) => at.has(id));
    if (ids.length < 2) continue;
    const pts = ids.map((id) => at.get(id));
    const cx = pts.reduce((a, b) => a + b[0], 0) / pts.length;
    const bottom = Math.max(...pts.map((q) => q[1]));
    const text = ngettext("{n} site cut off behind {name}", "{n} sites cut off behind {name}", o.sites.length, { name: o.name });
    cuts += `<g class="cutoff" data-root="${esc(o.root)}"><path d="${areaPath(pts)}"/><text x="${cx.toFixed(1)}" y="${(bottom + 36).toFixed(1)}">${esc(text)}</text></g>`;
  }
  let lines = "";
  for (const l of data.lines) {
    const a = at.get(l.from);
    const b = at.get(l.to);
    lines += `<line class="uplink link-${esc(l.state)}" data-from="${esc(l.from)}" data-to="${esc(l.to)}" x1="${a[0].toFixed(1)}" y1="${a[1].toFixed(1)}" x2="${b[0].toFixed(1)}" y2="${b[1].toFixed(1)}"/>`;
  }
  let markers = "";
  let names = "";
  const fed = new Set(data.lines.map((l) => l.to));
  // the worst drawn last, on top
  const order = { up: 0, unknown: 1, degraded: 2, unreachable: 3, down: 4 };
  for (const s of sites.slice().sort((a, b) => (order[a.state] ?? 0) - (order[b.state] ?? 0) || a.hub - b.hub)) {
    const [x, y] = at.get(s.id);
    const r = s.hub ? 11 : 7;
    const shape = s.hub
      ? `<rect class="dot" x="${(x - r).toFixed(1)}" y="${(y - r).toFixed(1)}" width="${2 * r}" height="${2 * r}" rx="3"/>`
      : `<circle class="dot" cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="${r}"/>`;
    const ring = s.priority === "critical" ? `<circle class="ring" cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="${r + 5}"/>` : "";
    const battery = s.on_battery
      ? `<g class="on-battery" transform="translate(${(x + r + 2).toFixed(1)},${(y - r - 8).toFixed(1)})"><rect width="15" height="9" rx="1.5"/><rect x="15.5" y="2.5" width="2" height="4"/></g>`
      : "";
    const label = `${s.name}: ${stateWord(s.state)}`;
    const hit = `<circle class="hit" cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="${r + 7}"/>`;
    markers += `<a class="marker state-${esc(s.state)}" data-site="${esc(s.id)}" data-state="${esc(s.state)}" href="/status/site/${encodeURIComponent(s.id)}" aria-label="${esc(label)}">${hit}${ring}${shape}${battery}</a>`;
    if ((s.hub && !fed.has(s.id) && !narrow) || s.state === "down") {
      names += `<text class="site-label" x="${(x + r + 5).toFixed(1)}" y="${(y + 5).toFixed(1)}">${esc(s.name)}</text>`;
    }
  }
  const mapLabel = _("Province map");
  const svg = `<svg id="map" class="map${narrow ? " narrow" : ""}" viewBox="0 0 ${p.width} ${p.height}" role="img" aria-label="${esc(mapLabel)}">
    <g class="areas">${areas}</g><g class="cuts">${cuts}</g><g class="lines">${lines}</g>
    <g class="labels">${labels}${names}</g><g class="markers">${markers}</g></svg>`;
  const legend = STATES.map((s) => `<span><span class="dot ${s}"></span>${esc(stateWord(s))}</span>`).join("");
  const extra =
    `<span><svg class="icon" viewBox="0 0 24 10"><line class="uplink link-down" x1="1" y1="5" x2="23" y2="5"/></svg>${esc(_("failed uplink"))}</span>` +
    `<span><svg class="icon" viewBox="0 0 14 14"><rect class="legend-hub" x="1" y="1" width="12" height="12" rx="3"/></svg>${esc(_("hub"))}</span>` +
    `<span><span class="legend-cut"></span>${esc(_("cut off area"))}</span>`;
  const unplaced = data.unplaced.length
    ? `<p class="muted">${esc(ngettext("{n} site has no coordinates and is not drawn.", "{n} sites have no coordinates and are not drawn.", data.unplaced.length))}</p>`
    : "";
  const sig = esc(mapSignature(data));
  return `<div class="map-wrap" data-sig="${sig}">${svg}<div id="maptip" class="maptip" hidden></div></div><div class="legend">${legend}${extra}</div>${unplaced}`;
}

// What the map is drawn from, besides states: while it stays the same, a refresh patches the drawn
// map in place instead of replacing it, so a marker under the pointer or being clicked stays put.
function mapSignature(data) {
  return JSON.stringify([I18N.lang, main.clientWidth < 700, data.sites.map((s) => [s.id, s.lat, s.lon, s.hub]), data.lines.map((l) => l.via + ">" + l.to)]);
}

function placeMap(old, data) {
  const fresh = document.createElement("div");
  fresh.innerHTML = mapSvg(data);
  const wrap = fresh.querySelector(".map-wrap");
  if (old && wrap && old.dataset.sig === wrap.dataset.sig) {
    const svgOld = old.querySelector("svg.map");
    const svgNew = wrap.querySelector("svg.map");
    for (const group of ["areas", "cuts", "lines", "labels"]) {
      svgOld.querySelector(`g.${group}`).replaceWith(svgNew.querySelector(`g.${group}`));
    }
    const current = new Map([...svgOld.querySelectorAll(".marker")].map((m) => [m.dataset.site, m]));
    const layer = svgOld.querySelector("g.markers");
    for (const m of [...svgNew.querySelectorAll(".marker")]) {
      const was = current.get(m.dataset.site);
      if (was && was.outerHTML === m.outerHTML) layer.appendChild(was); // same drawing, same node
      else {
        if (was) was.remove();
        layer.appendChild(m);
      }
    }
    fresh.querySelector(".map-wrap").replaceWith(old);
    old._data = data;
  }
  return fresh;
}

function wireMap(data) {
  const wrap = main.querySelector(".map-wrap");
  if (!wrap) return;
  wrap._data = data;
  if (wrap._wired) return;
  wrap._wired = true;
  const tip = wrap.querySelector("#maptip");
  const show = (ev) => {
    const marker = ev.target.closest(".marker");
    if (!marker) return;
    const s = wrap._data.sites.find((site) => site.id === marker.dataset.site);
    if (!s) return;
    tip.innerHTML = `<b>${esc(s.name)}</b> ${pill(s.state)}<div>${esc(s.reason)}</div><div class="sub">${esc(_("in this state for {duration}", { duration: age(s.since) }))}</div>`;
    tip.hidden = false;
    const box = wrap.getBoundingClientRect();
    const x = ev.clientX - box.left;
    const y = ev.clientY - box.top;
    tip.style.left = `${Math.min(x + 16, box.width - tip.offsetWidth - 8)}px`;
    tip.style.top = `${y + 16 + tip.offsetHeight > box.height ? y - tip.offsetHeight - 12 : y + 16}px`;
  };
  wrap.addEventListener("mouseover", show);
  wrap.addEventListener("mousemove", show);
  wrap.addEventListener("mouseout", (ev) => {
    if (!ev.relatedTarget || !ev.relatedTarget.closest || !ev.relatedTarget.closest(".marker")) tip.hidden = true;
  });
}

// -- views -------------------------------------------------------------------------------------------

async function overview() {
  const [data, map] = await Promise.all([getJSON("/api/v1/status/overview"), getJSON("/api/v1/status/map")]);
  stamp(data);
  features = data.features || {};
  const p = data.province;
  let html = `<h1>${esc(p.name)} ${pill(p.state)}</h1>${countsBlock(p.counts, p.total)}`;
  if (data.on_battery) {
    const text = ngettext("{n} site on battery", "{n} sites on battery", data.on_battery);
    html += `<p class="notice">${batteryIcon(0.4)} <a href="/status/dispatch">${esc(text)}</a>: ${esc(_("generator dispatch list"))}</p>`;
  }
  html += `<div class="overview"><section class="panel map-panel"><h2>${esc(_("Map"))}</h2><div id="map-slot"></div></section><div class="side">`;
  if (map.outages.length) {
    html += `<section class="panel outages"><h2>${esc(_("Cut off behind a failed upstream"))}</h2><ul>`;
    for (const o of map.outages) {
      const n = o.sites.length;
      const root = o.root.split(":")[0];
      html += `<li data-root="${esc(o.root)}">${siteLink(root, o.name)} ${pill(o.state)}
        <div>${esc(ngettext("{n} site cut off", "{n} sites cut off", n))} · ${esc(_("for {duration}", { duration: age(o.since) }))}</div>
        <div class="sub">${esc(o.reason)}</div></li>`;
    }
    html += `</ul></section>`;
  }
  html += `<section class="panel"><h2>${esc(_("Districts"))}</h2><div class="grid">`;
  for (const d of data.districts) {
    const c = d.counts;
    const mini = STATES.filter((s) => c[s]).map((s) => `<span><span class="dot ${s}"></span>${fmtInt(c[s])} ${esc(stateWord(s))}</span>`);
    if (d.on_battery) mini.push(`<span class="on-battery-count" title="${esc(_("on battery"))}">${batteryIcon(0.4)} ${fmtInt(d.on_battery)}</span>`);
    html += `<a class="card state-${esc(d.state)}" data-district="${esc(d.id)}" href="/status/district/${encodeURIComponent(d.id)}">
      <h3>${esc(d.name)}</h3><div class="mini">${mini.join("")}</div></a>`;
  }
  html += `</div></section></div></div>`;
  const mapNodes = placeMap(main.querySelector(".map-wrap"), map);
  main.innerHTML = html;
  main.querySelector("#map-slot").replaceWith(...mapNodes.childNodes);
  wireMap(map);
  document.getElementById("battery-count").textContent = data.on_battery ? fmtInt(data.on_battery) : "";
  document.getElementById("province").textContent = p.name || "uptimewatch";
  document.title = `${p.name} — uptimewatch`;
}

function powerCell(power, ttd) {
  if (!power) return "–";
  const parts = [];
  if (power.on_battery) parts.push(`<b class="on-battery-word">${batteryIcon(power.charge_percent == null ? 0.5 : power.charge_percent / 100)} ${esc(_("on battery"))}</b>`);
  else if (power.on_battery === false) parts.push(esc(sourceWord(power.source && power.source !== "battery" ? power.source : "mains")));
  else parts.push(`<span class="muted">${esc(_("unknown"))}</span>`);
  if (ttd && ttd.seconds != null) parts.push(`<span class="ttd">${esc(_("{duration} to dark", { duration: fmtDuration(ttd.seconds) }))}</span>`);
  else if (power.battery_minutes != null) parts.push(esc(_("{duration} left", { duration: fmtDuration(power.battery_minutes * 60) })));
  if (power.charge_percent != null) parts.push(fmtPercent(power.charge_percent));
  return parts.join("<br>");
}

function linksCell(links) {
  if (!links || !links.length) return "–";
  return links
    .map((l) => {
      const bits = [];
      if (l.rx_level_dbm != null) bits.push(fmtUnit(l.rx_level_dbm, "dBm", 1));
      if (l.snr_db != null) bits.push(`SNR ${fmtUnit(l.snr_db, "dB", 1)}`);
      if (l.oper_up === false) bits.push(`<b>${esc(_("link down"))}</b>`);
      return `${esc(l.name)}: ${bits.join(", ") || "–"}`;
    })
    .join("<br>");
}

async function district(id) {
  const [data, ttd] = await Promise.all([getJSON(`/api/v1/status/districts/${encodeURIComponent(id)}`), timeToDark()]);
  stamp(data);
  let html = `<p class="crumbs"><a href="/">← ${esc(_("Overview"))}</a></p><h1>${esc(data.name)} ${pill(data.state)}</h1>`;
  const total = Object.values(data.counts).reduce((a, b) => a + b, 0);
  html += countsBlock(data.counts, total);
  const heads = [_("Site"), _("State"), _("Reason"), _("In state"), _("Power"), _("Links")];
  html += `<table class="list"><thead><tr>${heads.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>`;
  for (const s of data.sites) {
    const prio = s.priority !== "normal" ? " · " + esc(priorityWord(s.priority)) : "";
    html += `<tr class="state-${esc(s.state)}" data-site="${esc(s.id)}" data-state="${esc(s.state)}">
      <td><span class="site-name">${siteLink(s.id, s.name)}</span><div class="sub">${esc(s.commune_name ?? "")} · ${esc(s.carrier_name)}${prio}</div></td>
      <td data-label="${esc(heads[1])}">${pill(s.state)}</td>
      <td data-label="${esc(heads[2])}">${esc(s.reason)}</td>
      <td data-label="${esc(heads[3])}" data-since="${s.since ?? ""}">${age(s.since)}</td>
      <td data-label="${esc(heads[4])}">${powerCell(s.power, ttd.get(s.id))}</td>
      <td data-label="${esc(heads[5])}">${linksCell(s.links)}</td></tr>`;
  }
  html += `</tbody></table>`;
  main.innerHTML = html;
  document.title = `${data.name} — uptimewatch`;
}

async function dispatch() {
  const [data, ttd] = await Promise.all([getJSON("/api/v1/status/dispatch"), timeToDark()]);
  stamp(data);
  const rows = data.sites.map((s) => ({ ...s, ttd: ttd.get(s.id) }));
  const key = (s) => (s.ttd && s.ttd.seconds != null ? s.ttd.seconds : s.power.battery_minutes != null ? s.power.battery_minutes * 60 : Infinity);
  rows.sort((a, b) => key(a) - key(b));
  const ranked = ttd.size ? _("ranked by time to dark") : _("ranked by battery minutes left");
  let html = `<h1>${esc(_("On battery: generator dispatch list"))}</h1><p class="muted">${esc(ngettext("{n} site", "{n} sites", rows.length))}, ${esc(ranked)}.</p>`;
  if (!rows.length) {
    main.innerHTML = html + `<p class="notice" data-empty="dispatch">${esc(_("No site is on battery."))}</p>`;
    document.getElementById("battery-count").textContent = "";
    return;
  }
  const heads = ["#", _("Site"), _("Left"), _("Charge"), _("On battery for"), _("State")];
  html += `<table class="list"><thead><tr>${heads.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>`;
  rows.forEach((s, i) => {
    const left = key(s);
    const urgent = left < 3600 ? " urgent" : "";
    const basis = s.ttd && s.ttd.reason ? `<div class="sub">${esc(methodWord(s.ttd.method))}: ${esc(s.ttd.reason)}</div>` : "";
    const since = s.power.on_battery_since ?? (s.ttd ? s.ttd.on_battery_since : null);
    html += `<tr class="state-${esc(s.state)}" data-site="${esc(s.id)}">
      <td>${fmtInt(i + 1)}</td>
      <td><span class="site-name">${siteLink(s.id, s.name)}</span><div class="sub">${esc(s.district_name)} · ${esc(s.carrier_name)}</div></td>
      <td data-label="${esc(heads[2])}"><span class="ttd${urgent}">${fmtDuration(left)}</span>${basis}</td>
      <td data-label="${esc(heads[3])}">${fmtPercent(s.power.charge_percent)}</td>
      <td data-label="${esc(heads[4])}" class="on-battery-for" data-since="${since ?? ""}">${age(since)}</td>
      <td data-label="${esc(heads[5])}">${pill(s.state)}</td></tr>`;
  });
  main.innerHTML = html + `</tbody></table>`;
  document.getElementById("battery-count").textContent = fmtInt(rows.length);
}

// -- the site page -------------------------------------------------------------------------------------

function niceTicks(lo, hi, count = 4) {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return { ticks: out, step };
}

// A small line chart: points [[t, value]], value null for a gap. Times on x, value on y.
function lineChart({ name, title, points, unit, digits = 0, yMin = null, yMax = null, ref = null, refLabel = "", start = null, end = null, area = false }) {
  const W = 360;
  const H = 150;
  const L = 44;
  const R = 8;
  const T = 10;
  const B = 24;
  const vals = points.map((p) => p[1]).filter((v) => v != null);
  if (!vals.length) return `<figure class="chart empty" data-chart="${esc(name)}"><figcaption>${esc(title)}</figcaption><p class="muted">${esc(_("No samples yet."))}</p></figure>`;
  let lo = yMin ?? Math.min(...vals, ...(ref != null ? [ref] : []));
  let hi = yMax ?? Math.max(...vals, ...(ref != null ? [ref] : []));
  if (hi - lo < 1e-9) {
    hi += 1;
    lo = yMin ?? lo - 1;
  }
  const { ticks, step } = niceTicks(lo, hi);
  const tickDigits = Math.max(0, Math.min(3, -Math.floor(Math.log10(step) + 1e-9)));
  lo = Math.min(lo, ticks[0]);
  hi = Math.max(hi, ticks[ticks.length - 1]);
  const t0 = start ?? points[0][0];
  const t1 = Math.max(end ?? points[points.length - 1][0], t0 + 1);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  let d = "";
  let pen = false;
  let fillPath = "";
  let run = [];
  const flush = () => {
    if (area && run.length) fillPath += `M${x(run[0][0]).toFixed(1)},${y(lo).toFixed(1)}` + run.map((p) => `L${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("") + `L${x(run[run.length - 1][0]).toFixed(1)},${y(lo).toFixed(1)}Z`;
    run = [];
  };
  for (const [t, v] of points) {
    if (v == null) {
      pen = false;
      flush();
      continue;
    }
    d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
    run.push([t, v]);
  }
  flush();
  const grid = ticks
    .map((v) => `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}"/><text class="axis" x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${esc(fmtNumber(v, tickDigits))}</text>`)
    .join("");
  const refLine =
    ref != null
      ? `<line class="ref" x1="${L}" x2="${W - R}" y1="${y(ref).toFixed(1)}" y2="${y(ref).toFixed(1)}"/><text class="ref-label" x="${W - R - 4}" y="${(y(ref) - 5).toFixed(1)}" text-anchor="end">${esc(refLabel)}</text>`
      : "";
  const last = vals[vals.length - 1];
  // small values keep two significant digits (0.042 ms, not 0.0 ms)
  const lastDigits = last !== 0 && Math.abs(last) < 1 ? Math.min(3, 1 - Math.floor(Math.log10(Math.abs(last)))) : digits;
  const times = `<text class="axis" x="${L}" y="${H - 6}">${esc(fmtDateTime(t0))}</text><text class="axis" x="${W - R}" y="${H - 6}" text-anchor="end">${esc(fmtDateTime(t1))}</text>`;
  return `<figure class="chart" data-chart="${esc(name)}"><figcaption>${esc(title)} <b>${esc(fmtUnit(last, unit, lastDigits))}</b></figcaption>
    <svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">${grid}${refLine}${fillPath ? `<path class="area" d="${fillPath}"/>` : ""}<path class="line" d="${d}"/>${times}</svg></figure>`;
}

// One bar of states over [start, end]: coloured spans, "no data" where the ledger has none.
function stateBar(tl, start, step, name, label) {
  const W = 1000;
  const H = 40;
  const end = tl.end;
  const x = (t) => ((Math.max(start, Math.min(end, t)) - start) / (end - start)) * W;
  let bars = "";
  for (const s of tl.spans) {
    const a = x(s.start);
    const b = x(s.end ?? end);
    if (b - a <= 0) continue;
    const tip = `${stateWord(s.state)} · ${fmtDateTime(s.start)} – ${s.end == null ? _("now") : fmtDateTime(s.end)} (${fmtDuration((s.end ?? end) - s.start)}): ${s.reason}`;
    bars += `<rect class="span state-${esc(s.state)}" data-state="${esc(s.state)}" x="${a.toFixed(2)}" y="0" width="${Math.max(b - a, 3).toFixed(2)}" height="${H}"><title>${esc(tip)}</title></rect>`;
  }
  let ticks = "";
  let labels = "";
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) {
    const tx = x(t);
    ticks += `<line class="tick" x1="${tx.toFixed(1)}" x2="${tx.toFixed(1)}" y1="0" y2="${H}"/>`;
    if (tx > 20 && tx < W - 20) labels += `<span style="left:${((tx / W) * 100).toFixed(2)}%">${esc(fmtTime(t))}</span>`;
  }
  return `<div class="bar-row"><div class="bar-label">${esc(label)}</div><div class="bar-body">
    <svg class="timeline" data-chart="${name}" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" aria-label="${esc(label)}"><rect class="nodata" x="0" y="0" width="${W}" height="${H}"/>${bars}${ticks}</svg>
    <div class="timeline-axis">${labels}</div></div></div>`;
}

function timeline(tl) {
  const legend = STATES.map((s) => `<span><span class="dot ${s}"></span>${esc(stateWord(s))}</span>`).join("") + `<span><span class="legend-nodata"></span>${esc(_("no data"))}</span>`;
  const changes = tl.spans
    .slice()
    .reverse()
    .slice(0, 8)
    .map((s) => `<tr><td>${esc(fmtDateTime(s.start))}</td><td>${pill(s.state)}</td><td>${esc(fmtDuration((s.end ?? tl.end) - s.start))}</td><td>${esc(s.reason)}</td></tr>`)
    .join("");
  const heads = [_("From"), _("State"), _("For"), _("Reason")].map((h) => `<th>${esc(h)}</th>`).join("");
  const day = stateBar(tl, tl.start, 3 * 3600, "timeline", _("24 hours"));
  const hour = stateBar(tl, tl.end - 3600, 600, "timeline-hour", _("last hour"));
  return `${day}${hour}<div class="legend">${legend}</div>
    ${changes ? `<h3>${esc(_("Latest changes"))}</h3><table class="list compact"><thead><tr>${heads}</tr></thead><tbody>${changes}</tbody></table>` : ""}`;
}

function powerPanel(site) {
  const pw = site.power;
  if (!pw) return "";
  const ttd = pw.time_to_dark;
  const rows = [];
  const src = pw.on_battery ? "battery" : pw.source || (pw.on_battery === false ? "mains" : null);
  rows.push([_("Source"), src ? `${pw.on_battery ? batteryIcon((pw.charge_percent ?? 50) / 100) + " " : ""}${esc(sourceWord(src))}` : `<span class="muted">${esc(_("unknown"))}</span>`]);
  if (pw.on_battery) rows.push([_("On battery for"), `<span class="on-battery-for" data-since="${pw.on_battery_since ?? ""}">${age(pw.on_battery_since)}</span>`]);
  rows.push([_("Charge"), esc(fmtPercent(pw.charge_percent))]);
  rows.push([_("Battery voltage"), esc(fmtUnit(pw.voltage_volts, "V", 1))]);
  if (pw.battery_minutes != null) rows.push([_("The plant's own figure"), esc(_("{duration} left", { duration: fmtDuration(pw.battery_minutes * 60) }))]);
  let ttdHtml = "";
  if (ttd && ttd.status === "on_battery") {
    const urgent = ttd.seconds != null && ttd.seconds < 3600 ? " urgent" : "";
    ttdHtml = `<div class="ttd-box"><div class="label">${esc(_("Time to dark"))}</div><div class="ttd big${urgent}">${esc(fmtDuration(ttd.seconds))}</div>
      <div class="sub">${esc(methodWord(ttd.method))} · ${esc(confidenceWord(ttd.confidence))}${ttd.dark_at ? " · " + esc(_("dark at {time}", { time: fmtDateTime(ttd.dark_at) })) : ""}</div>
      <p class="reasoning">${esc(ttd.reason)}</p></div>`;
  } else if (ttd && ttd.status === "recharging") {
    ttdHtml = `<div class="ttd-box"><div class="label">${esc(_("Recharging"))}</div><p class="reasoning">${esc(ttd.reason)}</p></div>`;
  }
  const table = rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("");
  const spells = pw.spells || [];
  let spellHtml = `<h3>${esc(_("On-battery spells"))}</h3>`;
  if (!spells.length) spellHtml += `<p class="muted">${esc(_("None recorded."))}</p>`;
  else {
    const heads = [_("From"), _("Until"), _("For")].map((h) => `<th>${esc(h)}</th>`).join("");
    spellHtml += `<table class="list compact spells"><thead><tr>${heads}</tr></thead><tbody>${spells
      .slice()
      .reverse()
      .map((s) => `<tr${s.end == null ? ' class="ongoing"' : ""}><td>${esc(fmtDateTime(s.start))}</td><td>${s.end == null ? esc(_("still on battery")) : esc(fmtDateTime(s.end))}</td><td>${esc(fmtDuration((s.end ?? now()) - s.start))}</td></tr>`)
      .join("")}</tbody></table>`;
  }
  return `<section class="panel power" data-panel="power"><h2>${esc(_("Power"))}</h2>${ttdHtml}<table class="facts">${table}</table>${spellHtml}</section>`;
}

function chartsPanel(site) {
  const out = [];
  for (const d of site.charts.discharges) {
    const current = d.ended_at == null;
    const when = current ? _("current discharge, since {time}", { time: fmtDateTime(d.started_at) }) : _("last discharge, {start} – {end}", { start: fmtDateTime(d.started_at), end: fmtDateTime(d.ended_at) });
    out.push(`<p class="chart-note">${esc(when)}</p>`);
    out.push(lineChart({ name: "charge", title: _("Battery charge"), unit: "%", points: d.points.map((p) => [p[0], p[1]]), yMin: 0, yMax: 100, start: d.started_at, end: d.ended_at ?? undefined, area: true }));
    out.push(lineChart({ name: "voltage", title: _("Battery voltage"), unit: "V", digits: 1, points: d.points.map((p) => [p[0], p[2]]), ref: d.cutoff_voltage, refLabel: d.cutoff_voltage != null ? _("cut-off {volts}", { volts: fmtUnit(d.cutoff_voltage, "V", 1) }) : "", start: d.started_at, end: d.ended_at ?? undefined }));
  }
  const names = new Map(site.devices.map((d) => [d.id, d.name]));
  for (const s of site.charts.ping) {
    const who = names.get(s.device) || s.device;
    out.push(lineChart({ name: "rtt", title: _("Round-trip time, {device}", { device: who }), unit: "ms", digits: 1, points: s.points.map((p) => [p[0], p[1]]), yMin: 0 }));
    out.push(lineChart({ name: "loss", title: _("Packet loss, {device}", { device: who }), unit: "%", points: s.points.map((p) => [p[0], p[2] == null ? null : p[2] * 100]), yMin: 0, yMax: 100, area: true }));
  }
  if (!out.length) return "";
  return `<section class="panel charts" data-panel="charts"><h2>${esc(_("Recent samples"))}</h2><div class="chart-grid">${out.join("")}</div></section>`;
}

function devicesPanel(site) {
  let html = `<section class="panel devices" data-panel="devices"><h2>${esc(_("Devices and checks"))}</h2>`;
  for (const d of site.devices) {
    const reach = d.reachable === false ? ` <span class="tag bad">${esc(_("not answering"))}</span>` : "";
    html += `<div class="device state-${esc(d.state)}" data-device="${esc(d.id)}"><div class="device-head">${checkPill(d.state)} <b>${esc(d.name)}</b> <span class="sub">${esc(roleWord(d.role))} · ${esc(d.address)}</span>${reach}
      <span class="in-state" data-since="${d.since ?? ""}">${age(d.since)}</span></div>
      <table class="checks"><tbody>${d.checks
        .map((c) => {
          const why = _("not yet confirmed by repeated results");
          const soft = c.hard ? "" : ` <span class="tag" title="${esc(why)}">${esc(_("unconfirmed"))}</span>`;
          return `<tr class="check-${esc(c.state)}" data-check="${esc(c.name)}"><td>${checkPill(c.state)}</td><td>${esc(checkName(c.name))}${soft}</td><td>${esc(c.reason)}</td><td class="num" data-since="${c.since ?? ""}">${age(c.since)}</td></tr>`;
        })
        .join("")}</tbody></table></div>`;
  }
  return html + `</section>`;
}

function linksPanel(site) {
  if (!site.links.length) return "";
  const heads = [_("Link"), _("State"), _("Receive level"), _("Transmit level"), _("SNR"), _("Radio")].map((h) => `<th>${esc(h)}</th>`).join("");
  const rows = site.links
    .map((l) => {
      const radio = l.oper_up == null ? "–" : l.oper_up ? esc(_("up")) : `<b class="bad">${esc(_("down"))}</b>`;
      const level = (v, check) => `<span class="level check-${esc(l.checks[check] || "ok")}">${esc(fmtUnit(v, "dBm", 1))}</span>`;
      return `<tr data-link="${esc(l.device)}"><td>${esc(l.name)}</td><td>${checkPill(l.state)}</td><td>${level(l.rx_level_dbm, "link.rx_level")}</td><td>${esc(fmtUnit(l.tx_level_dbm, "dBm", 1))}</td><td><span class="level check-${esc(l.checks["link.snr"] || "ok")}">${esc(fmtUnit(l.snr_db, "dB", 1))}</span></td><td>${radio}</td></tr>`;
    })
    .join("");
  return `<section class="panel links" data-panel="links"><h2>${esc(_("Link levels"))}</h2><table class="list compact"><thead><tr>${heads}</tr></thead><tbody>${rows}</tbody></table></section>`;
}

function topologyPanel(site) {
  if (!site.upstream.length && !site.downstream.length) return "";
  const linkWord = { up: _("working"), down: _("failed"), cut_off: _("cut off further up"), unknown: _("unknown") };
  let html = `<section class="panel topology" data-panel="topology"><h2>${esc(_("Topology"))}</h2>`;
  if (site.upstream.length) {
    html += `<h3>${esc(_("Reached through"))}</h3><ul>${site.upstream
      .map((u) => `<li class="link-${esc(u.state)}">${siteLink(u.site, u.name)}${u.device_name && u.ref.includes(":") ? " · " + esc(u.device_name) : ""} — ${esc(linkWord[u.state] || u.state)}</li>`)
      .join("")}</ul>`;
  }
  if (site.downstream.length) {
    html += `<h3>${esc(ngettext("{n} site behind this one", "{n} sites behind this one", site.downstream.length))}</h3><ul class="columns">${site.downstream
      .map((s) => `<li>${pill(s.state)} ${siteLink(s.id, s.name)}</li>`)
      .join("")}</ul>`;
  }
  return html + `</section>`;
}

async function sitePage(id) {
  const site = await getJSON(`/api/v1/status/sites/${encodeURIComponent(id)}`);
  stamp(site);
  const sub = [site.commune_name, site.district_name, site.carrier_name].filter(Boolean).map(esc);
  if (site.priority !== "normal") sub.push(esc(priorityWord(site.priority)));
  let html = `<p class="crumbs"><a href="/">← ${esc(_("Overview"))}</a> · <a href="/status/district/${encodeURIComponent(site.district)}">${esc(site.district_name)}</a></p>
    <h1 data-site-page="${esc(site.id)}" data-state="${esc(site.state)}">${esc(site.name)} ${pill(site.state)}</h1>
    <p class="sub">${sub.join(" · ")}</p>
    <div class="headline state-${esc(site.state)}"><div class="reason">${esc(site.reason)}</div><div class="sub">${esc(_("in this state for {duration}", { duration: age(site.since) }))}${site.since ? " · " + esc(_("since {time}", { time: fmtDateTime(site.since) })) : ""}${site.rechecking ? " · " + esc(_("re-checking after the upstream recovered")) : ""}</div></div>`;
  if (site.cut_off_by.length) {
    const roots = site.cut_off_by.map((r) => siteLink(r.split(":")[0], (site.upstream.find((u) => u.ref === r) || {}).name || r.split(":")[0])).join(", ");
    html += `<p class="notice cut">${esc(_("Cut off behind"))} ${roots}: ${esc(_("we cannot tell whether this site is on the air."))}</p>`;
  }
  html += `<section class="panel" data-panel="timeline"><h2>${esc(_("The last 24 hours"))}</h2>${timeline(site.timeline)}</section>`;
  html += `<div class="site-grid"><div>${devicesPanel(site)}${linksPanel(site)}${topologyPanel(site)}</div><div>${powerPanel(site)}${chartsPanel(site)}</div></div>`;
  main.innerHTML = html;
  document.title = `${site.name} — uptimewatch`;
}

async function alertsView() {
  if (!features.alerts) {
    main.innerHTML = `<h1>${esc(_("Alerts"))}</h1><p class="notice">${esc(_("This daemon does not evaluate alerts."))}</p>`;
    return;
  }
  const firing = await alerts();
  stamp(null);
  const rank = { critical: 0, warning: 1, info: 2 };
  firing.sort((a, b) => (rank[a.severity] ?? 3) - (rank[b.severity] ?? 3));
  let html = `<h1>${esc(_("Active alerts"))}</h1>`;
  if (!firing.length) {
    main.innerHTML = html + `<p class="notice" data-empty="alerts">${esc(_("No alert is firing."))}</p>`;
    return;
  }
  const severityWord = { critical: _("critical"), warning: _("warning"), info: _("info") };
  const heads = [_("Alert"), _("Severity"), _("Since"), ""];
  html += `<table class="list"><thead><tr>${heads.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>`;
  for (const a of firing) {
    const id = a.id;
    const by = ackedBy(a);
    const since = a.fired_at ?? a.active_since;
    const action = by
      ? `<span class="acked" data-acked="1">${esc(_("acknowledged by {name}", { name: by }))}</span>`
      : `<button class="primary ack" data-id="${esc(id)}">${esc(_("Acknowledge"))}</button>`;
    const site = (a.labels || {}).site;
    html += `<tr class="state-${a.severity === "critical" ? "down" : "degraded"}" data-alert="${esc(id)}">
      <td><span class="site-name">${esc(a.summary || a.name)}</span><div class="sub">${esc(a.name)}${site ? " · " + siteLink(site, site) : ""}</div></td>
      <td data-label="${esc(heads[1])}">${esc(severityWord[a.severity] || a.severity)}</td>
      <td data-label="${esc(heads[2])}" data-since="${since ?? ""}">${age(since)}</td>
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
    if (msg) msg.textContent = _("The token was refused; enter it again.");
    return askToken(id);
  }
  if (!resp.ok && msg) msg.textContent = _("Acknowledging failed: HTTP {status}", { status: resp.status });
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

// -- the page's fixed words and the language switch -------------------------------------------------

function chrome() {
  const set = (id, text) => {
    const el = document.getElementById(id);
    if (el) el.textContent = text;
  };
  document.documentElement.lang = I18N.lang;
  set("nav-overview-text", _("Overview"));
  set("nav-dispatch-text", _("On battery"));
  set("nav-alerts-text", _("Alerts"));
  set("auth-token-label", _("Token (or user:password) to acknowledge alerts"));
  set("auth-name-label", _("Your name (shown on the acknowledgement)"));
  set("auth-save", _("Save for this session"));
  set("auth-cancel", _("Cancel"));
  document.getElementById("live").title = _("live updates");
  document.getElementById("lang").setAttribute("aria-label", _("Language"));
  for (const b of document.querySelectorAll("#lang button")) b.setAttribute("aria-pressed", String(b.dataset.lang === I18N.lang));
}

async function switchLanguage(lang) {
  if (lang === I18N.lang) return;
  const catalog = await getJSON(`/api/v1/status/i18n?lang=${encodeURIComponent(lang)}`);
  I18N = catalog;
  pluralIndex = compilePlural(I18N.plural);
  document.cookie = `${LANG_COOKIE}=${encodeURIComponent(I18N.lang)}; path=/; max-age=31536000; SameSite=Lax`;
  const url = new URL(location.href);
  if (url.searchParams.has("lang")) {
    url.searchParams.set("lang", I18N.lang);
    history.replaceState(null, "", url);
  }
  chrome();
  await refresh();
}

for (const b of document.querySelectorAll("#lang button")) {
  b.addEventListener("click", () => switchLanguage(b.dataset.lang).catch((err) => console.warn("language switch failed:", err.message)));
}

// -- routing, refresh and the live stream ----------------------------------------------------------

function route() {
  const path = location.pathname.replace(/\/+$/, "") || "/";
  let m = path.match(/^\/status\/district\/([^/]+)$/);
  if (m) return ["district", () => district(decodeURIComponent(m[1]))];
  m = path.match(/^\/status\/site\/([^/]+)$/);
  if (m) return ["site", () => sitePage(decodeURIComponent(m[1]))];
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
        document.getElementById("battery-count").textContent = meta.on_battery ? fmtInt(meta.on_battery) : "";
        document.getElementById("province").textContent = meta.province.name || "uptimewatch";
      }
      await view();
      document.getElementById("nav-alerts").hidden = !features.alerts;
      await updateAlertBadge();
    } catch (err) {
      console.warn("refresh failed:", err.message);
      const note = document.createElement("p");
      note.className = "error";
      note.textContent = _("Cannot reach the daemon ({error}); retrying.", { error: err.message });
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

chrome();
refresh();
connect();
schedule();
