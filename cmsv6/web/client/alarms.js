// Alarms: the list of GET /api/v1/alarms (filtered by state on the server, by kind and
// vehicle here), the alarms pushed over /ws added at the top as they arrive (class `new`,
// counted on the tab; no sound), and handling one with a note (POST /api/v1/alarms/{id}).

import {logPages} from "./api.js";
import {el, fmtTime, kindName} from "./util.js";

const MAX = 5000;  // alarms read for one list at most
const DONE = new Set(["handled", "dismissed"]);

export function mount(element, ctx) {
  const filter = el("select#alarm-filter", {"aria-label": "state"},
    el("option", {value: "new", text: "New (not yet handled)"}),
    el("option", {value: "acknowledged", text: "Acknowledged"}),
    el("option", {value: "handled", text: "Handled (last 24 h)"}),
    el("option", {value: "dismissed", text: "Dismissed (last 24 h)"}),
    el("option", {value: "", text: "All (last 24 h)"}));
  const kind = el("select#alarm-kind", {"aria-label": "type"}, el("option", {value: "", text: "All types"}));
  const mine = el("input#alarm-selected", {type: "checkbox"});
  const refresh = el("button#alarm-refresh", {type: "button", text: "Refresh"});
  const summary = el("span#alarm-summary.muted");
  const list = el("ul#alarm-list");
  const dialog = noteDialog();
  element.append(
    el("div.alarm-tools", {},
      el("label", {}, "State ", filter),
      el("label", {}, "Type ", kind),
      el("label", {}, mine, " Selected vehicle only"),
      refresh, summary),
    list, dialog.node);

  const alarms = new Map();  // id → alarm JSON
  const live = new Set();    // ids that arrived over /ws while this page was open
  let unseen = 0;
  let loading = 0;

  function badge() {
    const node = document.getElementById("alarm-count");
    if (!node) return;
    node.textContent = String(unseen);
    node.hidden = unseen === 0;
  }

  function wanted(alarm) {
    if (filter.value && alarm.state !== filter.value && !live.has(alarm.id)) return false;
    if (kind.value && alarm.kind !== kind.value) return false;
    if (mine.checked && alarm.phone !== ctx.store.selected) return false;
    return true;
  }

  function item(alarm) {
    const handle = el("button.alarm-handle", {type: "button", text: DONE.has(alarm.state) ? "Change…" : "Handle…"});
    handle.addEventListener("click", () => dialog.open(alarm, save));
    const locate = el("button.alarm-locate", {type: "button", text: "Map", title: "Show where it happened"});
    locate.addEventListener("click", () => {
      ctx.select(alarm.phone);
      location.hash = "#map";
      if (typeof alarm.latitude === "number" && ctx.map) {
        ctx.map.show(alarm.latitude, alarm.longitude, `${kindName(alarm.kind)} · ${fmtTime(alarm.started)}`);
      }
    });
    const ended = alarm.ended ? `ended ${fmtTime(alarm.ended)}` : "open";
    const handled = alarm.handled
      ? `${alarm.state} by ${alarm.handled_by || "?"} at ${fmtTime(alarm.handled)}` : alarm.state;
    const li = el("li.alarm", {dataset: {id: String(alarm.id), phone: alarm.phone, state: alarm.state, kind: alarm.kind}},
      el("div.alarm-head", {},
        el("span.alarm-kind", {text: kindName(alarm.kind)}),
        el("span.alarm-vehicle", {text: ctx.store.label(alarm.phone)}),
        el("span.alarm-time", {text: fmtTime(alarm.started)})),
      el("div.alarm-meta.muted", {},
        el("span", {text: ended}), " · ", el("span.alarm-state", {text: handled}),
        alarm.details ? ` · ${JSON.stringify(alarm.details)}` : ""),
      alarm.note ? el("div.alarm-note-text", {text: `Note: ${alarm.note}`}) : null,
      el("div.alarm-actions", {}, locate, handle));
    li.classList.toggle("new", live.has(alarm.id) && !DONE.has(alarm.state));
    li.classList.toggle("handled", DONE.has(alarm.state));
    li.classList.toggle("open", !alarm.ended);
    return li;
  }

  function kinds() {
    const chosen = kind.value;
    const all = [...new Set([...alarms.values()].map((a) => a.kind))].sort();
    kind.replaceChildren(el("option", {value: "", text: "All types"}),
      ...all.map((k) => el("option", {value: k, text: kindName(k)})));
    kind.value = all.includes(chosen) ? chosen : "";
  }

  function render() {
    kinds();
    const shown = [...alarms.values()].filter(wanted)
      .sort((a, b) => Date.parse(b.started) - Date.parse(a.started) || b.id - a.id);
    list.replaceChildren(...shown.map(item));
    if (!shown.length) list.append(el("li.empty.muted", {text: loading ? "Reading alarms…" : "No alarms."}));
    summary.textContent = loading ? "reading…" : `${shown.length} shown`;
  }

  function replace(alarm) {
    alarms.set(alarm.id, alarm);
    const old = list.querySelector(`.alarm[data-id="${alarm.id}"]`);
    if (old) old.replaceWith(item(alarm));
    else render();
  }

  async function load() {
    const query = new URLSearchParams({limit: "1000"});
    if (filter.value) query.set("state", filter.value);
    if (mine.checked && ctx.store.selected) query.set("device", ctx.store.selected);
    loading++;
    render();
    try {
      const {items, complete} = await logPages(`/api/v1/alarms?${query}`, "alarms", MAX);
      // Keep those that arrived live (they may be past the filter now: handled here).
      for (const id of [...alarms.keys()]) if (!live.has(id)) alarms.delete(id);
      for (const alarm of items) alarms.set(alarm.id, alarm);
      if (!complete) ctx.toast(`Only the first ${items.length} alarms are listed: narrow the filter.`, "info");
    } catch (e) {
      ctx.error("The alarms could not be read", e);
    } finally {
      loading--;
      render();
    }
  }

  async function save(alarm, state, note) {
    const body = {state};
    if (note) body.note = note;
    const answer = await ctx.api("POST", `/api/v1/alarms/${alarm.id}`, body);
    replace(answer);
    ctx.toast(`Alarm ${kindName(answer.kind)} of ${ctx.store.label(answer.phone)}: ${answer.state}.`, "info");
  }

  ctx.on("alarm", (message) => {
    const {type, ...alarm} = message;
    live.add(alarm.id);
    alarms.set(alarm.id, alarm);
    if (ctx.view !== "alarms") unseen++;
    badge();
    render();
    const where = ctx.store.label(alarm.phone);
    ctx.toast(`New alarm: ${kindName(alarm.kind)} — ${where}`, "info");
  });
  ctx.on("view", (name) => {
    if (name === "alarms") {
      unseen = 0;
      badge();
    }
  });
  ctx.on("select", () => {
    if (mine.checked) load();
  });
  ctx.on("vehicles", ({initial}) => {
    if (initial) load();
  });
  filter.addEventListener("change", load);
  mine.addEventListener("change", load);
  kind.addEventListener("change", render);
  refresh.addEventListener("click", load);
  window.cmsv6 = Object.assign(window.cmsv6 || {}, {alarms: {list: alarms, load}});
}

