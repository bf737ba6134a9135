// uptime-daemon status page: one compact row per service, problems first, then follows /ws/health.
// No dependencies, no external requests; all data goes in through textContent (never as HTML).
//
// Scale (README "Status page"): /status/data is a few dozen bytes a service, so 10,000 services are
// one fetch; only the first PAGE rows of the ordered list are in the DOM ("Show more" adds more);
// groups whose services are all up fold to one row; a row's figures are fetched when it is opened
// (/status/service/NAME). A live change moves one row: the service leaves the sorted list and is
// put back in its place by binary search, and only the rows whose position or content changed are
// touched in the DOM.
"use strict";

const LABELS = { up: "Up", degraded: "Degraded", down: "Down", unknown: "Unknown" };
// Order of the list: down, degraded, unknown/pending, in maintenance, the folded groups, up.
const RANK = { down: 0, degraded: 1, unknown: 2, maintenance: 3, group: 4, up: 5 };
const PAGE = 100;
const MORE = 200;
const REFRESH_MS = 60000;
const BRIEF_SNAPSHOT_AFTER = 1000;
const ANNOUNCE_MS = 4000;
const numbers = new Intl.NumberFormat();

const services = new Map();   // name -> row of /status/data
const elements = new Map();   // entry key -> <li> (only entries rendered now)
const opened = new Set();     // services whose details are open
const filters = { q: "", status: "", group: "" };
let entries = [];             // the ordered list (services, and folded groups)
let limit = PAGE;
let lastPosition = null;
let socket = null;
let retry = 0;
let fetching = null;
let fetchAgain = false;
let painted = false;
let pendingAnnouncements = [];
let announceTimer = null;

// --- formatting ----------------------------------------------------------------------------------

function pct(ratio) {
  return ratio === null || ratio === undefined ? "—" : (ratio * 100).toFixed(ratio >= 0.9999 ? 2 : 3) + "%";
}

function ago(iso) {
  if (!iso) return "";
  let s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  const parts = [];
  for (const [name, size] of units) {
    if (s >= size && parts.length < 2) { parts.push(Math.floor(s / size) + name); s %= size; }
  }
  return parts.length ? parts.join(" ") : "0s";
}

function duration(seconds) {
  return ago(new Date(Date.now() - seconds * 1000).toISOString());
}

function listed(names) {
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

function plural(count, word) {
  return `${numbers.format(count)} ${word}${count === 1 ? "" : "s"}`;
}

// --- the ordered list ----------------------------------------------------------------------------

function rankOf(row) {
  return row.inMaintenance ? RANK.maintenance : RANK[row.status] ?? RANK.unknown;
}

function healthy(row) {
  return row.status === "up" && !row.inMaintenance;
}

function filtering() {
  return Boolean(filters.q || filters.status || filters.group);
}

function matches(row) {
  if (filters.group && (filters.group === "-" ? row.group : row.group !== filters.group)) return false;
  if (filters.status) {
    if (filters.status === "problems" && healthy(row)) return false;
    if (filters.status === "maintenance" && !row.inMaintenance) return false;
    if (filters.status !== "problems" && filters.status !== "maintenance" && row.status !== filters.status) return false;
  }
  if (filters.q) {
    const q = filters.q.toLowerCase();
    if (!row.service.includes(q) && !(row.group && row.group.toLowerCase().includes(q))) return false;
  }
  return true;
}

// Without a filter, a grouped service that is up is counted in its group's row, not listed.
function listedAlone(row) {
  return filtering() ? matches(row) : !row.group || !healthy(row);
}

function groupEntry(name) {
  let up = 0;
  let problems = 0;
  for (const row of services.values()) {
    if (row.group !== name) continue;
    if (healthy(row)) up += 1; else problems += 1;
  }
  return up ? { key: `group:${name}`, rank: RANK.group, group: name, up, problems, since: null, name } : null;
}

function serviceEntry(row) {
  return { key: `service:${row.service}`, rank: rankOf(row), row, since: row.since || null, name: row.service };
}

// Each status by how long: the newest change first (a service that just went down is on top),
// a service never checked last; then by name.
function compare(a, b) {
  if (a.rank !== b.rank) return a.rank - b.rank;
  if (a.since !== b.since) {
    if (a.since === null) return 1;
    if (b.since === null) return -1;
    return a.since < b.since ? 1 : -1;
  }
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function rebuild() {
  const list = [];
  const groups = new Set();
  for (const row of services.values()) {
    if (listedAlone(row)) list.push(serviceEntry(row));
    else if (!filtering() && row.group) groups.add(row.group);
  }
  for (const name of groups) {
    const entry = groupEntry(name);
    if (entry) list.push(entry);
  }
  entries = list.sort(compare);
}

function removeEntry(key) {
  const index = entries.findIndex((entry) => entry.key === key);
  if (index >= 0) entries.splice(index, 1);
}

function insertEntry(entry) {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compare(entries[mid], entry) < 0) lo = mid + 1; else hi = mid;
  }
  entries.splice(lo, 0, entry);
}

