// The npm socket.io-client, connected as the seeds' front end connects (`io(url)`, defaults
// otherwise, but no reconnection): prints every event it sees (connect, upgrade, the feed's events,
// disconnect with its reason) as one JSON line, and exits 0 once it has received both feed events,
// 1 on a connection error, 2 when the time is up.
//   node socketio_client.mjs URL [--token TOKEN] [--seconds N]
import { io } from "socket.io-client";

const [url, ...rest] = process.argv.slice(2);
const option = (name, fallback) => {
  const at = rest.indexOf(name);
  return at < 0 ? fallback : rest[at + 1];
};
const token = option("--token", null);
const seconds = Number(option("--seconds", "30"));
const FEED_EVENTS = ["health_status", "service_status_change"];

const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
const socket = io(url, {
  reconnection: false,
  ...(token === null ? {} : { extraHeaders: { Authorization: `Bearer ${token}` } }),
});
const seen = new Set();
const timer = setTimeout(() => finish(2, { event: "timeout", seconds }), seconds * 1000);

function finish(code, line) {
  print(line);
  clearTimeout(timer);
  socket.close();
  process.exitCode = code;
}

socket.io.on("open", () => {
  socket.io.engine.on("upgrade", (transport) => print({ event: "upgrade", transport: transport.name }));
});
socket.on("connect", () => print({ event: "connect", transport: socket.io.engine.transport.name }));
socket.on("disconnect", (reason) => print({ event: "disconnect", reason }));
socket.on("connect_error", (error) => finish(1, { event: "connect_error", message: error.message }));
for (const event of FEED_EVENTS) {
  socket.on(event, (data) => {
    print({ event, data });
    seen.add(event);
    if (seen.size === FEED_EVENTS.length) finish(0, { event: "done" });
  });
}
