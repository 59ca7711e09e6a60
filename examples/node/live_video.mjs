// Get a live video URL of a vehicle's camera and print the ffplay command that plays it.
//   node live_video.mjs [PHONE] [CHANNEL]
import {call, login} from "./cmsv6_api.mjs";

const phone = process.argv[2] ?? "13900000000";
const channel = Number(process.argv[3] ?? 1);
const token = await login();
const live = await call("POST", `/api/v1/devices/${phone}/live`, {token, body: {channel, stream: "sub"}});
// The URL carries a viewing token for this device and channel: open it before "expires".
console.log(`codec ${live.codec ?? "not known yet"}, audio ${live.audio ?? "none announced"}, open before ${live.expires}`);
console.log(`ffplay -fflags nobuffer '${live.http_flv}'`);
console.log(`browser (mpegts.js, flv.js): ${live.ws_flv}`);
