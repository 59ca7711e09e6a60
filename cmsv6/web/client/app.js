// The web client's boot: the configuration, sign-in and sign-out, the tabs, and `ctx`, which
// every view's mount(element, ctx) is given (see the plan of issue 13):
//   ctx = {api, config, store, user, on, emit, toast, select, signout, map}
// Events: "position" and "alarm" (pushed over /ws), "select" (a phone or null), "view" (a
// tab shown), "live" (the WebSocket's state), "vehicles" (the list read again), "signout".

import {api, getToken, onUnauthorized, setToken, ApiError} from "./api.js";
import {createStore} from "./store.js";
import {createLive} from "./live.js";
import {el} from "./util.js";
import * as mapView from "./map.js";
import * as listView from "./list.js";
import * as trackView from "./track.js";
import * as alarmsView from "./alarms.js";
import * as vehicleView from "./vehicle.js";

const SIGNOUT_KEY = "cmsv6.signout";  // sessionStorage: why the page signed out, shown once
const VIEWS = ["map", "alarms", "video", "recordings"];
const REFRESH = 30000;  // the vehicle list (online states) is read again this often, in ms

const $ = (selector) => document.querySelector(selector);

async function loadConfig() {
  const fallback = {tiles: "", attribution: "", media_https: false};
  try {
    const response = await fetch("/client/config.json", {cache: "no-store"});
    if (!response.ok) return fallback;
    return {...fallback, ...(await response.json())};
  } catch (e) {
    return fallback;
  }
}

function toast(message, kind = "info") {
  const close = el("button.toast-close", {type: "button", "aria-label": "close", text: "×"});
  const node = el(`div.toast.${kind === "error" ? "error" : "info"}`, {role: kind === "error" ? "alert" : "status"},
    el("span", {text: message}), close);
  close.addEventListener("click", () => node.remove());
  $("#toasts").append(node);
  while ($("#toasts").children.length > 5) $("#toasts").firstElementChild.remove();
  setTimeout(() => node.remove(), kind === "error" ? 12000 : 6000);
  if (kind === "error") console.warn(message);
}

function makeCtx(config, user) {
  const handlers = new Map();
  const ctx = {
    api,
    config,
    user,
    store: createStore(),
    view: "map",
    map: null,  // set by map.js: {leaflet, ...}
    on(event, fn) {
      if (!handlers.has(event)) handlers.set(event, []);
      handlers.get(event).push(fn);
      return () => handlers.set(event, handlers.get(event).filter((f) => f !== fn));
    },
    emit(event, data) {
      for (const fn of handlers.get(event) || []) {
        try {
          fn(data);
        } catch (e) {
          console.error(`a "${event}" handler failed`, e);
          toast(`Something failed in the page (${event}): ${e.message}`, "error");
        }
      }
    },
    toast,
    select(phone) {
      if (phone && !ctx.store.vehicles.has(phone)) phone = null;
      ctx.store.selected = phone || null;
      ctx.emit("select", ctx.store.selected);
    },
    signout: (message) => signout(ctx, message),
    /** Show an error of any kind in words (ApiError messages are the API's). */
    error(prefix, e) {
      const words = e instanceof ApiError || (e && e.message) ? e.message : String(e);
      toast(prefix ? `${prefix}: ${words}` : words, "error");
    },
  };
  return ctx;
}

let signingOut = false;

/** Sign out: the server is told (when the session is still good), the token forgotten, and
 * the page reloaded to the sign-in form with `message` (why, when it was not the user). */
async function signout(ctx, message, tellServer = false) {
  if (signingOut) return;
  signingOut = true;
  ctx.emit("signout", message || null);
  if (ctx.live) ctx.live.stop();
  if (tellServer && getToken()) {
    try {
      await api("POST", "/api/v1/logout");
    } catch (e) {
      // Signing out goes on: the token is forgotten here whatever the server says.
    }
  }
  setToken(null);
  if (message) sessionStorage.setItem(SIGNOUT_KEY, message);
  location.reload();
}

function showSignin(message) {
  $("#app").hidden = true;
  $("#signin-page").hidden = false;
  $("#signin-error").textContent = message || "";
  const form = $("#signin");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    $("#signin-error").textContent = "";
    try {
      const answer = await api("POST", "/api/v1/login", {
        username: form.username.value,
        password: form.password.value,
      });
      setToken(answer.token);
      form.password.value = "";
      $("#signin-page").hidden = true;
      await start(answer.user, answer.media);
    } catch (e) {
      $("#signin-error").textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
  form.username.focus();
}

function showView(ctx, name) {
  if (!VIEWS.includes(name)) name = "map";
  ctx.view = name;
  for (const view of VIEWS) $(`#view-${view}`).hidden = view !== name;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.view === name);
    button.setAttribute("aria-selected", button.dataset.view === name ? "true" : "false");
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  ctx.emit("view", name);
}

