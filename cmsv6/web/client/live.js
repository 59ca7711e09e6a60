// The client WebSocket (/ws, docs/websocket.md): sends the token, subscribes to every
// vehicle of the store, and emits each pushed `position` and `alarm` on ctx. It comes back
// by itself after a lost connection (1 s, doubling, at most 30 s), except when the token is
// refused (4001: the session is over) or the page signs out. ctx.emit("live", {state, text})
// says how it is, in words.

const CHUNK = 5000;  // phones per subscribe message (the server takes at most 10000)

export function createLive(ctx, token) {
  let ws = null;
  let stopped = false;
  let delay = 1000;
  let timer = null;

  const status = (state, text) => ctx.emit("live", {state, text});

  function subscribe(phones) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;  // all are subscribed on (re)connecting
    for (let i = 0; i < phones.length; i += CHUNK) {
      ws.send(JSON.stringify({subscribe: phones.slice(i, i + CHUNK)}));
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    status("connecting", "connecting to live updates…");
    ws = new WebSocket(`${scheme}//${location.host}/ws`);
    ws.onopen = () => {
      ws.send(JSON.stringify({token}));
      subscribe([...ctx.store.vehicles.keys()]);
    };
    ws.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      switch (message.type) {
        case "authenticated":
          delay = 1000;
          status("live", "live");
          break;
        case "position":
        case "alarm":
          ctx.emit(message.type, message);
          break;
        case "dropped":
          status("live", `live (${message.count} updates dropped: this page fell behind)`);
          break;
        case "error":
          ctx.toast(`Live updates: ${message.message}`, "error");
          break;
      }
    };
    ws.onclose = (event) => {
      ws = null;
      if (stopped) return;
      if (event.code === 4001) {
        ctx.signout(`Signed out: live updates refused the session (${event.reason || "no valid token"}). Sign in again.`);
        return;
      }
      const why = event.reason ? `${event.reason} (${event.code})` : `connection lost (${event.code})`;
      status("down", `no live updates: ${why}; retrying in ${Math.round(delay / 1000)} s`);
      timer = setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  connect();
  return {
    subscribe,
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (ws) ws.close(1000, "signed out");
    },
  };
}
