// Small helpers shared by the views: building DOM without innerHTML (text from devices and
// users is never parsed as HTML), times, and the names of JT/T 808 alarm bits and parameters.

/** el("div#id.a.b", {attrs, on: {click: fn}}, children...) */
export function el(spec, props = {}, ...children) {
  const [head, ...classes] = spec.split(".");
  const [tag, id] = head.split("#");
  const node = document.createElement(tag || "div");
  if (id) node.id = id;
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") {
      for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "text") {
      node.textContent = value;
    } else if (key in node && typeof value !== "string") {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : value);
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const pad = (n) => String(n).padStart(2, "0");

/** "2026-12-02 09:19:22" in the browser's time zone, from an ISO time or a Date. */
export function fmtTime(value) {
  if (!value) return "";
  const d = value instanceof Date ? value : new Date(value);
  if (isNaN(d)) return String(value);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The value of an <input type=datetime-local> for a Date (local time, to the minute). */
export function localInput(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** How long ago, in words: "12 s ago", "3 min ago", "2 h ago", else the time. */
export function ago(value, now = Date.now()) {
  if (!value) return "never";
  const seconds = Math.round((now - new Date(value).getTime()) / 1000);
  if (seconds < 0) return fmtTime(value);
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return fmtTime(value);
}

/** JT/T 808-2019 table 25 (cmsv6/plugins/gateway/alarms.py ALARM_BITS). */
export const ALARM_BITS = [
  "emergency", "overspeed", "fatigue", "danger warning", "GNSS fault", "GNSS antenna cut",
  "GNSS antenna short", "power low", "power cut", "display fault", "TTS fault",
  "camera fault", "IC card fault", "overspeed warning", "fatigue warning",
  "violation driving", "tire pressure warning", "right-turn blind spot",
  "driving timeout (day)", "parking timeout", "area in/out", "route in/out", "route time",
  "route deviation", "VSS fault", "fuel abnormal", "stolen", "illegal ignition",
  "illegal move", "collision warning", "rollover warning", "illegal door open",
];

/** The names of the set bits of a 0x0200 alarm word. */
export function alarmNames(word) {
  const names = [];
  for (let bit = 0; bit < 32; bit++) if ((word >>> bit) & 1) names.push(ALARM_BITS[bit]);
  return names;
}

/** An alarm's kind in words: "bit:emergency" → "emergency", "bit:video:storage_fault" →
 * "video: storage fault", "adas:1:123" → "ADAS event 1". */
export function kindName(kind) {
  if (!kind) return "alarm";
  const parts = kind.split(":");
  if (parts[0] === "bit" && parts[1] === "video") return `video: ${parts.slice(2).join(" ").replaceAll("_", " ")}`;
  if (parts[0] === "bit") return parts.slice(1).join(" ").replaceAll("_", " ");
  if (parts.length >= 2) return `${parts[0].toUpperCase()} event ${parts[1]}`;
  return kind.replaceAll("_", " ");
}

/** cmsv6/protocols/jt808/jsonable.py PARAM_NAMES, the ones a dispatcher meets. */
export const PARAM_NAMES = {
  "0x0001": "heartbeat interval (s)", "0x0002": "TCP reply timeout (s)",
  "0x0003": "TCP retransmissions", "0x0004": "UDP reply timeout (s)",
  "0x0005": "UDP retransmissions", "0x0006": "SMS reply timeout (s)",
  "0x0007": "SMS retransmissions", "0x0010": "main server APN",
  "0x0013": "main server address", "0x0014": "backup server APN",
  "0x0017": "backup server address", "0x0018": "server TCP port", "0x0019": "server UDP port",
  "0x0020": "reporting strategy", "0x0021": "reporting scheme",
  "0x0022": "report interval with no driver (s)", "0x0027": "report interval when sleeping (s)",
  "0x0028": "report interval in emergency (s)", "0x0029": "default report interval (s)",
  "0x002C": "default report distance (m)", "0x0030": "corner re-send angle (°)",
  "0x0040": "monitoring platform phone number", "0x0050": "alarm mask",
  "0x0055": "top speed (km/h)", "0x0056": "overspeed duration (s)",
  "0x0057": "continuous driving limit (s)", "0x0058": "driving time per day (s)",
  "0x0059": "minimum rest (s)", "0x005A": "longest stop (s)",
  "0x0070": "image quality", "0x0071": "brightness", "0x0072": "contrast",
  "0x0073": "saturation", "0x0074": "chroma", "0x0075": "audio/video parameters",
  "0x0076": "audio/video channels", "0x0080": "odometer (0.1 km)", "0x0081": "province id",
  "0x0082": "city id", "0x0083": "plate", "0x0084": "plate colour",
};

export function paramName(id) {
  return PARAM_NAMES[String(id).replace(/^0x/i, "0x").toUpperCase().replace("0X", "0x")] || "";
}