// --- rows ----------------------------------------------------------------------------------------

function setPill(pill, status) {
  pill.dataset.status = status;
  pill.querySelector(".label").textContent = LABELS[status] || status;
}

function sinceText(row) {
  return row.since ? `for ${ago(row.since)}` : "not checked yet";
}

function paintService(li, row) {
  li.dataset.status = row.status;
  li.dataset.since = row.since || "";
  li.dataset.maintenance = row.inMaintenance ? "true" : "false";
  setPill(li.querySelector(".pill"), row.status);
  const tag = li.querySelector(".group-tag");
  tag.hidden = !row.group;
  tag.textContent = row.group || "";
  const since = li.querySelector(".since");
  since.textContent = sinceText(row);
  since.title = row.since ? `since ${new Date(row.since).toLocaleString()}` : "";
  li.querySelector(".in-maintenance").hidden = !row.inMaintenance;
  const reason = li.querySelector(".reason");
  reason.hidden = !row.lastReason;
  reason.textContent = row.lastReason ? row.lastReason.replaceAll("_", " ") : "";
  li.querySelector(".held-tag").hidden = !(row.suppressedBy && row.suppressedBy.length);
}

function paintGroup(li, entry) {
  li.querySelector(".name").textContent = entry.group;
  li.querySelector(".count").textContent = `${plural(entry.up, "service")} up` +
    (entry.problems ? `, ${numbers.format(entry.problems)} listed above` : "");
  li.querySelector(".row").setAttribute("aria-label",
    `Group ${entry.group}: ${plural(entry.up, "service")} up` +
    (entry.problems ? `, ${numbers.format(entry.problems)} with problems listed above` : "") + ". Show them");
}

function elementFor(entry) {
  let li = elements.get(entry.key);
  if (li) return li;
  if (entry.row) {
    li = document.getElementById("service-template").content.firstElementChild.cloneNode(true);
    const name = entry.row.service;
    li.dataset.service = name;
    li.querySelector(".name").textContent = name;
    const button = li.querySelector(".row");
    button.id = `row-${name}`;
    button.addEventListener("click", () => toggle(name));
    paintService(li, entry.row);
    if (opened.has(name)) openDetails(li, name);
  } else {
    li = document.getElementById("group-template").content.firstElementChild.cloneNode(true);
    li.dataset.group = entry.group;
    li.querySelector(".row").addEventListener("click", () => showGroup(entry.group));
  }
  li.dataset.key = entry.key;
  elements.set(entry.key, li);
  return li;
}

// Make the DOM list the first `limit` entries, moving or creating only the rows that differ.
function reconcile() {
  const list = document.getElementById("services");
  const shown = entries.slice(0, limit);
  const wanted = new Set(shown.map((entry) => entry.key));
  for (const [key, li] of elements) {
    if (!wanted.has(key)) { li.remove(); elements.delete(key); }
  }
  let child = list.firstElementChild;
  for (const entry of shown) {
    const li = elementFor(entry);
    if (entry.group) paintGroup(li, entry);
    if (child === li) { child = child.nextElementSibling; continue; }
    // A row that moved down: take it out where it was, it is put back when its turn comes.
    if (child && child.nextElementSibling === li && wanted.has(child.dataset.key)) {
      const moved = child;
      child = li.nextElementSibling;
      moved.remove();
      continue;
    }
    list.insertBefore(li, child);
  }
  while (child) { const next = child.nextElementSibling; child.remove(); child = next; }
  const more = document.getElementById("more");
  const rest = entries.length - shown.length;
  more.hidden = rest <= 0;
  more.textContent = rest > 0 ? `Show ${numbers.format(Math.min(MORE, rest))} more (${numbers.format(rest)} not shown)` : "";
  updateShown(shown.length);
}

