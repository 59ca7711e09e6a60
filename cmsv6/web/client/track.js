// Track replay: a vehicle and a time range → its positions (GET /api/v1/devices/{phone}/
// positions, every page) drawn as a line, replayed point by point (×1 to ×16 points per
// tick) with the point's time and speed in #track-info and the map following it, and a
// speed-over-time chart (uPlot) under the map whose cursor moves with the replay and which
// marks the alarms: positions with alarm bits and the device's alarms of GET /api/v1/alarms.

import {logPages} from "./api.js";
import {alarmNames, el, fmtTime, kindName, localInput} from "./util.js";

const TICK = 250;          // ms between replay steps
const MAX_POINTS = 100000; // positions read for one track at most
const ARROW = '<svg viewBox="0 0 24 24" width="26" height="26" aria-hidden="true"><path d="M12 2 L20 21 L12 16.5 L4 21 Z"/></svg>';

/** An axis tick in 24-hour time: seconds shown when the range is short, the day when long. */
function clock(seconds, span) {
  const text = fmtTime(new Date(seconds * 1000));
  if (span > 2 * 86400) return text.slice(5, 16);
  return span < 600 ? text.slice(11) : text.slice(11, 16);
}

export function mount(element, ctx) {
  const vehicle = el("select", {name: "vehicle", "aria-label": "vehicle", required: true});
  const from = el("input", {type: "datetime-local", name: "from", required: true});
  const to = el("input", {type: "datetime-local", name: "to", title: "empty: until now"});
  const show = el("button#track-show", {type: "submit", text: "Show track"});
  const clear = el("button#track-clear", {type: "button", text: "Clear", disabled: true});
  const form = el("form#track-form.track-row", {},
    el("label", {}, "Track of ", vehicle), el("label", {}, "from ", from), el("label", {}, "to ", to), show, clear);
  const play = el("button#track-play", {type: "button", text: "Play", disabled: true, dataset: {state: "empty"}});
  const speed = el("select#track-speed", {"aria-label": "replay speed"},
    ...[1, 2, 4, 8, 16].map((n) => el("option", {value: String(n), text: `×${n}`})));
  const seek = el("input#track-seek", {type: "range", min: 0, max: 0, value: 0, disabled: true, "aria-label": "replay position"});
  const info = el("span#track-info", {text: "Pick a vehicle and a time range."});
  const controls = el("div.track-row", {}, play, speed, seek, info);
  const chart = el("div#speed-chart", {hidden: true});
  element.append(form, controls, chart);

  const now = new Date();
  from.value = localInput(new Date(now.getTime() - 3600 * 1000));

  const layers = L.layerGroup().addTo(ctx.map.leaflet);
  let track = null;  // {phone, points, alarms, index, marker, plot, line}
  let timer = null;

  function vehicles() {
    const chosen = vehicle.value || ctx.store.selected || "";
    const all = [...ctx.store.vehicles.values()].sort((a, b) => (a.plate || a.phone).localeCompare(b.plate || b.phone));
    vehicle.replaceChildren(el("option", {value: "", text: "(choose)"}),
      ...all.map((v) => el("option", {value: v.phone, text: v.plate ? `${v.plate} ${v.phone}` : v.phone})));
    vehicle.value = ctx.store.vehicles.has(chosen) ? chosen : "";
  }

  async function load(event) {
    event.preventDefault();
    const phone = vehicle.value;
    const start = new Date(from.value);
    const end = to.value ? new Date(to.value) : new Date();
    if (!phone) return say("Choose the vehicle first.", true);
    if (isNaN(start)) return say("The start of the range is not a time.", true);
    if (isNaN(end)) return say("The end of the range is not a time.", true);
    if (start >= end) return say("The start of the range must be before its end.", true);
    stop();
    show.disabled = true;
    say(`Reading the track of ${ctx.store.label(phone)}…`);
    const range = `from=${encodeURIComponent(start.toISOString())}&to=${encodeURIComponent(end.toISOString())}`;
    try {
      const [positions, alarms] = await Promise.all([
        logPages(`/api/v1/devices/${phone}/positions?${range}&limit=1000`, "positions", MAX_POINTS),
        logPages(`/api/v1/alarms?device=${phone}&${range}&limit=1000`, "alarms", 5000).catch((e) => {
          ctx.error("The alarms of the track could not be read", e);
          return {items: [], complete: true};
        }),
      ]);
      draw(phone, positions.items, alarms.items);
      if (!positions.complete) ctx.toast(`Only the first ${positions.items.length} positions are drawn: choose a shorter range.`, "info");
    } catch (e) {
      say(e.message, true);
      ctx.error("The track could not be read", e);
    } finally {
      show.disabled = false;
    }
  }

  function say(text, error = false) {
    info.textContent = text;
    info.classList.toggle("error", error);
  }

  function reset() {
    stop();
    layers.clearLayers();
    if (track && track.plot) track.plot.destroy();
    track = null;
    chart.hidden = true;
    chart.replaceChildren();
    play.disabled = seek.disabled = clear.disabled = true;
    play.dataset.state = "empty";
    play.textContent = "Play";
    seek.max = 0;
    delete info.dataset.index;
    delete info.dataset.time;
  }

  function draw(phone, positions, alarms) {
    reset();
    // A report without a fix may carry 0, 0: it is no place to draw.
    const points = positions.filter((p) => typeof p.latitude === "number" && typeof p.longitude === "number" &&
      !(p.latitude === 0 && p.longitude === 0));
    if (!points.length) {
      say(`${ctx.store.label(phone)} reported no position in this range.`);
      return;
    }
    const latlngs = points.map((p) => [p.latitude, p.longitude]);
    const line = L.polyline(latlngs, {color: "#1668dc", weight: 4, opacity: 0.8, className: "track-line"}).addTo(layers);
    L.circleMarker(latlngs[0], {radius: 6, color: "#fff", weight: 2, fillColor: "#16a34a", fillOpacity: 1})
      .bindTooltip(`start ${fmtTime(points[0].time)}`).addTo(layers);
    L.circleMarker(latlngs.at(-1), {radius: 6, color: "#fff", weight: 2, fillColor: "#111827", fillOpacity: 1})
      .bindTooltip(`end ${fmtTime(points.at(-1).time)}`).addTo(layers);

    // Where alarms happened: each position whose alarm bits rise, and each recorded alarm.
    const marks = [];
    points.forEach((p, i) => {
      const before = i ? points[i - 1].alarm : 0;
      if (p.alarm && (p.alarm & ~before)) marks.push({time: Date.parse(p.time) / 1000, lat: p.latitude, lng: p.longitude, what: alarmNames(p.alarm & ~before).join(", ")});
    });
    for (const alarm of alarms) {
      const t = Date.parse(alarm.started) / 1000;
      if (marks.some((m) => Math.abs(m.time - t) < 1)) continue;  // the same, seen in the bits
      marks.push({time: t, lat: alarm.latitude, lng: alarm.longitude, what: kindName(alarm.kind)});
    }
    for (const mark of marks) {
      if (typeof mark.lat !== "number") continue;
      L.circleMarker([mark.lat, mark.lng], {radius: 5, color: "#fff", weight: 1.5, fillColor: "#dc2626", fillOpacity: 1, className: "track-alarm"})
        .bindTooltip(`${mark.what} · ${fmtTime(new Date(mark.time * 1000))}`).addTo(layers);
    }

    const icon = L.divIcon({className: "track-marker", html: ARROW, iconSize: [26, 26], iconAnchor: [13, 13]});
    const marker = L.marker(latlngs[0], {icon, zIndexOffset: 2000, interactive: false}).addTo(layers);
    track = {phone, points, marks, index: 0, marker, line, plot: null};
    ctx.map.leaflet.fitBounds(line.getBounds(), {padding: [30, 30], maxZoom: 16});
    seek.max = String(points.length - 1);
    play.disabled = seek.disabled = clear.disabled = false;
    play.dataset.state = "paused";
    chart.hidden = false;
    track.plot = plot(points, marks);
    moveTo(0);
    window.cmsv6.track = track;
  }

  function plot(points, marks) {
    const xs = points.map((p) => Date.parse(p.time) / 1000);
    const speeds = points.map((p) => p.speed);
    const width = Math.max(200, chart.clientWidth || element.clientWidth || 600);
    const options = {
      width,
      height: 150,
      cursor: {drag: {x: false, y: false}, points: {size: 8}},
      legend: {show: true, live: true},
      scales: {x: {time: true}},
      series: [
        {value: (u, v) => (v === null ? "–" : fmtTime(new Date(v * 1000)))},
        {label: "Speed", stroke: "#1668dc", width: 1.5, fill: "rgba(22,104,220,0.08)",
         value: (u, v) => (v === null ? "–" : `${v.toFixed(1)} km/h`)},
      ],
      axes: [{values: (u, splits) => splits.map((v) => clock(v, u.scales.x.max - u.scales.x.min))},
             {label: "km/h", size: 50}],
      hooks: {
        draw: [(u) => {
          // The alarms: red lines where they happened.
          const c = u.ctx;
          c.save();
          c.strokeStyle = "#dc2626";
          c.fillStyle = "#dc2626";
          c.lineWidth = 1.5 * devicePixelRatio;
          for (const mark of marks) {
            const x = Math.round(u.valToPos(mark.time, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            c.beginPath();
            c.moveTo(x, u.bbox.top);
            c.lineTo(x, u.bbox.top + u.bbox.height);
            c.stroke();
            c.beginPath();
            c.arc(x, u.bbox.top + 4 * devicePixelRatio, 3.5 * devicePixelRatio, 0, 2 * Math.PI);
            c.fill();
          }
          c.restore();
        }],
      },
    };
    const u = new uPlot(options, [xs, speeds], chart);
    // A click on the chart moves the replay there.
    u.over.addEventListener("click", () => {
      if (u.cursor.idx !== null && u.cursor.idx !== undefined) moveTo(u.cursor.idx);
    });
    chart.dataset.alarms = String(marks.length);
    chart.dataset.points = String(points.length);
    return u;
  }

  function moveTo(index) {
    if (!track) return;
    const n = track.points.length;
    index = Math.max(0, Math.min(n - 1, index));
    track.index = index;
    const p = track.points[index];
    const latlng = [p.latitude, p.longitude];
    track.marker.setLatLng(latlng);
    const node = track.marker.getElement();
    if (node) {
      node.querySelector("svg").style.transform = `rotate(${p.direction || 0}deg)`;
      node.dataset.lat = String(p.latitude);
      node.dataset.lng = String(p.longitude);
      node.dataset.index = String(index);
    }
    seek.value = String(index);
    const alarms = p.alarm ? ` · alarm: ${alarmNames(p.alarm).join(", ")}` : "";
    say(`${fmtTime(p.time)} · ${p.speed} km/h · ${p.direction}° · point ${index + 1} of ${n}${alarms}`);
    info.dataset.index = String(index);
    info.dataset.time = p.time;
    info.dataset.speed = String(p.speed);
    if (track.plot) {
      const u = track.plot;
      u.setCursor({left: u.valToPos(Date.parse(p.time) / 1000, "x"), top: u.valToPos(p.speed, "y")});
    }
    // The map follows the replayed point when it nears the edge.
    const map = ctx.map.leaflet;
    if (!map.getBounds().pad(-0.2).contains(latlng)) map.panTo(latlng, {animate: true, duration: 0.2});
  }

  function start() {
    if (!track) return;
    if (track.index >= track.points.length - 1) moveTo(0);
    play.textContent = "Pause";
    play.dataset.state = "playing";
    play.setAttribute("aria-pressed", "true");
    timer = setInterval(() => {
      const next = track.index + Number(speed.value);
      if (next >= track.points.length - 1) {
        moveTo(track.points.length - 1);
        stop();
      } else {
        moveTo(next);
      }
    }, TICK);
  }

  function stop() {
    clearInterval(timer);
    timer = null;
    play.textContent = "Play";
    play.setAttribute("aria-pressed", "false");
    if (track) play.dataset.state = "paused";
  }

  form.addEventListener("submit", load);
  play.addEventListener("click", () => (timer ? stop() : start()));
  seek.addEventListener("input", () => moveTo(Number(seek.value)));
  clear.addEventListener("click", () => {
    reset();
    say("Pick a vehicle and a time range.");
  });
  vehicle.addEventListener("change", () => {
    if (vehicle.value) ctx.select(vehicle.value);
  });
  ctx.on("select", (phone) => {
    if (phone) vehicle.value = phone;
  });
  ctx.on("vehicles", vehicles);
  new ResizeObserver(() => {
    if (track && track.plot && !chart.hidden) track.plot.setSize({width: Math.max(200, chart.clientWidth), height: 150});
  }).observe(chart);
  window.cmsv6 = Object.assign(window.cmsv6 || {}, {track: null});
}
