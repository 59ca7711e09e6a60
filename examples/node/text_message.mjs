// Send a text message to a vehicle's display (JT/T 808 0x8300) and wait for its answer.
//   node text_message.mjs [PHONE] [TEXT]
import {call, login} from "./cmsv6_api.mjs";

const phone = process.argv[2] ?? "13900000000";
const text = process.argv[3] ?? "Please call the dispatcher";
const token = await login();
let answer;
try {
  // flag 8: show it on the display. Returns when the device answers (504 after `timeout` s).
  answer = await call("POST", `/api/v1/devices/${phone}/commands`,
                      {token, body: {type: "text", text, flag: 8, timeout: 10}});
} catch (e) {
  if (e.code === "device_offline") { console.error(`${phone} is offline`); process.exit(1); }
  throw e;
}
const reply = answer.reply; // the device's general response (0x0001): result 0 is "ok"
const result = reply.body.result;
console.log(`command ${answer.command}: ${phone} answered ${reply.msg_id}, result ${result} (${result === 0 ? "ok" : "refused"})`);
