// The vehicles the user may see: `vehicles` is a Map phone → the device's JSON of
// GET /api/v1/devices, its `last_position` replaced by each newer position pushed over the
// client WebSocket; `selected` is the phone selected everywhere (or null).

import {allPages} from "./api.js";

export function createStore() {
  return {
    vehicles: new Map(),
    selected: null,

    /** Read every device again (paged); answers the phones that are new. */
    async load() {
      const devices = await allPages("/api/v1/devices?limit=1000");
      const seen = new Set();
      const added = [];
      for (const device of devices) {
        seen.add(device.phone);
        const old = this.vehicles.get(device.phone);
        if (!old) added.push(device.phone);
        // A position pushed since may be newer than the list's.
        if (old && newer(old.last_position, device.last_position)) device.last_position = old.last_position;
        this.vehicles.set(device.phone, device);
      }
      for (const phone of [...this.vehicles.keys()]) if (!seen.has(phone)) this.vehicles.delete(phone);
      return added;
    },

    /** Take a pushed position ({type: "position", phone, ...}); answers the vehicle, or
     * null for a vehicle not in the list or a position older than the one known. */
    update(position) {
      const vehicle = this.vehicles.get(position.phone);
      if (!vehicle) return null;
      const {type, phone, ...fields} = position;
      if (newer(vehicle.last_position, fields)) return null;
      vehicle.last_position = fields;
      vehicle.online = true;  // it just reported
      return vehicle;
    },

    /** The fleets of the vehicles, sorted ("" for vehicles of no fleet). */
    fleets() {
      return [...new Set([...this.vehicles.values()].map((v) => v.fleet || ""))].sort();
    },

    label(phone) {
      const vehicle = this.vehicles.get(phone);
      return vehicle && vehicle.plate ? `${vehicle.plate} (${phone})` : phone;
    },
  };
}

/** Whether position a is strictly newer than b (by device time, then receipt). */
function newer(a, b) {
  if (!a) return false;
  if (!b) return true;
  const ta = Date.parse(a.time), tb = Date.parse(b.time);
  if (ta !== tb) return ta > tb;
  return Date.parse(a.received || 0) > Date.parse(b.received || 0);
}
