// Log in, then list the vehicles this user may see with their last positions.
//   node login_and_devices.mjs
import {call, login} from "./cmsv6_api.mjs";

const token = await login();
const devices = await call("GET", "/api/v1/devices", {token}); // at most 1000 a page
for (const device of devices) {
  const where = device.last_position; // null until the device has reported
  if (!where) { console.log(`${device.phone} ${device.plate}: no position yet`); continue; }
  // Latitude and longitude are signed degrees (WGS-84); times are UTC.
  console.log(`${device.phone} ${device.plate} ${device.online ? "online" : "offline"}: ` +
              `${where.latitude.toFixed(6)}, ${where.longitude.toFixed(6)} at ${where.speed} km/h, ${where.time}`);
}
console.log(`${devices.length} devices`);