/** A view of another module (W2's video, recordings, talk-back) mounted so that its failure
 * stays in its own element. */
async function mountOptional(path, element, ctx) {
  try {
    const module = await import(path);
    // A mount that waits on something long does not hold the rest of the page up.
    await Promise.race([module.mount(element, ctx), new Promise((resolve) => setTimeout(resolve, 3000))]);
  } catch (e) {
    console.error(`${path} failed`, e);
    element.append(el("p.error", {text: `This part of the page failed to load (${path}): ${e.message}`}));
  }
}

async function start(user, media) {
  const config = await configPromise;
  const ctx = makeCtx(config, user);
  ctx.media = media || null;
  window.cmsv6 = Object.assign(window.cmsv6 || {}, {ctx});
  onUnauthorized((message) => signout(ctx, message));

  $("#user").textContent = user.name;
  $("#user").title = `${user.name} (${user.role})`;
  $("#signout").addEventListener("click", () => signout(ctx, null, true));
  $("#app").hidden = false;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => showView(ctx, button.dataset.view));
  }
  window.addEventListener("hashchange", () => showView(ctx, location.hash.slice(1)));
  ctx.on("live", ({state, text}) => {
    $("#live-status").textContent = text;
    $("#live-status").dataset.state = state;
  });

  mapView.mount($("#map"), ctx);
  listView.mount($("#sidebar"), ctx);
  vehicleView.mount($("#vehicle-body"), ctx);
  trackView.mount($("#track-panel"), ctx);
  alarmsView.mount($("#view-alarms"), ctx);
  // The other views are mounted before the vehicles are read, so that they hear of them too.
  await Promise.all([
    mountOptional("./video.js", $("#view-video"), ctx),
    mountOptional("./playback.js", $("#view-recordings"), ctx),
    mountOptional("./talk.js", $("#talk-box"), ctx),
  ]);

  try {
    await ctx.store.load();
  } catch (e) {
    ctx.error("The vehicle list could not be read", e);
  }
  ctx.emit("vehicles", {initial: true});
  ctx.live = createLive(ctx, getToken());
  ctx.on("position", (position) => {
    if (ctx.store.update(position)) ctx.emit("vehicle", position.phone);
  });
  setInterval(async () => {
    try {
      const added = await ctx.store.load();
      if (added.length) ctx.live.subscribe(added);
      ctx.emit("vehicles", {initial: false});
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 401)) ctx.error("The vehicle list could not be read again", e);
    }
  }, REFRESH);

  showView(ctx, location.hash.slice(1) || "map");
}

const configPromise = loadConfig();

// The third-party files (vendor/) come from npm at set-up time (make client): without them
// the page cannot draw a map or play video, so it says what to run (the server's 503 says
// it in words) instead of breaking.
async function missingVendor() {
  if (typeof L !== "undefined" && typeof mpegts !== "undefined" && typeof uPlot !== "undefined") return null;
  try {
    const response = await fetch("vendor/leaflet/leaflet.js", {cache: "no-store"});
    if (!response.ok) return (await response.text()).slice(0, 500);
  } catch (e) {
    // fall through to the generic words
  }
  return "The web client's third-party files (vendor/) did not load: run `make client` in the cmsv6 checkout, then reload.";
}

async function boot() {
  const missing = await missingVendor();
  if (missing) {
    document.body.replaceChildren(el("main#vendor-missing.notice", {role: "alert"},
      el("h1", {text: "cmsv6: the web client is not installed completely"}),
      el("p", {text: missing})));
    return;
  }
  const message = sessionStorage.getItem(SIGNOUT_KEY);
  sessionStorage.removeItem(SIGNOUT_KEY);
  if (!getToken()) return showSignin(message);
  try {
    const user = await api("GET", "/api/v1/me");
    await start(user, null);
  } catch (e) {
    // A refused token has already reloaded the page (onUnauthorized is not set yet: say it here).
    if (e instanceof ApiError && e.status === 401) {
      setToken(null);
      return showSignin("Your session has ended: sign in again.");
    }
    showSignin(e.message);
  }
}

boot();
