// A day's track of one vehicle as GeoJSON, written to a file any map reads.
//   node track_geojson.mjs [PHONE] [OUTPUT]
import {writeFileSync} from "node:fs";
import {call, login} from "./cmsv6_api.mjs";

const phone = process.argv[2] ?? "13900000000";
const output = process.argv[3] ?? "track.geojson";
const token = await login();
const end = new Date();
const query = {from: new Date(end - 86400e3).toISOString(), to: end.toISOString(), limit: 1000};
const points = [];
for (;;) { // paged: follow "next" until it is null
  const page = await call("GET", `/api/v1/devices/${phone}/track`, {token, query});
  points.push(...page.features.filter((f) => f.geometry.type === "Point"));
  if (page.next === null) break;
  query.after = page.next;
}
// One FeatureCollection: the whole line (coordinates are [longitude, latitude]), then the points.
const line = points.map((p) => p.geometry.coordinates);
const features = (line.length >= 2 ? [{type: "Feature", geometry: {type: "LineString", coordinates: line},
                                       properties: {phone}}] : []).concat(points);
writeFileSync(output, JSON.stringify({type: "FeatureCollection", features}));
const alarms = points.filter((p) => p.properties.alarms.length).length;
console.log(`${phone}: ${points.length} positions (${alarms} with alarms) written to ${output}`);