function updateShown(count) {
  const total = services.size;
  let text;
  if (filtering()) {
    text = entries.length === 0 ? "No service matches."
      : `${plural(entries.length, "service")} match${entries.length === 1 ? "es" : ""}` +
        (count < entries.length ? `; showing the first ${numbers.format(count)}` : "") + ".";
  } else {
    text = `${plural(total, "service")}, problems first` +
      (count < entries.length ? `; showing ${numbers.format(count)} of ${numbers.format(entries.length)} rows` : "") + ".";
  }
  const shown = document.getElementById("shown");
  if (shown.textContent !== text) shown.textContent = text;
}

// One service changed: it leaves the ordered list and goes back in its place; its group's row too.
function apply(name, patch) {
  const row = services.get(name);
  if (!row) return false;
  const before = `${row.status}|${row.since}|${row.inMaintenance}|${row.lastReason}|${(row.suppressedBy || []).join(",")}`;
  Object.assign(row, patch);
  const after = `${row.status}|${row.since}|${row.inMaintenance}|${row.lastReason}|${(row.suppressedBy || []).join(",")}`;
  if (before === after) return false;
  const key = `service:${name}`;
  removeEntry(key);
  if (listedAlone(row)) insertEntry(serviceEntry(row));
  if (row.group && !filtering()) {
    removeEntry(`group:${row.group}`);
    const group = groupEntry(row.group);
    if (group) insertEntry(group);
  }
  const li = elements.get(key);
  if (li) paintService(li, row);
  return true;
}

// --- details (fetched when a row is opened) ------------------------------------------------------

function toggle(name) {
  const li = elements.get(`service:${name}`);
  if (!li) return;
  if (opened.has(name)) {
    opened.delete(name);
    const details = li.querySelector(".details");
    if (details) details.remove();
    li.querySelector(".row").setAttribute("aria-expanded", "false");
    li.classList.remove("open");
  } else {
    opened.add(name);
    openDetails(li, name);
  }
}

function openDetails(li, name) {
  let details = li.querySelector(".details");
  if (!details) {
    details = document.getElementById("details-template").content.firstElementChild.cloneNode(true);
    details.id = `details-${name}`;
    details.setAttribute("aria-labelledby", `row-${name}`);
    li.append(details);
  }
  const button = li.querySelector(".row");
  button.setAttribute("aria-expanded", "true");
  button.setAttribute("aria-controls", details.id);
  li.classList.add("open");
  loadDetails(name);
}

async function loadDetails(name) {
  try {
    const response = await fetch(`/status/service/${encodeURIComponent(name)}`, { cache: "no-store" });
    if (!response.ok) return;
    const svc = await response.json();
    const li = elements.get(`service:${name}`);
    const details = li && li.querySelector(".details");
    if (details && opened.has(name)) renderDetails(details, svc);
  } catch (error) {
    document.getElementById("live").dataset.state = "reconnecting";
  }
}

let detailsTimer = null;
function refreshOpenDetails() {
  if (!opened.size || detailsTimer) return;
  detailsTimer = setTimeout(() => {
    detailsTimer = null;
    for (const name of opened) if (elements.has(`service:${name}`)) loadDetails(name);
  }, 250);
}

function renderDetails(details, svc) {
  details.dataset.loaded = "true";
  const note = details.querySelector(".maintenance-note");
  note.hidden = !svc.inMaintenance;
  const why = svc.maintenanceReason && svc.maintenanceReason.trim().toLowerCase() !== "maintenance" ? svc.maintenanceReason.trim() : "";
  note.querySelector(".label").textContent = svc.inMaintenance ? (why ? `Maintenance: ${why}` : "Maintenance") : "";
  setLastCheck(details.querySelector(".last-check"), svc.lastReason, svc.lastDetail);
  setHeld(details.querySelector(".held"), svc.suppressedBy || []);
  details.querySelector(".u24").textContent = pct(svc.uptime24h);
  details.querySelector(".u7").textContent = pct(svc.uptime7d);
  details.querySelector(".u30").textContent = pct(svc.uptime30d);
  renderBars(details.querySelector(".bars"), svc.days);
  renderSpark(details.querySelector(".spark"), svc.responseMsHourly, details.querySelector(".spark-last"));
  renderIncidents(details.querySelector(".incidents ul"), svc.incidents);
  renderLocations(details.querySelector(".locations"), svc.locations);
}

