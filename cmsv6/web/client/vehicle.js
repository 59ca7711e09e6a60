// The selected vehicle's panel: what it is and where it was last, and commands through
// POST /api/v1/devices/{phone}/commands — a text message (0x8300), query parameters
// (0x8104), query position (0x8201), take a photo (0x8801) — each answer shown in
// #cmd-replies as a `.reply` (data-status "pending", then "replied" or "error"), a photo's
// file shown when it arrives (GET .../media lists it; the file is fetched with the token
// as a blob, an <img> could not send it).

import {request} from "./api.js";
import {alarmNames, el, fmtTime, paramName} from "./util.js";

const RESULTS = {0: "success", 1: "failure", 2: "wrong message", 3: "not supported", 4: "alarm confirmed"};
const PHOTO_WAIT = 30000;  // ms a photo's file is waited for after the device answered
const PHOTO_POLL = 1000;

export function mount(element, ctx) {
  const panel = document.getElementById("vehicle-panel");
  const title = el("h2#vehicle-title", {text: "No vehicle selected"});
  const facts = el("dl#vehicle-facts.facts");
  const hint = el("p#vehicle-hint.muted", {text: "Select a vehicle in the list or on the map."});

  const textInput = el("input#cmd-text-input", {type: "text", maxlength: 1000, placeholder: "Text for the driver's display"});
  const textButton = el("button#cmd-text", {type: "submit", text: "Send text"});
  const textForm = el("form#cmd-text-form.cmd-row", {}, textInput, textButton);
  const paramsButton = el("button#cmd-params", {type: "button", text: "Query parameters"});
  const positionButton = el("button#cmd-position", {type: "button", text: "Query position"});
  const channel = el("select#cmd-photo-channel", {"aria-label": "camera channel"});
  const photoButton = el("button#cmd-photo", {type: "button", text: "Take photo"});
  const watchButton = el("button#cmd-watch", {type: "button", text: "Watch its cameras"});
  const replies = el("ul#cmd-replies", {"aria-live": "polite"});
  const commands = el("div#vehicle-commands", {},
    el("h3", {text: "Commands"}), textForm,
    el("div.cmd-row", {}, paramsButton, positionButton),
    el("div.cmd-row", {}, el("label", {}, "Camera ", channel), photoButton),
    el("div.cmd-row", {}, watchButton),
    el("h3", {text: "Replies"}), replies);
  // Talk-back (talk.js mounts in #talk-box) goes between the facts and the commands.
  const talk = document.getElementById("talk-box");
  element.append(title, hint, facts);
  if (talk) element.append(el("h3", {text: "Talk to the driver"}), talk);
  element.append(commands);

  const history = new Map();  // phone → [li] of its replies, newest first
  const buttons = [textButton, paramsButton, positionButton, photoButton, watchButton];
  // The video wall (video.js) shows the selected vehicle's cameras.
  watchButton.addEventListener("click", () => {
    const phone = ctx.store.selected;
    if (!phone) return;
    location.hash = "#video";
    ctx.emit("watch", {phone});
  });

  function show() {
    const phone = ctx.store.selected;
    const vehicle = phone && ctx.store.vehicles.get(phone);
    panel.dataset.phone = phone || "";
    hint.hidden = !!vehicle;
    for (const button of buttons) button.disabled = !vehicle;
    textInput.disabled = !vehicle;
    if (!vehicle) {
      title.textContent = "No vehicle selected";
      facts.replaceChildren();
      replies.replaceChildren();
      return;
    }
    title.textContent = vehicle.plate || vehicle.phone;
    describe(vehicle);
    const chosen = channel.value;
    const count = Math.max(1, vehicle.channels || 1);
    channel.replaceChildren(...Array.from({length: count}, (_, i) => el("option", {value: String(i + 1), text: String(i + 1)})));
    if (chosen && Number(chosen) <= count) channel.value = chosen;
    replies.replaceChildren(...(history.get(phone) || []));
  }

  function describe(vehicle) {
    const rows = [
      ["Phone", vehicle.phone],
      ["Fleet", vehicle.fleet || "none"],
      ["State", (vehicle.online ? `online (${vehicle.gateway || "?"})` : "offline") + (vehicle.disabled ? `, disabled ${fmtTime(vehicle.disabled)}` : "")],
      ["Protocol", `JT/T 808-${vehicle.protocol || "?"} · ${vehicle.channels || 0} cameras`],
    ];
    const p = vehicle.last_position;
    if (p) {
      rows.push(["Last report", fmtTime(p.time)],
        ["Speed", `${p.speed} km/h, heading ${p.direction}°`],
        ["Where", `${p.latitude.toFixed(6)}, ${p.longitude.toFixed(6)} · ${p.altitude} m`],
        ["Status", statusWords(p.status)]);
      if (p.alarm) rows.push(["Alarm", alarmNames(p.alarm).join(", ")]);
      const extras = p.extras || {};
      if (extras["0x01"] !== undefined) rows.push(["Odometer", `${(extras["0x01"] / 10).toFixed(1)} km`]);
      if (extras["0x30"] !== undefined || extras["0x31"] !== undefined) {
        rows.push(["Signal", `GSM ${extras["0x30"] ?? "?"} · ${extras["0x31"] ?? "?"} satellites`]);
      }
    } else {
      rows.push(["Last report", "none yet"]);
    }
    facts.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {text: k}), el("dd", {text: v})]));
    facts.querySelector("dd:nth-of-type(3)").classList.toggle("online", !!vehicle.online);
  }

  /** A `.reply` for the vehicle, kept in its history, updated by the returned function. */
  function reply(phone, what) {
    const status = el("span.reply-status", {text: "waiting for the device…"});
    const body = el("div.reply-body");
    const li = el("li.reply.pending", {dataset: {status: "pending", command: what}},
      el("div.reply-head", {}, el("strong", {text: what}), el("span.muted", {text: fmtTime(new Date())}), status),
      body);
    const list = history.get(phone) || [];
    list.unshift(li);
    list.splice(30);  // the 30 latest
    history.set(phone, list);
    if (ctx.store.selected === phone) replies.prepend(li);
    return {
      li,
      body,
      done(words, ...content) {
        li.classList.remove("pending");
        li.dataset.status = "replied";
        status.textContent = words;
        body.replaceChildren(...content);
      },
      fail(e) {
        li.classList.remove("pending");
        li.classList.add("error");
        li.dataset.status = "error";
        status.textContent = "failed";
        body.replaceChildren(el("p.error", {text: e.message}));
      },
      add(...content) {
        body.append(...content);
      },
    };
  }

  async function send(phone, what, command, answer) {
    const r = reply(phone, what);
    try {
      const result = await ctx.api("POST", `/api/v1/devices/${phone}/commands`, command);
      await answer(result, r);
    } catch (e) {
      r.fail(e);
    }
    return r;
  }

  textForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const phone = ctx.store.selected;
    const text = textInput.value.trim();
    if (!phone) return;
    if (!text) {
      ctx.toast("Write the text to send first.", "error");
      textInput.focus();
      return;
    }
    send(phone, `Text: “${text}”`, {type: "text", text}, (result, r) => {
      r.done(general(result.reply), details(result));
      textInput.value = "";
    });
  });

  paramsButton.addEventListener("click", () => {
    const phone = ctx.store.selected;
    if (!phone) return;
    send(phone, "Query parameters", {type: "query_parameters"}, (result, r) => {
      const body = result.reply.body || {};
      if (!Array.isArray(body.params)) return r.done(general(result.reply), details(result));
      const table = el("table.params", {},
        el("thead", {}, el("tr", {}, el("th", {text: "id"}), el("th", {text: "parameter"}), el("th", {text: "value"}))),
        el("tbody", {}, ...body.params.map(([id, value]) => el("tr", {},
          el("td", {text: id}), el("td", {text: paramName(id)}),
          el("td", {text: typeof value === "object" ? JSON.stringify(value) : String(value)})))));
      r.done(`${body.params.length} parameters`, table, details(result));
    });
  });

  positionButton.addEventListener("click", () => {
    const phone = ctx.store.selected;
    if (!phone) return;
    send(phone, "Query position", {type: "query_position"}, (result, r) => {
      const location = (result.reply.body || {}).location;
      if (!location) return r.done(general(result.reply), details(result));
      const alarms = location.alarm ? ` · alarm: ${alarmNames(location.alarm).join(", ")}` : "";
      r.done(`at ${fmtTime(location.time)}`,
        el("p", {text: `${location.latitude.toFixed(6)}, ${location.longitude.toFixed(6)} · ` +
          `${location.speed} km/h, heading ${location.direction}° · ${statusWords(location.status)}${alarms}`}),
        details(result));
      if (ctx.store.update({phone, received: new Date().toISOString(), ...location})) ctx.emit("vehicle", phone);
    });
  });

  photoButton.addEventListener("click", async () => {
    const phone = ctx.store.selected;
    if (!phone) return;
    const ch = Number(channel.value || 1);
    // The files already there, so that the new one is known when it comes.
    let before;
    try {
      before = new Set((await ctx.api("GET", `/api/v1/devices/${phone}/media?limit=100`)).map((m) => m.id));
    } catch (e) {
      before = null;
    }
    send(phone, `Take photo (camera ${ch})`, {type: "take_photo", channel: ch}, async (result, r) => {
      const body = result.reply.body || {};
      if (!Array.isArray(body.media_ids)) return r.done(general(result.reply), details(result));
      if (body.result !== undefined && body.result !== 0) {
        return r.done(`the device did not take it (${RESULTS[body.result] || body.result})`, details(result));
      }
      r.done(`taken (media ${body.media_ids.join(", ")}); waiting for the file…`, details(result));
      r.li.dataset.photo = "waiting";
      waitForPhotos(phone, body.media_ids, before, r);
    });
  });

  async function waitForPhotos(phone, mediaIds, before, r) {
    const wanted = new Set(mediaIds);
    const shown = new Set();
    const deadline = Date.now() + PHOTO_WAIT;
    const status = r.li.querySelector(".reply-status");
    while (Date.now() < deadline && shown.size < wanted.size) {
      await new Promise((resolve) => setTimeout(resolve, PHOTO_POLL));
      let media;
      try {
        media = await ctx.api("GET", `/api/v1/devices/${phone}/media?limit=50`);
      } catch (e) {
        r.add(el("p.error", {text: `The photo list could not be read: ${e.message}`}));
        r.li.dataset.photo = "error";
        return;
      }
      for (const file of media) {
        if (!wanted.has(file.media_id) || shown.has(file.media_id)) continue;
        if (before ? before.has(file.id) : false) continue;
        shown.add(file.media_id);
        r.add(await photo(file));
      }
    }
    if (shown.size < wanted.size) {
      status.textContent = `taken; the file has not arrived within ${PHOTO_WAIT / 1000} s`;
      r.li.dataset.photo = "late";
    } else {
      status.textContent = shown.size > 1 ? `${shown.size} photos arrived` : "the photo arrived";
      r.li.dataset.photo = "shown";
    }
  }

  async function photo(file) {
    const caption = el("figcaption.muted", {text: `camera ${file.channel} · ${fmtTime(file.time || file.received)} · ${file.size} bytes`});
    try {
      const response = await request("GET", file.url);
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const download = el("a", {href: url, download: `${file.phone}-${file.media_id}-${file.channel}`, text: `download (${file.content_type})`});
      const figure = el("figure.reply-photo", {dataset: {mediaId: String(file.id)}}, caption, " ", download);
      if (file.media_type === 0) {
        const image = el("img.photo", {src: url, alt: `photo ${file.media_id} of camera ${file.channel}`});
        image.addEventListener("error", () => {
          image.replaceWith(el("p.error", {text: `The file (${file.size} bytes, ${file.content_type}) does not decode as a picture.`}));
          figure.dataset.decoded = "false";
        });
        image.addEventListener("load", () => { figure.dataset.decoded = "true"; });
        figure.prepend(image);
      }
      return figure;
    } catch (e) {
      return el("p.error", {text: `The photo could not be downloaded: ${e.message}`});
    }
  }

  ctx.on("select", show);
  ctx.on("vehicle", (phone) => {
    if (phone === ctx.store.selected) describe(ctx.store.vehicles.get(phone));
  });
  ctx.on("vehicles", () => {
    if (ctx.store.selected && ctx.store.vehicles.has(ctx.store.selected)) describe(ctx.store.vehicles.get(ctx.store.selected));
    else if (ctx.store.selected) ctx.select(null);
  });
  show();
}

/** A general answer (0x0001) in words, or the reply's message id. */
function general(reply) {
  const body = reply.body || {};
  if (reply.msg_id === "0x0001" && body.result !== undefined) {
    return body.result === 0 ? "done (the device said: success)" : `the device said: ${RESULTS[body.result] || body.result}`;
  }
  return `answered ${reply.msg_id}`;
}

/** The whole answer, folded away, for those who want the fields. */
function details(result) {
  return el("details", {}, el("summary", {text: `command ${result.command} · ${result.status}`}),
    el("pre", {text: JSON.stringify(result.reply, null, 1)}));
}

/** The 0x0200 status bits a dispatcher reads: ACC and fix. */
function statusWords(status) {
  const words = [status & 1 ? "ACC on" : "ACC off", status & 2 ? "located" : "not located"];
  if (status & 0x10) words.push("stopped (operation)");
  return words.join(", ");
}
