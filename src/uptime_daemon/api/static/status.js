// uptime-daemon status page: renders /status/data, then follows /ws/health live.
// No dependencies, no external requests; all data goes in through textContent (never as HTML).
// A status change on the socket is applied at once, then /status/data is fetched again for what
// the message does not carry (figures, bars, a child's held alerts, a maintenance reason).
"use strict";

const LABELS = { up: "Up", degraded: "Degraded", down: "Down", unknown: "Unknown" };
const REFRESH_MS = 60000;
let lastPosition = null;
let socket = null;
let retry = 0;
let fetching = null;
let fetchAgain = false;

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

function setStatus(item, status, since) {
  const pill = item.querySelector(".pill");
  pill.dataset.status = status;
  pill.querySelector(".label").textContent = LABELS[status] || status;
  item.dataset.status = status;
  if (since !== undefined) item.dataset.since = since || "";
  const when = item.dataset.since;
  item.querySelector(".since").textContent = when ? `${LABELS[status] || status} for ${ago(when)} (since ${new Date(when).toLocaleString()})` : "No check yet";
}

// What the newest check saw, in words: the failure reason (a closed set, README "What gets
// stored") and the probe's detail, or the detail of a good check.
function setLastCheck(item, reason, detail) {
  const line = item.querySelector(".last-check");
  if (!reason && !detail) {
    line.hidden = true;
    return;
  }
  line.hidden = false;
  line.dataset.failed = reason ? "true" : "false";
  line.textContent = reason ? `Last check failed (${reason}): ${detail || ""}` : `Last check: ${detail}`;
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

// Maintenance is said in words beside the status, which stays what the checks observe.
function setMaintenance(item, inMaintenance, reason) {
  item.dataset.maintenance = inMaintenance ? "true" : "false";
  const badge = item.querySelector(".in-maintenance");
  badge.hidden = !inMaintenance;
  const why = reason && reason.trim().toLowerCase() !== "maintenance" ? reason.trim() : "";
  badge.querySelector(".label").textContent = inMaintenance ? (why ? `Maintenance: ${why}` : "Maintenance") : "";
}

function listed(names) {
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

function setHeld(item, parents) {
  const note = item.querySelector(".held");
  note.hidden = !parents.length;
  note.querySelector(".label").textContent = parents.length
    ? `Alerts held: ${listed(parents)} ${parents.length > 1 ? "are" : "is"} down` : "";
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
    li.textContent = incident.ongoing ? `Ongoing since ${start} (${duration(incident.durationSeconds)})` : `${start}: down for ${duration(incident.durationSeconds)}`;
    list.append(li);
  }
}

function serviceItem(name) {
  const list = document.getElementById("services");
  let item = list.querySelector(`li[data-service="${CSS.escape(name)}"]`);
  if (!item) {
    item = document.getElementById("service-template").content.firstElementChild.cloneNode(true);
    item.dataset.service = name;
    item.querySelector(".name").textContent = name;
    list.append(item);
  }
  return item;
}

function render(data) {
  for (const svc of data.services) {
    if (!svc.configured) continue;  // removed from the config: its history stays in the API only
    const item = serviceItem(svc.service);
    setStatus(item, svc.status, svc.since);
    setMaintenance(item, svc.inMaintenance, svc.maintenanceReason);
    setHeld(item, svc.suppressedBy || []);
    setLastCheck(item, svc.lastReason, svc.lastDetail);
    item.querySelector(".u24").textContent = pct(svc.uptime24h);
    item.querySelector(".u7").textContent = pct(svc.uptime7d);
    item.querySelector(".u30").textContent = pct(svc.uptime30d);
    renderBars(item.querySelector(".bars"), svc.days);
    renderSpark(item.querySelector(".spark"), svc.responseMsHourly, item.querySelector(".spark-last"));
    renderIncidents(item.querySelector(".incidents ul"), svc.incidents);
    renderLocations(item.querySelector(".locations"), svc.locations);
  }
  renderComponents(data.components, data.projectorLagSeconds);
  if (lastPosition === null) lastPosition = data.position;
  updateOverall();
  document.getElementById("updated").textContent = new Date(data.generatedAt).toLocaleTimeString();
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

// Services in maintenance are counted apart: planned work does not turn the headline red.
function updateOverall() {
  const items = [...document.querySelectorAll("#services > li")];
  const planned = items.filter((li) => li.dataset.maintenance === "true").length;
  const statuses = items.filter((li) => li.dataset.maintenance !== "true").map((li) => li.dataset.status);
  const overall = statuses.includes("down") ? "down" : statuses.some((s) => s === "degraded" || s === "unknown") ? "degraded" : "ok";
  const el = document.getElementById("overall");
  el.dataset.status = overall;
  const down = statuses.filter((s) => s === "down").length;
  const maintenance = planned ? ` · ${planned} in maintenance` : "";
  el.textContent = (overall === "ok" ? (planned ? "✓ All other services are up" : "✓ All services are up")
    : overall === "down" ? `✕ ${down} service${down > 1 ? "s" : ""} down`
      : "▲ Some services are degraded or not yet checked") + maintenance;
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

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const from = lastPosition === null ? "" : `?from=${lastPosition}`;
  socket = new WebSocket(`${scheme}//${location.host}/ws/health${from}`);
  const live = document.getElementById("live");
  socket.onopen = () => { retry = 0; live.dataset.state = "live"; live.textContent = "live"; };
  socket.onmessage = (event) => {
    if (event.data === "pong") return;
    const message = JSON.parse(event.data);
    if (message.type === "service_status_change") {
      lastPosition = message.position;
      setStatus(serviceItem(message.service), message.status, message.event.timestamp);
      updateOverall();
      refresh();
    } else if (message.type === "health_status") {
      let stale = false;
      for (const svc of message.services) {
        if (!svc.configured) continue;
        const item = serviceItem(svc.service);
        if (item.dataset.status !== svc.status || item.dataset.since !== (svc.since || "")) setStatus(item, svc.status, svc.since);
        if (svc.suppressedBy) setHeld(item, svc.suppressedBy);
        // The snapshot says whether a window covers the service, not why: fetch the reason.
        if (svc.inMaintenance !== undefined && svc.inMaintenance !== (item.dataset.maintenance === "true")) stale = true;
      }
      if (stale) refresh();
      renderComponents(message.components);
      if (message.position !== null && (lastPosition === null || message.position > lastPosition)) lastPosition = message.position;
      updateOverall();
    }
  };
  socket.onclose = () => {
    live.dataset.state = "reconnecting";
    live.textContent = "reconnecting";
    const delay = Math.min(5000, 500 * 2 ** retry++);
    setTimeout(() => { connect(); refresh(); }, delay);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  refresh().then(connect);
  setInterval(refresh, REFRESH_MS);
  setInterval(() => document.querySelectorAll("#services > li").forEach((li) => setStatus(li, li.dataset.status)), 10000);
});
