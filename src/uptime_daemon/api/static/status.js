// uptime-daemon status page: renders /status/data, then follows /ws/health live.
// No dependencies, no external requests; all data goes in through textContent (never as HTML).
"use strict";

const LABELS = { up: "Up", degraded: "Degraded", down: "Down", unknown: "Unknown" };
const REFRESH_MS = 60000;
let lastPosition = null;
let socket = null;
let retry = 0;

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

// A day's colour says how good its observed time was; grey says nothing was observed. Time the
// daemon was not looking is drawn apart, as a pale cap (at most 60 % of the bar, so a day watched
// for minutes still shows its colour), and every figure is in the bar's tooltip and label.
const GRADES = [["good", 0.999], ["fair", 0.99], ["poor", 0]];
const UNKNOWN_CAP = 0.6;

function grade(day) {
  if (day.uptimeRatio === null) return "none";
  const [name] = GRADES.find(([, floor]) => day.uptimeRatio >= floor);
  return name;
}

function renderBars(container, days) {
  container.replaceChildren();
  let worst = 1;
  for (const day of days) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.dataset.grade = grade(day);
    const total = day.up + day.degraded + day.down + day.unknown || 1;
    if (bar.dataset.grade !== "none" && day.unknown > 0) {
      const cap = document.createElement("span");
      cap.className = "unobserved";
      cap.style.height = (100 * Math.min(UNKNOWN_CAP, day.unknown / total)).toFixed(2) + "%";
      bar.append(cap);
    }
    bar.title = `${day.date}: ${day.uptimeRatio === null ? "not observed" : pct(day.uptimeRatio) + " up"}` +
      (day.down ? `, ${duration(day.down)} down` : "") +
      (day.degraded ? `, ${duration(day.degraded)} degraded` : "") +
      (day.uptimeRatio !== null && day.unknown >= 60 ? `, ${duration(day.unknown)} not observed` : "");
    if (day.uptimeRatio !== null) worst = Math.min(worst, day.uptimeRatio);
    container.append(bar);
  }
  container.setAttribute("aria-label", `Daily uptime for the last ${days.length} days; worst day ${pct(worst)}`);
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

function updateOverall() {
  const statuses = [...document.querySelectorAll("#services > li")].map((li) => li.dataset.status);
  const overall = statuses.includes("down") ? "down" : statuses.some((s) => s === "degraded" || s === "unknown") ? "degraded" : "ok";
  const el = document.getElementById("overall");
  el.dataset.status = overall;
  const down = statuses.filter((s) => s === "down").length;
  el.textContent = overall === "ok" ? "✓ All services are up" : overall === "down" ? `✕ ${down} service${down > 1 ? "s" : ""} down` : "▲ Some services are degraded or not yet checked";
}

async function refresh() {
  try {
    const response = await fetch("/status/data", { cache: "no-store" });
    if (response.ok) render(await response.json());
  } catch (error) {
    document.getElementById("live").dataset.state = "reconnecting";
  }
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
    } else if (message.type === "health_status") {
      for (const svc of message.services) {
        if (!svc.configured) continue;
        const item = serviceItem(svc.service);
        if (item.dataset.status !== svc.status || item.dataset.since !== (svc.since || "")) setStatus(item, svc.status, svc.since);
      }
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
