// Follow vehicles' positions and alarms live over the client WebSocket (docs/websocket.md).
//   node --experimental-websocket follow_live.mjs [COUNT]   (Node 20; Node 22+: node follow_live.mjs)
// Node's built-in WebSocket (undici's): no package to install.
import {URL_, call, login} from "./cmsv6_api.mjs";

if (typeof WebSocket === "undefined") {
  console.error("no built-in WebSocket: run with node --experimental-websocket (Node 20) or Node 22+");
  process.exit(2);
}
const count = process.argv[2] ? Number(process.argv[2]) : Infinity;
const token = await login();
const phones = (await call("GET", "/api/v1/devices", {token})).map((d) => d.phone);
const ws = new WebSocket(URL_.replace(/^http/, "ws") + "/ws");
let seen = 0;
ws.onopen = () => {
  ws.send(JSON.stringify({token})); // the first message: the token (never in the URL)
  ws.send(JSON.stringify({subscribe: phones}));
};
ws.onmessage = (event) => {
  const m = JSON.parse(event.data);
  if (m.type === "authenticated") console.log(`authenticated as ${m.user} (${m.role})`);
  else if (m.type === "subscribed") console.log(`subscribed to ${m.phones.length} devices`);
  else if (m.type === "position") {
    seen += 1;
    console.log(`position ${m.phone}: ${m.latitude.toFixed(6)}, ${m.longitude.toFixed(6)} ${m.speed} km/h at ${m.time}`);
  } else if (m.type === "alarm") {
    seen += 1;
    console.log(`alarm ${m.phone}: ${m.kind} (id ${m.id})`);
  } else console.log(m); // "dropped" (we were too slow) or "error"
  if (seen >= count) ws.close();
};
// 4001: no valid token; 4000: the server is going away (reconnect); see docs/websocket.md.
ws.onclose = (event) => { if (event.code !== 1000 && event.code !== 1005) console.log("closed", event.code, event.reason); };
