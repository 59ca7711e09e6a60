// The video wall: 1, 4, 9 or 16 panes, each playing one camera's live WS-FLV (vehicle,
// channel, main or sub stream) with mpegts.js through player.js. A pane asks the Open API
// for a fresh URL at every (re)connection (viewing tokens live two minutes), says in words
// why a stream does not play, and frees its player when closed or when the layout shrinks.
//
// For the browser tests: `window.cmsv6.panes[i] = {player, video, state, message,
// firstFrameMs}` (state: "idle" | "connecting" | "playing" | "error").

import { el, play, liveUrl } from "./player.js";

const LAYOUTS = [1, 4, 9, 16];

function vehicleLabel(d) {
  return `${d.plate || d.phone} · ${d.phone}${d.online ? "" : " (offline)"}`;
}

export function mount(element, ctx) {
  window.cmsv6 = window.cmsv6 || {};
  window.cmsv6.panes = [];
  const panes = [];

  const layout = el("select", { id: "wall-layout", "aria-label": "panes" },
    ...LAYOUTS.map((n) => el("option", { value: String(n), text: `${n} ${n === 1 ? "pane" : "panes"}` })));
  const fill = el("button", { type: "button", id: "wall-fill", title: "Show every camera of the selected vehicle" },
    "Cameras of the selected vehicle");
  const stopAll = el("button", { type: "button", id: "wall-stop" }, "Stop all");
  const grid = el("div", { class: "wall-grid" });
  const wall = el("div", { id: "wall" },
    el("div", { class: "wall-bar" }, el("label", {}, "Layout ", layout), fill, stopAll), grid);
  element.replaceChildren(wall);

  // The vehicle choices, rebuilt only when the vehicles or their online state change.
  let signature = "";
  function vehicles() {
    return [...(ctx.store.vehicles || new Map()).values()].sort((a, b) =>
      String(a.plate || a.phone).localeCompare(String(b.plate || b.phone)));
  }
  function refreshVehicles(force) {
    const list = vehicles();
    const sig = list.map((d) => `${d.phone}:${d.online ? 1 : 0}:${d.channels}`).join(",");
    if (!force && sig === signature) return;
    signature = sig;
    for (const p of panes) p.fillVehicles(list);
  }

  function makePane(index) {
    const vehicle = el("select", { class: "pane-vehicle", "aria-label": "vehicle" });
    const channel = el("select", { class: "pane-channel", "aria-label": "channel" });
    const stream = el("select", { class: "pane-stream", "aria-label": "stream" },
      el("option", { value: "main", text: "main" }), el("option", { value: "sub", text: "sub" }));
    const sound = el("button", { type: "button", class: "pane-sound", title: "Sound on/off", "aria-pressed": "false" }, "Sound");
    const closeButton = el("button", { type: "button", class: "pane-close", title: "Stop this pane" }, "✕");
    const video = el("video", { muted: true, playsinline: true, autoplay: true });
    video.muted = true; // the attribute alone does not mute a script-made element
    const text = el("span", { class: "pane-text" });
    const retry = el("button", { type: "button", class: "pane-retry" }, "Retry");
    const message = el("div", { class: "pane-message", hidden: true }, text, retry);
    const label = el("div", { class: "pane-label" });
    // What the pane is doing when all is well ("choose a vehicle", "connecting…"); the
    // .pane-message is kept for what went wrong.
    const hint = el("div", { class: "pane-hint" });
    const node = el("div", { class: "pane", "data-index": String(index), "data-state": "idle" },
      el("div", { class: "pane-bar" }, vehicle, channel, stream, sound, closeButton),
      el("div", { class: "pane-screen" }, video, label, hint, message));

    const info = { player: null, video, state: "idle", message: "", firstFrameMs: null };
    let handle = null;
    // The pane's WebSocket (for tests that play the media server closing it).
    Object.defineProperty(info, "socket", { get: () => (handle ? handle.ws : null) });
    let attempt = 0; // a newer attempt makes every answer of an older one moot
    // A stream that played and broke (the device's 4G dropped, the media server restarted)
    // is asked for again a few times, further apart each time; one that never played is
    // left to the Retry button, with the reason on the pane.
    let reconnects = 0;
    let reconnectTimer = null;
    let playedTimer = null; // playing for a while forgives earlier breaks
    const RECONNECT_DELAYS = [2000, 5000, 15000];

    function broke(words) {
      const delay = RECONNECT_DELAYS[reconnects];
      if (info.state !== "playing" || delay === undefined) {
        setState("error", words);
        return;
      }
      reconnects += 1;
      setState("error", `${words}; reconnecting in ${delay / 1000} s`);
      reconnectTimer = setTimeout(start, delay);
    }

    function setState(state, words = "") {
      info.state = state;
      info.message = state === "error" ? words : "";
      node.dataset.state = state;
      text.textContent = state === "error" ? words : "";
      message.hidden = state !== "error";
      hint.textContent = state === "idle" ? "choose a vehicle" : state === "connecting" ? "connecting…" : "";
      hint.hidden = !hint.textContent;
    }

    function fillVehicles(list) {
      const current = vehicle.value;
      vehicle.replaceChildren(el("option", { value: "", text: "— vehicle —" }),
        ...list.map((d) => el("option", { value: d.phone, text: vehicleLabel(d) })));
      vehicle.value = list.some((d) => d.phone === current) ? current : "";
      if (current && vehicle.value !== current) {
        // The vehicle went away (another fleet now...): keep it chosen rather than lose it.
        vehicle.append(el("option", { value: current, text: current }));
        vehicle.value = current;
      }
      fillChannels();
    }

    function fillChannels() {
      const d = ctx.store.vehicles && ctx.store.vehicles.get(vehicle.value);
      const count = Math.max(1, Math.min(64, (d && d.channels) || 1));
      const current = channel.value || "1";
      if (channel.options.length !== count) {
        channel.replaceChildren(...Array.from({ length: count }, (_, i) =>
          el("option", { value: String(i + 1), text: `ch ${i + 1}` })));
      }
      channel.value = Number(current) <= count ? current : "1";
    }

    function stop() {
      attempt += 1;
      clearTimeout(reconnectTimer);
      clearTimeout(playedTimer);
      if (handle) handle.stop();
      handle = null;
      info.player = null;
      label.textContent = "";
    }

    async function start() {
      stop();
      const phone = vehicle.value;
      if (!phone) {
        setState("idle");
        return;
      }
      const mine = attempt;
      const ch = Number(channel.value || 1);
      const which = stream.value;
      const d = ctx.store.vehicles && ctx.store.vehicles.get(phone);
      label.textContent = `${d ? d.plate || phone : phone} · ch ${ch} · ${which}`;
      setState("connecting", "connecting…");
      const asked = performance.now();
      let answer;
      try {
        answer = await ctx.api("POST", `/api/v1/devices/${encodeURIComponent(phone)}/live`,
          { channel: ch, stream: which });
      } catch (e) {
        if (mine !== attempt) return;
        setState("error", e.message || String(e));
        return;
      }
      if (mine !== attempt) return;
      if (!answer || !answer.ws_flv) {
        setState("error", "the server gave no WebSocket address for this stream");
        return;
      }
      handle = play(video, liveUrl(answer.ws_flv), {
        live: true,
        onPlaying() {
          if (mine !== attempt) return;
          info.firstFrameMs = Math.round(performance.now() - asked);
          setState("playing");
          clearTimeout(playedTimer);
          playedTimer = setTimeout(() => { reconnects = 0; }, 30000);
        },
        onEnd(words) {
          if (mine !== attempt) return;
          info.player = null;
          broke(`stopped: ${words}`);
        },
        onError(words) {
          if (mine !== attempt) return;
          info.player = null;
          broke(words);
        },
      });
      info.player = handle.player;
      if (handle.player) {
        handle.player.on(mpegts.Events.MEDIA_INFO, (mi) => {
          if (mine !== attempt || !mi) return;
          const codec = mi.videoCodec ? mi.videoCodec.split(".")[0] : "";
          const size = mi.width ? ` ${mi.width}×${mi.height}` : "";
          label.textContent = `${d ? d.plate || phone : phone} · ch ${ch} · ${which} · ${codec}${size}`;
        });
      }
    }

    function close() {
      stop();
      vehicle.value = "";
      setState("idle");
    }

    function chosen() {
      reconnects = 0;
      start();
    }
    vehicle.addEventListener("change", () => {
      fillChannels();
      chosen();
    });
    channel.addEventListener("change", chosen);
    stream.addEventListener("change", chosen);
    retry.addEventListener("click", chosen);
    closeButton.addEventListener("click", close);
    vehicle.addEventListener("focus", () => refreshVehicles(false));
    sound.addEventListener("click", () => {
      video.muted = !video.muted;
      sound.setAttribute("aria-pressed", String(!video.muted));
      if (!video.muted) video.play().catch(() => {});
    });
    setState("idle");

    return {
      node, info, fillVehicles, stop, start, close,
      show(phone, ch, which) {
        vehicle.value = phone;
        if (vehicle.value !== phone) {
          vehicle.append(el("option", { value: phone, text: phone }));
          vehicle.value = phone;
        }
        fillChannels();
        channel.value = String(ch);
        if (which) stream.value = which;
        return start();
      },
      get idle() {
        return !vehicle.value;
      },
      destroy() {
        stop();
        node.remove();
      },
    };
  }

  function setLayout(n) {
    n = LAYOUTS.includes(n) ? n : 4;
    layout.value = String(n);
    grid.dataset.layout = String(n);
    while (panes.length > n) panes.pop().destroy();
    const list = vehicles();
    while (panes.length < n) {
      const p = makePane(panes.length);
      p.fillVehicles(list);
      panes.push(p);
      grid.append(p.node);
    }
    window.cmsv6.panes = panes.map((p) => p.info);
    try {
      localStorage.setItem("cmsv6.wall", String(n));
    } catch (e) {
      // private mode: the layout is not remembered, nothing else changes
    }
  }

  /** Show `phone`'s cameras from the first pane on (growing the layout to fit them). */
  function showVehicle(phone, channel) {
    const d = ctx.store.vehicles && ctx.store.vehicles.get(phone);
    if (channel) {
      const free = panes.find((p) => p.idle) || panes[0];
      free.show(phone, channel);
      return;
    }
    const count = Math.max(1, Math.min(16, (d && d.channels) || 1));
    const need = LAYOUTS.find((n) => n >= count) || 16;
    if (panes.length < need) setLayout(need);
    for (let i = 0; i < count; i += 1) panes[i].show(phone, i + 1);
  }

  layout.addEventListener("change", () => setLayout(Number(layout.value)));
  fill.addEventListener("click", () => {
    const phone = ctx.store.selected;
    if (!phone) {
      ctx.toast("select a vehicle first (in the list or on the map)", "error");
      return;
    }
    showVehicle(phone);
  });
  stopAll.addEventListener("click", () => {
    for (const p of panes) p.close();
  });

  let stored = 4;
  try {
    stored = Number(localStorage.getItem("cmsv6.wall")) || 4;
  } catch (e) {
    // no storage: the default layout
  }
  setLayout(stored);

  ctx.on("position", () => refreshVehicles(false));
  ctx.on("vehicles", () => refreshVehicles(false)); // the list (re)read by app.js
  // Other views (the vehicle panel...) may ask: ctx.emit("watch", {phone, channel?}).
  ctx.on("watch", (what) => {
    if (what && what.phone) showVehicle(what.phone, what.channel);
  });
  ctx.on("signout", () => {
    for (const p of panes) p.stop();
  });
  // The store may fill after mount (GET /api/v1/devices answering): catch up for a while.
  let tries = 0;
  const poll = setInterval(() => {
    refreshVehicles(false);
    tries += 1;
    if (tries > 30 || (ctx.store.vehicles && ctx.store.vehicles.size)) clearInterval(poll);
  }, 500);
  refreshVehicles(true);

  return { showVehicle, setLayout };
}
