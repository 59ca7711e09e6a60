// The vehicle list: every vehicle with its online state and latest report, a search by
// plate or phone, a filter by fleet. Clicking one selects it everywhere. The filter is
// told to the map too (ctx.emit("filter", Set of phones shown)).

import {ago, el} from "./util.js";

export function mount(element, ctx) {
  const search = el("input#vehicle-search", {type: "search", placeholder: "Search plate or phone", autocomplete: "off"});
  const fleet = el("select#fleet-filter", {"aria-label": "fleet"}, el("option", {value: "*", text: "All fleets"}));
  const summary = el("p#vehicle-summary.muted");
  const list = el("ul#vehicles", {role: "listbox", "aria-label": "vehicles"});
  element.append(el("div.list-tools", {}, search, fleet), summary, list);

  const items = new Map();  // phone → li

  function matches(vehicle) {
    const wanted = fleet.value;
    if (wanted !== "*" && (vehicle.fleet || "") !== wanted) return false;
    const words = search.value.trim().toLowerCase();
    if (!words) return true;
    return vehicle.phone.includes(words) || (vehicle.plate || "").toLowerCase().includes(words);
  }

  function describe(vehicle) {
    const p = vehicle.last_position;
    if (!p) return "no position yet";
    return `${Math.round(p.speed)} km/h · ${ago(p.time)}`;
  }

  function item(vehicle) {
    let li = items.get(vehicle.phone);
    if (!li) {
      li = el("li.vehicle", {dataset: {phone: vehicle.phone}, role: "option", tabindex: "0"},
        el("span.dot", {"aria-hidden": "true"}),
        el("span.plate"), el("span.phone"), el("span.fleet"), el("span.state"));
      li.addEventListener("click", () => ctx.select(vehicle.phone));
      li.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          ctx.select(vehicle.phone);
        }
      });
      items.set(vehicle.phone, li);
    }
    li.classList.toggle("online", !!vehicle.online);
    li.classList.toggle("alarming", !!(vehicle.last_position && vehicle.last_position.alarm));
    li.classList.toggle("selected", ctx.store.selected === vehicle.phone);
    li.setAttribute("aria-selected", ctx.store.selected === vehicle.phone ? "true" : "false");
    li.querySelector(".plate").textContent = vehicle.plate || "(no plate)";
    li.querySelector(".phone").textContent = vehicle.phone;
    li.querySelector(".fleet").textContent = vehicle.fleet || "";
    li.querySelector(".state").textContent = `${vehicle.online ? "online" : "offline"} · ${describe(vehicle)}`;
    li.title = vehicle.disabled ? `disabled since ${vehicle.disabled}` : "";
    return li;
  }

  function render() {
    const fleets = ctx.store.fleets();
    const chosen = fleet.value;
    fleet.replaceChildren(el("option", {value: "*", text: "All fleets"}),
      ...fleets.map((name) => el("option", {value: name, text: name || "(no fleet)"})));
    fleet.value = fleets.includes(chosen) ? chosen : "*";

    const vehicles = [...ctx.store.vehicles.values()].sort((a, b) =>
      (b.online - a.online) || (a.plate || a.phone).localeCompare(b.plate || b.phone));
    for (const phone of [...items.keys()]) if (!ctx.store.vehicles.has(phone)) items.delete(phone);
    const shown = vehicles.filter(matches);
    list.replaceChildren(...shown.map(item));
    const online = vehicles.filter((v) => v.online).length;
    summary.textContent = vehicles.length
      ? `${online} of ${vehicles.length} online` + (shown.length < vehicles.length ? ` · ${shown.length} shown` : "")
      : "No vehicles.";
    if (!shown.length && vehicles.length) list.append(el("li.empty.muted", {text: "No vehicle matches."}));
    ctx.emit("filter", new Set(shown.map((v) => v.phone)));
  }

  search.addEventListener("input", render);
  fleet.addEventListener("change", render);
  ctx.on("vehicles", render);
  ctx.on("vehicle", (phone) => {
    const vehicle = ctx.store.vehicles.get(phone);
    if (vehicle && items.has(phone)) item(vehicle);
  });
  ctx.on("select", (phone) => {
    for (const [p, li] of items) {
      li.classList.toggle("selected", p === phone);
      li.setAttribute("aria-selected", p === phone ? "true" : "false");
    }
    const li = items.get(phone);
    if (li && li.isConnected) li.scrollIntoView({block: "nearest"});
  });
  // "12 s ago" grows old by itself.
  setInterval(() => {
    for (const [phone, li] of items) if (li.isConnected) item(ctx.store.vehicles.get(phone));
  }, 5000);
}