// What the newest check saw, in words: the failure reason (a closed set, README "What gets
// stored") and the probe's detail, or the detail of a good check.
function setLastCheck(line, reason, detail) {
  if (!reason && !detail) {
    line.hidden = true;
    return;
  }
  line.hidden = false;
  line.dataset.failed = reason ? "true" : "false";
  line.textContent = reason ? `Last check failed (${reason}): ${detail || ""}` : `Last check: ${detail}`;
}

function setHeld(note, parents) {
  note.hidden = !parents.length;
  note.querySelector(".label").textContent = parents.length
    ? `Alerts held: ${listed(parents)} ${parents.length > 1 ? "are" : "is"} down` : "";
}

// A day's colour says how good its observed time was; grey says nothing was observed. Time the
// daemon was not looking is drawn apart, as a pale cap, and maintenance (left out of the day's
// uptime) as a blue band under it: together at most 60 % of the bar, so a day watched for minutes
// still shows its colour, and a short window at least 15 %, so it can be seen. Every figure is in
// the bar's tooltip and label.
const GRADES = [["good", 0.999], ["fair", 0.99], ["poor", 0]];
const UNKNOWN_CAP = 0.6;
const MAINTENANCE_FLOOR = 0.15;

function grade(day) {
  if (day.uptimeRatio === null) return "none";
  const [name] = GRADES.find(([, floor]) => day.uptimeRatio >= floor);
  return name;
}

function band(className, share) {
  const span = document.createElement("span");
  span.className = className;
  span.style.height = (100 * share).toFixed(2) + "%";
  return span;
}

function renderBars(container, days) {
  container.replaceChildren();
  let worst = 1;
  let maintenanceDays = 0;
  for (const day of days) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.grade = grade(day);
    const maintenance = day.maintenance || 0;
    const total = day.up + day.degraded + day.down + day.unknown + maintenance || 1;
    const observed = bar.dataset.grade !== "none";
    const maintenanceShare = maintenance > 0
      ? Math.min(observed ? UNKNOWN_CAP : 1, Math.max(MAINTENANCE_FLOOR, maintenance / total)) : 0;
    const unknownShare = observed ? Math.min(UNKNOWN_CAP - maintenanceShare, day.unknown / total) : 0;
    if (unknownShare > 0) bar.append(band("unobserved", unknownShare));
    if (maintenanceShare > 0) {
      bar.append(band("maintenance", maintenanceShare));
      bar.dataset.maintenance = "true";
      maintenanceDays += 1;
    }
    const head = day.uptimeRatio !== null ? pct(day.uptimeRatio) + " up"
      : maintenance > 0 ? "nothing observed outside maintenance" : "not observed";
    bar.title = `${day.date}: ${head}` +
      (day.down ? `, ${duration(day.down)} down` : "") +
      (day.degraded ? `, ${duration(day.degraded)} degraded` : "") +
      (maintenance > 0 ? `, ${duration(maintenance)} maintenance` : "") +
      (day.uptimeRatio !== null && day.unknown >= 60 ? `, ${duration(day.unknown)} not observed` : "");
    if (day.uptimeRatio !== null) worst = Math.min(worst, day.uptimeRatio);
    container.append(bar);
  }
  container.setAttribute("aria-label", `Daily uptime for the last ${days.length} days; worst day ${pct(worst)}` +
    (maintenanceDays ? `; maintenance on ${maintenanceDays} day${maintenanceDays > 1 ? "s" : ""}` : ""));
}

