// Find the alarms nobody has looked at yet, and acknowledge the oldest with a note.
//   node handle_alarm.mjs
import {call, login} from "./cmsv6_api.mjs";

const token = await login();
// state=new: every new alarm however old (without it: the alarms of the last day).
const page = await call("GET", "/api/v1/alarms", {token, query: {state: "new", limit: 100}});
if (!page.alarms.length) { console.error("no new alarms"); process.exit(1); }
for (const a of page.alarms) console.log(`alarm ${a.id}: ${a.kind} on ${a.phone} since ${a.started}${a.ended ? " (ended)" : ""}`);
const oldest = page.alarms[0];
// acknowledged, handled or dismissed; who and when are recorded (and in the audit log).
const done = await call("POST", `/api/v1/alarms/${oldest.id}`,
                        {token, body: {state: "acknowledged", note: "seen by the integration example"}});
console.log(`alarm ${done.id} ${done.state} by ${done.handled_by} at ${done.handled}`);
