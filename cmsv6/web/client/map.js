// The map (Leaflet): a marker per vehicle with its heading (an arrow turned to `direction`),
// moved by the positions pushed over /ws. Each marker's element has the class
// `vehicle-marker` and data-phone, data-lat, data-lng kept current (the browser tests read
// them). Tiles come from config.tiles; with none, or none reachable, the map is a plain
// background and the positions are drawn all the same.

import {alarmNames, el, fmtTime} from "./util.js";

const ARROW = '<svg viewBox="0 0 24 24" width="24" height="24" aria-hidden="true">' +
  '<path d="M12 2 L20 21 L12 16.5 L4 21 Z"/></svg>';

export function mount(element, ctx) {
  const map = L.map(element, {zoomControl: true, worldCopyJump: true, attributionControl: true});
  map.setView([22.55, 114.05], 11);  // until the vehicles are known
  L.control.scale({imperial: false}).addTo(map);
  const notice = addNotice(map);
  addTiles(map, ctx.config, notice);

  const markers = new Map();  // phone → L.marker
  let fitted = false;
  let spot = null;  // the place ctx.map.show marked

  function place(vehicle) {
    const p = vehicle.last_position;
    if (!p || typeof p.latitude !== "number" || typeof p.longitude !== "number") return null;
    let marker = markers.get(vehicle.phone);
    if (!marker) {
      const icon = L.divIcon({
        className: "vehicle-marker",
        html: `<div class="arrow">${ARROW}</div><span class="label"></span>`,
        iconSize: [24, 24],
        iconAnchor: [12, 12],
      });
      marker = L.marker([p.latitude, p.longitude], {icon, keyboard: true, title: vehicle.plate || vehicle.phone});
      marker.on("click", () => ctx.select(vehicle.phone));
      marker.bindTooltip("", {direction: "top", offset: [0, -12]});
      marker.addTo(map);
      markers.set(vehicle.phone, marker);
    } else {
      marker.setLatLng([p.latitude, p.longitude]);
    }
    const node = marker.getElement();
    if (node) {
      node.dataset.phone = vehicle.phone;
      node.dataset.lat = String(p.latitude);
      node.dataset.lng = String(p.longitude);
      node.dataset.direction = String(p.direction ?? 0);
      node.classList.toggle("online", !!vehicle.online);
      node.classList.toggle("alarming", !!p.alarm);
      node.classList.toggle("selected", ctx.store.selected === vehicle.phone);
      node.querySelector(".arrow").style.transform = `rotate(${p.direction || 0}deg)`;
      node.querySelector(".label").textContent = vehicle.plate || vehicle.phone;
    }
    const alarms = p.alarm ? ` · alarm: ${alarmNames(p.alarm).join(", ")}` : "";
    marker.setTooltipContent(el("div", {}, `${vehicle.plate || ""} ${vehicle.phone}`, el("br"),
      `${Math.round(p.speed)} km/h · ${p.direction}° · ${fmtTime(p.time)}${alarms}`));
    return marker;
  }

  function drawAll() {
    for (const vehicle of ctx.store.vehicles.values()) place(vehicle);
    for (const [phone, marker] of markers) {
      if (!ctx.store.vehicles.has(phone)) {
        marker.remove();
        markers.delete(phone);
      }
    }
    element.classList.toggle("many", markers.size > 200);
  }

  function fit() {
    const points = [...markers.values()].map((m) => m.getLatLng());
    if (points.length === 1) map.setView(points[0], 14);
    else if (points.length) map.fitBounds(L.latLngBounds(points), {padding: [30, 30], maxZoom: 15});
  }

  function focus(phone) {
    if (spot) {
      spot.remove();
      spot = null;
    }
    for (const [p, marker] of markers) {
      const node = marker.getElement();
      if (node) node.classList.toggle("selected", p === phone);
      marker.setZIndexOffset(p === phone ? 1000 : 0);
    }
    const marker = markers.get(phone);
    if (marker && !map.getBounds().pad(-0.1).contains(marker.getLatLng())) map.panTo(marker.getLatLng());
  }

  ctx.on("vehicles", ({initial}) => {
    drawAll();
    if (!fitted && markers.size) {
      fit();
      fitted = true;
    }
  });
  ctx.on("vehicle", (phone) => {
    const vehicle = ctx.store.vehicles.get(phone);
    if (vehicle) place(vehicle);
    if (!fitted && markers.size) {
      fit();
      fitted = true;
    }
  });
  ctx.on("select", focus);
  ctx.on("filter", (shown) => {
    for (const [phone, marker] of markers) {
      const node = marker.getElement();
      if (node) node.classList.toggle("filtered-out", !shown.has(phone));
    }
  });
  ctx.on("view", (name) => {
    if (name === "map") setTimeout(() => map.invalidateSize(), 0);
  });
  new ResizeObserver(() => map.invalidateSize()).observe(element);

  ctx.map = {
    leaflet: map,
    markers,
    fit,
    /** Show a place (an alarm's, say) on the map, marked with `label` until the next. */
    show(lat, lng, label = "", zoom = 15) {
      if (spot) spot.remove();
      spot = L.circleMarker([lat, lng], {radius: 9, color: "#dc2626", weight: 3, fillOpacity: 0.15, className: "map-spot"});
      if (label) spot.bindTooltip(label, {permanent: true, direction: "right", offset: [10, 0]});
      spot.addTo(map);
      // The map may be hidden at this moment (the tab is switching): place it once shown.
      setTimeout(() => {
        map.invalidateSize();
        map.setView([lat, lng], Math.max(map.getZoom(), zoom));
      }, 0);
    },
  };
  window.cmsv6 = Object.assign(window.cmsv6 || {}, {map: ctx.map});
}

/** A line of words in the map's corner (why there is no background, say). */
function addNotice(map) {
  const Notice = L.Control.extend({
    onAdd() {
      this.node = el("div#map-notice.map-notice", {hidden: true});
      L.DomEvent.disableClickPropagation(this.node);
      return this.node;
    },
  });
  const control = new Notice({position: "bottomleft"});
  control.addTo(map);
  return (text) => {
    control.node.textContent = text || "";
    control.node.hidden = !text;
  };
}

/** A faint grid that moves with the map: the plain background's sense of place and motion. */
function addGrid(map) {
  const Grid = L.GridLayer.extend({
    createTile() {
      return el("div.grid-tile");
    },
  });
  new Grid({tileSize: 128, zIndex: 0}).addTo(map);
}

function addTiles(map, config, notice) {
  addGrid(map);
  if (!config.tiles) {
    notice("No map tiles configured ([web] tiles): positions on a plain background.");
    return;
  }
  let loaded = 0, failed = 0;
  const layer = L.tileLayer(config.tiles, {
    attribution: config.attribution || "",
    maxZoom: 19,
    crossOrigin: false,
  });
  layer.on("tileload", () => {
    loaded++;
    notice("");
  });
  layer.on("tileerror", () => {
    failed++;
    if (!loaded && failed >= 2) {
      let host = config.tiles;
      try {
        host = new URL(config.tiles.replace(/\{[^}]+\}/g, "0"), location.href).host;
      } catch (e) { /* the template as written */ }
      notice(`The map tiles cannot be loaded (${host}): positions on a plain background.`);
    }
  });
  layer.addTo(map);
}