function renderSpark(svg, values, last) {
  svg.replaceChildren();
  const known = values.filter((v) => v !== null);
  const max = Math.max(1, ...known);
  const points = values.map((v, i) => v === null ? null : `${(i / (values.length - 1)) * 240},${32 - (v / max) * 30}`).filter(Boolean);
  if (points.length > 1) {
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  } else if (points.length === 1) {  // one hour of data so far: a short mark, not an empty chart
    const [x, y] = points[0].split(",").map(Number);
    const mark = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    mark.setAttribute("points", `${Math.max(0, x - 10)},${y} ${x},${y}`);
    svg.append(mark);
  }
  const latest = known.length ? known[known.length - 1] : null;
  svg.setAttribute("aria-label", latest === null ? "No response times yet" : `Average response time, latest hour ${latest.toFixed(1)} ms`);
  last.textContent = latest === null ? "—" : `${latest.toFixed(1)} ms`;
}

function renderLocations(list, locations) {
  // A service watched from several locations: each one's own view beside the quorum verdict.
  list.replaceChildren();
  for (const where of locations) {
    const li = document.createElement("li");
    li.className = "pill";
    li.dataset.status = where.status;
    li.dataset.location = where.location;
    const icon = document.createElement("span");
    icon.className = "icon";
    icon.setAttribute("aria-hidden", "true");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = `${where.location}: ${LABELS[where.status] || where.status}`;
    li.append(icon, label);
    list.append(li);
  }
}

function renderIncidents(list, incidents) {
  list.replaceChildren();
  if (!incidents.length) {
    const li = document.createElement("li");
    li.textContent = "None in the retained history.";
    list.append(li);
  }
  for (const incident of incidents) {
    const li = document.createElement("li");
    const start = new Date(incident.start).toLocaleString();
    // Down time is what the checks saw; time nobody was looking is said apart, never as down.
    const unseen = incident.unknownSeconds >= 1 ? `, ${duration(incident.unknownSeconds)} unobserved` : "";
    li.textContent = incident.ongoing ? `Ongoing since ${start} (down ${duration(incident.downSeconds)}${unseen})` : `${start}: down for ${duration(incident.downSeconds)}${unseen}`;
    list.append(li);
  }
}

// --- headline, components, announcements --------------------------------------------------------

// Services in maintenance are counted apart: planned work does not turn the headline red.
function updateOverall() {
  const counts = { down: 0, degraded: 0, unknown: 0, up: 0, maintenance: 0 };
  for (const row of services.values()) {
    if (row.inMaintenance) counts.maintenance += 1;
    else counts[row.status in counts ? row.status : "unknown"] += 1;
  }
  const overall = counts.down ? "down" : counts.degraded || counts.unknown ? "degraded" : "ok";
  const el = document.getElementById("overall");
  el.dataset.status = overall;
  const maintenance = counts.maintenance ? ` · ${counts.maintenance} in maintenance` : "";
  const text = (overall === "ok" ? (counts.maintenance ? "✓ All other services are up" : "✓ All services are up")
    : overall === "down" ? `✕ ${plural(counts.down, "service")} down`
      : "▲ Some services are degraded or not yet checked") + maintenance;
  if (el.textContent !== text) el.textContent = text;
  const parts = [["down", "down"], ["degraded", "degraded"], ["unknown", "unknown or pending"], ["maintenance", "in maintenance"], ["up", "up"]]
    .filter(([key]) => counts[key]).map(([key, word]) => `${numbers.format(counts[key])} ${word}`);
  document.getElementById("counts").textContent = parts.join(" · ");
}

function renderComponents(components, lag) {
  const list = document.getElementById("components");
  list.replaceChildren();
  for (const c of components) {
    const li = document.createElement("li");
    li.className = c.ok ? "ok" : "bad";
    li.textContent = `${c.name}: ${c.ok ? "healthy" : "unhealthy"} — ${c.detail}`;
    list.append(li);
  }
  if (lag !== undefined) {
    const li = document.createElement("li");
    li.className = lag < 60 ? "ok" : "bad";
    li.textContent = `projector lag: ${lag.toFixed(1)} s`;
    list.append(li);
  }
}

