// Receive cmsv6's webhooks: register this program's URL (admins only), check each
// delivery's signature and timestamp, skip repeats by event id, answer 204 at once.
//   node webhook_receiver.mjs [PORT] [COUNT] [EVENTS]
//   (stops, and unregisters, after COUNT events; EVENTS: comma-separated, default all)
import {createHmac, timingSafeEqual} from "node:crypto";
import {createServer} from "node:http";
import {call, login} from "./cmsv6_api.mjs";

const port = Number(process.argv[2] ?? 8091);
const count = process.argv[3] ? Number(process.argv[3]) : Infinity;
const token = await login();
const hook = await call("POST", "/api/v1/webhooks", {token, body: {
  url: `http://127.0.0.1:${port}/cmsv6`,
  events: process.argv[4] ? process.argv[4].split(",")
    : ["alarm.opened", "alarm.closed", "alarm.handled", "device.online", "device.offline", "command.answered"],
  description: "webhook_receiver.mjs",
}});
const secret = hook.secret; // shown once, at registration: keep it safe
const seen = new Set();

// HMAC-SHA256 of "TIMESTAMP." + body, and a timestamp within 5 minutes (no replays).
function valid(timestamp, body, signature) {
  if (!/^\d+$/.test(timestamp) || Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false;
  const expected = "sha256=" + createHmac("sha256", secret).update(`${timestamp}.`).update(body).digest("hex");
  return expected.length === signature.length && timingSafeEqual(Buffer.from(expected), Buffer.from(signature));
}

const server = createServer((request, response) => {
  const chunks = [];
  request.on("data", (c) => chunks.push(c));
  request.on("end", () => {
    const body = Buffer.concat(chunks);
    if (!valid(request.headers["x-cmsv6-timestamp"] ?? "", body, request.headers["x-cmsv6-signature"] ?? "")) {
      response.writeHead(401).end(); // not from cmsv6, or replayed
      return;
    }
    response.writeHead(204).end(); // answer first and fast
    const event = JSON.parse(body);
    if (seen.has(event.id)) return; // delivered at least once: a repeat is normal
    seen.add(event.id);
    const d = event.data;
    console.log(`${event.event} ${d.alarm ? `${d.alarm.kind} on ${d.alarm.phone}` : d.phone} at ${event.time} (id ${event.id})`);
    if (seen.size >= count) stop();
  });
});

async function stop() {
  server.close();
  await call("DELETE", `/api/v1/webhooks/${hook.id}`, {token}); // tidy up
  console.log(`webhook ${hook.id} removed`);
}

server.listen(port, "127.0.0.1", () => console.log(`webhook ${hook.id} registered; listening on port ${port}`));
process.on("SIGINT", () => stop().then(() => process.exit(0)));