/** The dialog that handles an alarm: a state and a note, the API's refusal shown in it. */
function noteDialog() {
  const title = el("h3#alarm-dialog-title");
  const state = el("select#alarm-state", {"aria-label": "new state"},
    el("option", {value: "handled", text: "Handled"}),
    el("option", {value: "acknowledged", text: "Acknowledged (still to do)"}),
    el("option", {value: "dismissed", text: "Dismissed (a false alarm)"}));
  const note = el("textarea#alarm-note", {rows: 4, maxlength: 2000, placeholder: "What was done (at most 2000 characters)"});
  const error = el("p#alarm-note-error.error", {role: "alert"});
  const save = el("button#alarm-note-save.primary", {type: "submit", text: "Save"});
  const cancel = el("button#alarm-note-cancel", {type: "button", text: "Cancel"});
  const form = el("form", {method: "dialog"}, title, el("label", {}, "State ", state), note, error,
    el("div.dialog-buttons", {}, cancel, save));
  const node = el("dialog#alarm-dialog", {}, form);
  let current = null;
  cancel.addEventListener("click", () => node.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current) return;
    save.disabled = true;
    error.textContent = "";
    try {
      await current.save(current.alarm, state.value, note.value.trim());
      node.close();
    } catch (e) {
      error.textContent = e.message;
    } finally {
      save.disabled = false;
    }
  });
  return {
    node,
    open(alarm, saveFn) {
      current = {alarm, save: saveFn};
      title.textContent = `${kindName(alarm.kind)} — ${alarm.phone}, ${fmtTime(alarm.started)}`;
      state.value = "handled";
      note.value = alarm.note || "";
      error.textContent = "";
      node.showModal();
      note.focus();
    },
  };
}