// Sparingly: at most one message every few seconds, naming up to three services.
function announce(name, status) {
  pendingAnnouncements.push([name, status]);
  if (announceTimer) return;
  const flush = () => {
    announceTimer = null;
    if (!pendingAnnouncements.length) return;
    const changes = pendingAnnouncements;
    pendingAnnouncements = [];
    const text = changes.length <= 3
      ? changes.map(([who, what]) => `${who} is ${(LABELS[what] || what).toLowerCase()}`).join("; ")
      : `${changes.length} services changed status: ${changes.filter(([, s]) => s === "down").length} now down`;
    const region = document.getElementById("announce");
    const p = document.createElement("p");
    p.textContent = text;
    region.replaceChildren(p);
    announceTimer = setTimeout(flush, ANNOUNCE_MS);
  };
  announceTimer = setTimeout(flush, 50);
}

// --- filters, kept in the URL ---------------------------------------------------------------------

function readFilters() {
  const params = new URLSearchParams(location.search);
  filters.q = (params.get("q") || "").trim();
  filters.status = params.get("status") || "";
  filters.group = params.get("group") || "";
  document.getElementById("q").value = filters.q;
  document.getElementById("status-filter").value = filters.status;
  syncGroupSelect();
}

function filterUrl() {
  const params = new URLSearchParams();
  for (const key of ["q", "status", "group"]) if (filters[key]) params.set(key, filters[key]);
  const query = params.toString();
  return query ? `?${query}` : location.pathname;
}

function filtersChanged(push) {
  const url = filterUrl();
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
  document.getElementById("clear").hidden = !filtering();
  limit = PAGE;
  rebuild();
  reconcile();
}

function syncGroupSelect() {
  const select = document.getElementById("group-filter");
  const names = [...new Set([...services.values()].map((row) => row.group).filter(Boolean))].sort();
  if (filters.group && filters.group !== "-" && !names.includes(filters.group)) names.push(filters.group);
  const have = [...select.options].slice(1).map((o) => o.value);
  const want = [...names, ...(names.length ? ["-"] : [])];
  if (have.join("\n") !== want.join("\n")) {
    select.replaceChildren(select.options[0]);
    for (const name of want) {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name === "-" ? "No group" : name;
      select.append(option);
    }
  }
  select.value = filters.group;
}

function showGroup(name) {
  filters.group = name;
  syncGroupSelect();
  filtersChanged(true);
  document.getElementById("group-filter").focus();
}

// --- data ----------------------------------------------------------------------------------------

function render(data) {
  const seen = new Set();
  let structural = !painted;
  for (const fresh of data.services) {
    seen.add(fresh.service);
    const row = {
      service: fresh.service, group: fresh.group || null, status: fresh.status, since: fresh.since || null,
      inMaintenance: Boolean(fresh.inMaintenance), lastReason: fresh.lastReason || null,
      suppressedBy: fresh.suppressedBy || [],
    };
    const old = services.get(fresh.service);
    if (!old || old.group !== row.group) { services.set(row.service, row); structural = true; continue; }
    if (painted) apply(row.service, row); else services.set(row.service, row);
  }
  for (const name of [...services.keys()]) {
    if (!seen.has(name)) { services.delete(name); opened.delete(name); structural = true; }
  }
  if (structural) { syncGroupSelect(); rebuild(); }
  reconcile();
  renderComponents(data.components, data.projectorLagSeconds);
  if (lastPosition === null) lastPosition = data.position;
  updateOverall();
  document.getElementById("updated").textContent = new Date(data.generatedAt).toLocaleTimeString();
  if (!painted) {
    painted = true;
    performance.mark("status-first-rows");
    document.documentElement.dataset.ready = "true";
  }
  refreshOpenDetails();
}

// One fetch at a time; a request made meanwhile is served by one more fetch after it, so the
// last render is never older than the last request.
function refresh() {
  if (fetching) {
    fetchAgain = true;
    return fetching;
  }
  fetching = (async () => {
    try {
      const response = await fetch("/status/data", { cache: "no-store" });
      if (response.ok) render(await response.json());
    } catch (error) {
      document.getElementById("live").dataset.state = "reconnecting";
    } finally {
      fetching = null;
      if (fetchAgain) {
        fetchAgain = false;
        refresh();
      }
    }
  })();
  return fetching;
}

