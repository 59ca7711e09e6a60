// Recordings and playback: a vehicle's recordings of one day (asked of the device now,
// JT/T 1078 0x9205, listed in the device's own time, +08:00), one of them played back over
// WS-FLV with mpegts.js (player.js), and controlled through the Open API
// (`POST /api/v1/playback/{session}/control`: mpegts.js owns the viewer's WebSocket, so the
// controls cannot go through it).
//
// For the browser tests: `window.cmsv6.playback = {player, video, session, state, position}`.

import { el, play } from "./player.js";

const DEVICE_ZONE = "+08:00"; // JT/T 1078 devices keep their recordings in Beijing time
const SPEEDS = [1, 2, 4, 8, 16];

// Device times are kept as written ("2026-12-01T09:32:38+08:00"): shown and sent back as
// they are, never through the browser's own zone.
function clock(iso) {
  return iso.slice(11, 19);
}
function day(iso) {
  return iso.slice(0, 10);
}
function epoch(iso) {
  return Date.parse(iso);
}
/** An epoch (ms) as the device's time, ISO 8601 with +08:00. */
function deviceIso(ms) {
  const d = new Date(ms + 8 * 3600e3);
  return d.toISOString().slice(0, 19) + DEVICE_ZONE;
}
function today() {
  return deviceIso(Date.now()).slice(0, 10);
}
function nextDay(isoDay) {
  const d = new Date(`${isoDay}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}
function size(bytes) {
  if (bytes == null) return "";
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(1)} GB`;
  return `${Math.round(bytes / 1e6)} MB`;
}

export function mount(element, ctx) {
  window.cmsv6 = window.cmsv6 || {};
  const state = { player: null, video: null, session: null, state: "idle", position: null };
  window.cmsv6.playback = state;

  const vehicle = el("select", { name: "vehicle", required: true });
  const channel = el("select", { name: "channel" });
  const date = el("input", { type: "date", name: "day", required: true, value: today() });
  const list = el("button", { type: "submit" }, "List recordings");
  const form = el("form", { id: "recordings-form" },
    el("label", {}, "Vehicle", vehicle), el("label", {}, "Channel", channel),
    el("label", {}, "Day (device time)", date), list);
  const listStatus = el("p", { class: "rec-note", id: "recordings-status" },
    `Times are the device's own clock (UTC${DEVICE_ZONE}), as it keeps its recordings.`);
  const recordings = el("ul", { id: "recording-list" });

  const video = el("video", { id: "playback-video", playsinline: true, autoplay: true });
  state.video = video;
  const message = el("div", { class: "pb-message", hidden: true });
  const pause = el("button", { type: "button", id: "pb-pause" }, "Pause");
  const resume = el("button", { type: "button", id: "pb-resume" }, "Resume");
  const speed = el("select", { id: "pb-speed", "aria-label": "speed" },
    ...SPEEDS.map((n) => el("option", { value: String(n), text: n === 1 ? "×1" : `×${n} fast` })));
  const seek = el("input", { id: "pb-seek", type: "time", step: "1", "aria-label": "seek to (device time)" });
  const seekGo = el("button", { type: "button", id: "pb-seek-go" }, "Go");
  const stop = el("button", { type: "button", id: "pb-stop" }, "Stop");
  const position = el("span", { id: "pb-position", title: "where the playback is, in device time (approximate)" });
  const status = el("div", { class: "pb-status", id: "pb-status", role: "status" });
  const title = el("div", { class: "pb-title" });
  const controls = [pause, resume, speed, seek, seekGo, stop];

  element.replaceChildren(el("div", { class: "recordings" },
    form, listStatus,
    el("div", { class: "rec-layout" },
      recordings,
      el("div", { class: "pb-player" },
        title,
        el("div", { class: "pb-screen" }, video, message),
        el("div", { class: "pb-controls" }, pause, resume, el("label", {}, "Speed ", speed),
          el("label", {}, "Seek to ", seek), seekGo, stop, position),
        status))));

  // -- the form ---------------------------------------------------------------------------

  function fillVehicles() {
    const current = vehicle.value || ctx.store.selected || "";
    const items = [...(ctx.store.vehicles || new Map()).values()].sort((a, b) =>
      String(a.plate || a.phone).localeCompare(String(b.plate || b.phone)));
    vehicle.replaceChildren(el("option", { value: "", text: "— vehicle —" }),
      ...items.map((d) => el("option", { value: d.phone, text: `${d.plate || d.phone} · ${d.phone}${d.online ? "" : " (offline)"}` })));
    vehicle.value = items.some((d) => d.phone === current) ? current : "";
    fillChannels();
  }
  function fillChannels() {
    const d = ctx.store.vehicles && ctx.store.vehicles.get(vehicle.value);
    const count = Math.max(1, Math.min(64, (d && d.channels) || 1));
    const current = channel.value || "1";
    channel.replaceChildren(el("option", { value: "0", text: "all" }),
      ...Array.from({ length: count }, (_, i) => el("option", { value: String(i + 1), text: `ch ${i + 1}` })));
    channel.value = Number(current) <= count ? current : "1";
  }
  vehicle.addEventListener("change", fillChannels);
  vehicle.addEventListener("focus", () => {
    if (vehicle.options.length <= 1) fillVehicles();
  });
  ctx.on("select", (phone) => {
    if (phone && ctx.store.vehicles && ctx.store.vehicles.has(phone)) {
      if (![...vehicle.options].some((o) => o.value === phone)) fillVehicles();
      vehicle.value = phone;
      fillChannels();
    }
  });
  fillVehicles();
  ctx.on("vehicles", fillVehicles); // the list (re)read by app.js
  let tries = 0;
  const poll = setInterval(() => {
    tries += 1;
    if (ctx.store.vehicles && ctx.store.vehicles.size && vehicle.options.length <= 1) fillVehicles();
    if (tries > 30 || vehicle.options.length > 1) clearInterval(poll);
  }, 500);

  let listing = 0;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const phone = vehicle.value;
    if (!phone || !date.value) {
      listStatus.textContent = "choose a vehicle and a day";
      listStatus.classList.add("error");
      return;
    }
    const mine = (listing += 1);
    const from = `${date.value}T00:00:00${DEVICE_ZONE}`;
    const to = `${nextDay(date.value)}T00:00:00${DEVICE_ZONE}`;
    const query = new URLSearchParams({ channel: channel.value, from, to });
    list.disabled = true;
    listStatus.classList.remove("error");
    listStatus.textContent = "asking the device for its recordings…";
    recordings.replaceChildren();
    try {
      const answer = await ctx.api("GET", `/api/v1/devices/${encodeURIComponent(phone)}/recordings?${query}`);
      if (mine !== listing) return;
      show(phone, answer.recordings || [], answer.device_time_zone || DEVICE_ZONE);
    } catch (err) {
      if (mine !== listing) return;
      listStatus.textContent = `the recordings could not be listed: ${err.message || err}`;
      listStatus.classList.add("error");
    } finally {
      if (mine === listing) list.disabled = false;
    }
  });

  function show(phone, items, zone) {
    items = [...items].sort((a, b) => epoch(a.start) - epoch(b.start) || a.channel - b.channel);
    listStatus.textContent = `${items.length} recording${items.length === 1 ? "" : "s"} on ${date.value};`
      + ` times are the device's own clock (UTC${zone}).`;
    if (!items.length) {
      recordings.replaceChildren(el("li", { class: "rec-empty", text: "The device has no recording of that day." }));
      return;
    }
    recordings.replaceChildren(...items.map((r) => {
      const li = el("li", {
        class: "recording", "data-channel": String(r.channel), "data-start": r.start, "data-end": r.end,
        "data-stream": r.stream, "data-storage": r.storage,
      },
      el("span", { class: "rec-time", text: `${clock(r.start)}–${clock(r.end)}` }),
      el("span", { class: "rec-meta" },
        `ch ${r.channel} · ${r.stream}${r.storage === "backup" ? " · backup" : ""} · ${r.media === "video" ? "video" : r.media === "audio" ? "audio" : "video+audio"} · ${size(r.size)}`,
        r.alarms && r.alarms.length ? el("span", { class: "rec-alarm", text: `alarms: ${r.alarms.join(", ")}` }) : ""),
      el("button", { type: "button", class: "recording-play" }, "Play"));
      li.querySelector(".recording-play").addEventListener("click", () => start(phone, r, li));
      return li;
    }));
  }

  // -- playing ----------------------------------------------------------------------------

  let current = null; // {phone, rec, li}
  let handle = null;
  let attempt = 0;
  // Where the device is in its recording: the device time of an anchor, and the player's
  // currentTime at that anchor; at ×N device time runs N times the player's.
  let anchor = null; // {device: ms, video: s, rate}
  let ticker = null;

  function say(words, error = false) {
    status.textContent = words;
    status.classList.toggle("error", error);
  }
  function setState(s, words = "") {
    state.state = s;
    message.textContent = words;
    message.hidden = !words;
    for (const c of controls) c.disabled = s !== "playing" && s !== "paused";
  }
  function here() {
    if (!anchor) return null;
    const t = video.currentTime;
    return anchor.device + Math.max(0, t - anchor.video) * anchor.rate * 1000;
  }
  function reanchor(deviceMs, rate) {
    // Frames of the new position come after what is buffered now.
    const b = video.buffered;
    const end = b.length ? b.end(b.length - 1) : video.currentTime;
    anchor = { device: deviceMs, video: Math.max(video.currentTime, end), rate };
  }
  function tick() {
    const ms = here();
    state.position = ms == null ? null : deviceIso(ms);
    position.textContent = ms == null ? "" : `at ${clock(deviceIso(ms))} (device time)`;
  }

  function halt() {
    attempt += 1;
    if (handle) handle.stop();
    handle = null;
    state.player = null;
    clearInterval(ticker);
    ticker = null;
  }

  async function start(phone, rec, li, from) {
    halt();
    const mine = attempt;
    for (const x of recordings.querySelectorAll(".recording.playing")) x.classList.remove("playing");
    li.classList.add("playing");
    current = { phone, rec, li };
    speed.value = "1";
    const begin = from || rec.start;
    seek.value = clock(begin);
    title.textContent = `${phone} · ch ${rec.channel} · ${day(rec.start)} ${clock(rec.start)}–${clock(rec.end)} (device time)`;
    state.session = null;
    setState("connecting", "asking the device to play the recording…");
    say("");
    const asked = performance.now();
    let answer;
    try {
      answer = await ctx.api("POST", `/api/v1/devices/${encodeURIComponent(phone)}/playback`, {
        channel: rec.channel, from: begin, to: rec.end, mode: "normal", speed: 1,
        // No audio track: fast-forward sends no audio, and a player whose stream announced
        // audio waits for it (docs/playback.md); a picture that always moves is worth more.
        media: "video",
        stream: rec.stream === "sub" ? "sub" : rec.stream === "main" ? "main" : "any",
        storage: rec.storage === "backup" ? "backup" : rec.storage === "main" ? "main" : "any",
      });
    } catch (err) {
      if (mine !== attempt) return;
      setState("error", `the playback could not start: ${err.message || err}`);
      return;
    }
    if (mine !== attempt) return;
    state.session = answer.playback;
    handle = play(video, answer.ws_flv, {
      live: false, // played at the device's pace: chasing would skip recorded pictures
      hasAudio: false,
      timeout: 30000,
      // The answer's `codec` is the device's (0x1003), not this channel's: the stream says.
      hevcWords: "this recording is H.265, which this browser cannot decode (no HEVC in its Media"
        + " Source Extensions); play it with ffplay or VLC from the address below",
      onPlaying() {
        if (mine !== attempt) return;
        state.firstFrameMs = Math.round(performance.now() - asked);
        anchor = { device: epoch(begin), video: video.currentTime, rate: 1 };
        setState("playing");
        ticker = setInterval(tick, 250);
        tick();
      },
      onEnd(words) {
        if (mine !== attempt) return;
        halt();
        setState("ended", "");
        say(words === "the stream ended" ? "the recording ended" : words);
      },
      onError(words) {
        if (mine !== attempt) return;
        const hevc = handle && handle.codec === "h265";
        halt();
        setState("error", words);
        // Its HTTP-FLV address (the token lives two minutes): a native player decodes H.265.
        if (hevc) say(`HTTP-FLV (open within two minutes): ${answer.http_flv}`);
      },
    });
    state.player = handle.player;
  }

  async function control(body, done) {
    if (!state.session) return;
    const mine = attempt;
    for (const c of controls) c.disabled = true;
    say(`${body.action.replace("_", " ")}…`);
    try {
      await ctx.api("POST", `/api/v1/playback/${encodeURIComponent(state.session)}/control`, body);
      if (mine !== attempt) return;
      if (done) done();
      say("");
    } catch (err) {
      if (mine !== attempt) return;
      say(`${body.action.replace("_", " ")} failed: ${err.message || err}`, true);
    } finally {
      if (mine === attempt) setState(state.state);
    }
  }

  pause.addEventListener("click", () => control({ action: "pause" }, () => {
    const ms = here();
    video.pause();
    state.state = "paused";
    if (ms != null) anchor = { device: ms, video: video.currentTime, rate: anchor.rate };
  }));
  // Resume, and a change of speed while playing: one request (x1 is a plain resume).
  function playAtSpeed() {
    const ms = here();
    const rate = Number(speed.value);
    const body = rate === 1 ? { action: "resume" } : { action: "fast_forward", speed: rate };
    control(body, () => {
      state.state = "playing";
      if (ms != null) reanchor(ms, rate);
      video.play().catch(() => {});
    });
  }
  resume.addEventListener("click", playAtSpeed);
  speed.addEventListener("change", playAtSpeed);
  function seekTarget() {
    if (!current || !/^\d\d:\d\d(:\d\d)?$/.test(seek.value)) return null;
    const hms = seek.value.length === 5 ? `${seek.value}:00` : seek.value;
    let target = `${day(current.rec.start)}T${hms}${DEVICE_ZONE}`;
    // A recording past midnight: a time before its start is on its end's day.
    if (epoch(target) < epoch(current.rec.start)) target = `${day(current.rec.end)}T${hms}${DEVICE_ZONE}`;
    return target;
  }
  seekGo.addEventListener("click", () => {
    const target = seekTarget();
    if (!target) {
      say("give a time (hh:mm:ss, device time) to seek to", true);
      return;
    }
    if (epoch(target) < epoch(current.rec.start) || epoch(target) >= epoch(current.rec.end)) {
      say(`${seek.value} is outside this recording (${clock(current.rec.start)}–${clock(current.rec.end)})`, true);
      return;
    }
    control({ action: "seek", time: target }, () => {
      reanchor(epoch(target), anchor ? anchor.rate : 1);
      if (state.state === "playing") video.play().catch(() => {});
    });
  });
  stop.addEventListener("click", () => {
    const session = state.session;
    halt(); // closing the viewer's WebSocket ends the playback on the media server
    state.session = null;
    setState("idle", "");
    say("stopped");
    if (current) current.li.classList.remove("playing");
    if (session) {
      // Said at once to the device too, so that it stops even if another viewer watches.
      ctx.api("POST", `/api/v1/playback/${encodeURIComponent(session)}/control`, { action: "stop" }).catch(() => {});
    }
  });
  ctx.on("signout", () => {
    halt();
    state.session = null;
    setState("idle", "");
  });
  setState("idle", "");

  return { start };
}