function onChange(message) {
  if (message.position !== null && message.position !== undefined) lastPosition = message.position;
  const probe = (message.event && message.event.probe) || {};
  const patch = { status: message.status, since: message.event ? message.event.timestamp : message.timestamp };
  if ("reason" in probe) patch.lastReason = probe.reason || null;
  if (!services.has(message.service)) { refresh(); return; }
  if (apply(message.service, patch)) {
    reconcile();
    updateOverall();
    announce(message.service, message.status);
  }
  refreshOpenDetails();  // a child's held alerts, figures of the open rows
}

// The periodic snapshot carries every service: only the rows that differ are patched.
function onHealth(message) {
  if (!message.services) {  // a large page asks for the brief snapshot: changes and refetches do
    renderComponents(message.components);
    if (message.position !== null && (lastPosition === null || message.position > lastPosition)) lastPosition = message.position;
    return;
  }
  let changed = false;
  let unknownService = false;
  let configured = 0;
  for (const svc of message.services) {
    if (!svc.configured) continue;
    configured += 1;
    if (!services.has(svc.service)) { unknownService = true; continue; }
    const patch = { status: svc.status, since: svc.since || null };
    if (svc.inMaintenance !== undefined) patch.inMaintenance = svc.inMaintenance;
    if (svc.suppressedBy !== undefined) patch.suppressedBy = svc.suppressedBy;
    if (apply(svc.service, patch)) changed = true;
  }
  if (unknownService || configured !== services.size) refresh();  // a reload changed the services
  if (changed) { reconcile(); updateOverall(); refreshOpenDetails(); }
  renderComponents(message.components);
  if (message.position !== null && (lastPosition === null || message.position > lastPosition)) lastPosition = message.position;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams();
  if (lastPosition !== null) query.set("from", lastPosition);
  // Past BRIEF_SNAPSHOT_AFTER services the 10-second snapshot would be megabytes: take it without
  // the service list, and rely on the change messages plus the periodic refetch of /status/data.
  if (services.size > BRIEF_SNAPSHOT_AFTER) query.set("services", "false");
  const suffix = query.toString() ? `?${query}` : "";
  socket = new WebSocket(`${scheme}//${location.host}/ws/health${suffix}`);
  const live = document.getElementById("live");
  socket.onopen = () => { retry = 0; live.dataset.state = "live"; live.textContent = "live"; };
  socket.onmessage = (event) => {
    if (event.data === "pong") return;
    const message = JSON.parse(event.data);
    if (message.type === "service_status_change") onChange(message);
    else if (message.type === "health_status") onHealth(message);
  };
  socket.onclose = () => {
    live.dataset.state = "reconnecting";
    live.textContent = "reconnecting";
    const delay = Math.min(5000, 500 * 2 ** retry++);
    setTimeout(() => { connect(); refresh(); }, delay);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  readFilters();
  document.getElementById("clear").hidden = !filtering();
  const form = document.getElementById("filters");
  form.addEventListener("submit", (event) => event.preventDefault());
  document.getElementById("q").addEventListener("input", (event) => {
    filters.q = event.target.value.trim();
    filtersChanged(false);
  });
  document.getElementById("status-filter").addEventListener("change", (event) => {
    filters.status = event.target.value;
    filtersChanged(false);
  });
  document.getElementById("group-filter").addEventListener("change", (event) => {
    filters.group = event.target.value;
    filtersChanged(false);
  });
  document.getElementById("clear").addEventListener("click", () => {
    filters.q = filters.status = filters.group = "";
    readFiltersInto();
    filtersChanged(false);
    document.getElementById("q").focus();
  });
  document.getElementById("more").addEventListener("click", () => {
    limit += MORE;
    reconcile();
  });
  window.addEventListener("popstate", () => { readFilters(); filtersChanged(false); });
  refresh().then(connect);
  setInterval(refresh, REFRESH_MS);
  // "for 3m": only the rows in the DOM, never the whole list.
  setInterval(() => {
    for (const [key, li] of elements) {
      if (key.startsWith("service:")) li.querySelector(".since").textContent = sinceText(services.get(li.dataset.service) || {});
    }
  }, 10000);
});

function readFiltersInto() {
  document.getElementById("q").value = filters.q;
  document.getElementById("status-filter").value = filters.status;
  syncGroupSelect();
}
