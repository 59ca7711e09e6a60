// The WS-FLV player of the video wall and of playback: mpegts.js (global `mpegts`, loaded
// by index.html) reading the media server's WebSocket through a loader of ours, because
// mpegts.js's own WebSocket loader forgets the close code and reason, and those are the
// only way the media server can say why a stream was refused or ended (docs/api.md,
// "Watching video").

/** Whether this browser's MSE decodes H.265 (Linux Chromium without a hardware decoder
 * does not): when it does not, live URLs ask the media server for H.264 (`codec=h264`). */
// A DOM element: `el("div", {class: "pane", text: "..."}, child...)` (false/null attributes
// left out, true ones written empty). The video wall, playback and talk-back build with it.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v == null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c);
  return node;
}

export function hevcSupported() {
  const MS = window.ManagedMediaSource || window.MediaSource;
  try {
    return !!MS && MS.isTypeSupported('video/mp4; codecs="hvc1.1.6.L93.B0"');
  } catch (e) {
    return false;
  }
}

/** `url` with `codec=h264` added when this browser cannot decode H.265: the media server
 * serves H.264 as it is and transcodes H.265, so asking costs nothing for an H.264 camera
 * and saves a reconnection for an H.265 one. */
export function liveUrl(url) {
  if (hevcSupported() || /[?&]codec=/.test(url)) return url;
  return url + (url.includes("?") ? "&" : "?") + "codec=h264";
}

// What the media server's close codes mean, in words for a dispatcher (the reason it sends,
// when there is one, follows).
const CLOSE_WORDS = {
  1000: "the stream ended",
  1001: "the media server went away",
  1006: "the connection to the media server was lost (or it could not be reached)",
  1009: "a message was too large for the media server",
  1011: "the media server failed",
  4000: "the media server is stopping: retry in a moment",
  4001: "the media server refused the viewing link (expired or not valid): retry",
  4003: "the viewing link is for another stream",
  4004: "the media server did not understand the request",
  4008: "this browser could not keep up with the stream",
  4015: "the camera's codec cannot be shown here",
  4029: "the media server has too many viewers: retry later",
  4500: "a fault of the media server (see its log)",
  4502: "the device did not answer",
};

/** A closed WebSocket's code and reason in words. */
export function closeWords(code, reason) {
  const lead = CLOSE_WORDS[code] || `the media server closed the stream (code ${code})`;
  if (!reason) return lead;
  if (code === 1000) return reason;
  return `${lead}: ${reason}`;
}

/** Words for a refusal before a socket is opened: a ws:// URL from an https:// page is
 * blocked by the browser as mixed content, without any event a page could explain. */
export function mixedContent(url) {
  if (location.protocol === "https:" && url.startsWith("ws:")) {
    return "this page is https but the media server's address is ws:// (not encrypted), which"
      + " the browser refuses: serve the media server over TLS (README, \"TLS\")";
  }
  return null;
}

/** A reader of an FLV stream's first bytes that names its video codec ("h264", "h265",
 * or another FourCC / codec id) once the first video tag is there; it gives up after
 * `limit` bytes. Why: a device's 0x1003 names one codec for all its channels, so neither
 * a live nor a playback answer can say for sure what one channel sends. */
export function flvCodecSniffer(onCodec, limit = 256 * 1024) {
  let buffer = new Uint8Array(0);
  let done = false;
  return function feed(chunk) {
    if (done) return;
    const bytes = new Uint8Array(chunk);
    const joined = new Uint8Array(buffer.length + bytes.length);
    joined.set(buffer);
    joined.set(bytes, buffer.length);
    buffer = joined;
    if (buffer.length < 13) return;
    if (buffer[0] !== 0x46 || buffer[1] !== 0x4c || buffer[2] !== 0x56) {
      done = true; // not FLV: the player will say so
      return;
    }
    let at = ((buffer[5] << 24) | (buffer[6] << 16) | (buffer[7] << 8) | buffer[8]) + 4;
    while (at + 11 <= buffer.length) {
      const type = buffer[at] & 0x1f;
      const size = (buffer[at + 1] << 16) | (buffer[at + 2] << 8) | buffer[at + 3];
      if (type === 9 && at + 11 + 5 <= buffer.length) {
        const b = buffer[at + 11];
        let codec;
        if (b & 0x80) {
          codec = String.fromCharCode(...buffer.subarray(at + 12, at + 16)); // enhanced FLV
          codec = { hvc1: "h265", avc1: "h264" }[codec] || codec;
        } else {
          codec = { 7: "h264", 12: "h265" }[b & 0x0f] || `codec id ${b & 0x0f}`;
        }
        done = true;
        buffer = null;
        onCodec(codec);
        return;
      }
      at += 11 + size + 4;
    }
    if (buffer.length > limit) {
      done = true;
      buffer = null;
    }
  };
}

// A loader class for mpegts.js bound to `hooks` ({onOpen, onData(bytes), onClose(code,
// reason, received)}): mpegts.js builds it itself with `new`, so the hooks travel in a
// closure. Same behaviour as mpegts.js's WebSocketLoader otherwise.
function loaderClass(hooks) {
  const M = window.mpegts;
  return class CloseAwareLoader extends M.BaseLoader {
    static isSupported() {
      return typeof WebSocket !== "undefined";
    }

    constructor() {
      super("cmsv6-ws-loader");
      this._needStash = true;
      this._ws = null;
      this._aborted = false;
      this._received = 0;
    }

    destroy() {
      if (this._ws) this.abort();
      super.destroy();
    }

    open(dataSource) {
      const ws = (this._ws = new WebSocket(dataSource.url));
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        this._status = M.LoaderStatus.kBuffering;
        if (hooks.onOpen) hooks.onOpen(ws);
      };
      ws.onmessage = (e) => {
        if (!(e.data instanceof ArrayBuffer)) return; // a text message: not for the player
        const start = this._received;
        this._received += e.data.byteLength;
        if (hooks.onData) hooks.onData(e.data);
        if (this._onDataArrival) this._onDataArrival(e.data, start, this._received);
      };
      // An error event is always followed by a close event, which has the code: say it there.
      ws.onerror = () => {};
      ws.onclose = (e) => {
        if (this._aborted) return;
        this._status = M.LoaderStatus.kComplete;
        if (hooks.onClose) hooks.onClose(e.code, e.reason, this._received);
        if (this._onComplete) this._onComplete(0, this._received - 1);
      };
      this._status = M.LoaderStatus.kConnecting;
    }

    abort() {
      const ws = this._ws;
      if (ws && (ws.readyState === 0 || ws.readyState === 1)) {
        this._aborted = true;
        ws.close(1000);
      }
      this._ws = null;
      this._status = M.LoaderStatus.kComplete;
    }
  };
}

/**
 * Play the WS-FLV stream at `url` in `video`. Returns a handle: `{player, stop()}`.
 *
 * `options`:
 * - `live` (default true): chase latency (a live wall must not drift behind);
 * - `hasAudio` (default: what the stream says): false drops audio tags;
 * - `timeout` (ms, default 20000): give up when no picture came by then;
 * - `hevcWords`: what to say when the stream is H.265 and this browser cannot decode it;
 * - `onPlaying()`: the first picture was shown;
 * - `onEnd(words, code)`: the stream ended normally (close code 1000);
 * - `onError(words)`: it was refused, broke, or the player failed; said in words.
 * After `onEnd`/`onError` the handle is stopped already.
 */
export function play(video, url, options = {}) {
  const live = options.live !== false;
  let stopped = false;
  let frames = false;
  let timer = null;
  const handle = { player: null, stop, ws: null, codec: null };

  function finish(fn, ...args) {
    if (stopped) return;
    stop();
    if (fn) fn(...args);
  }

  function stop() {
    if (stopped) return;
    stopped = true;
    clearTimeout(timer);
    video.removeEventListener("error", onVideoError);
    const player = handle.player;
    handle.player = null;
    if (player) {
      try {
        player.pause();
        player.unload();
        player.detachMediaElement();
        player.destroy();
      } catch (e) {
        // a player half-built when it failed: nothing more to free
      }
    }
    // Leaves no decoder or buffer behind: a 16-pane wall re-opened all day must not grow.
    video.removeAttribute("src");
    video.load();
  }

  function onVideoError() {
    const err = video.error;
    finish(options.onError, `the browser could not decode the video${err && err.message ? `: ${err.message}` : ""}`);
  }

  const blocked = mixedContent(url);
  if (blocked) {
    setTimeout(() => finish(options.onError, blocked), 0);
    return handle;
  }
  if (!window.mpegts || !mpegts.getFeatureList().mseLivePlayback) {
    setTimeout(() => finish(options.onError, "this browser cannot play live video (no Media Source Extensions)"), 0);
    return handle;
  }

  const source = { type: "flv", isLive: true, url };
  if (options.hasAudio === false) source.hasAudio = false;
  const player = mpegts.createPlayer(source, {
    enableWorker: false, // a custom loader class cannot cross into a worker
    enableStashBuffer: false,
    lazyLoad: false,
    autoCleanupSourceBuffer: true,
    autoCleanupMaxBackwardDuration: 20,
    autoCleanupMinBackwardDuration: 10,
    liveBufferLatencyChasing: live,
    liveBufferLatencyMaxLatency: 1.5,
    liveBufferLatencyMinRemain: 0.3,
    customLoader: loaderClass({
      onOpen(ws) {
        handle.ws = ws;
      },
      onData: flvCodecSniffer((codec) => {
        handle.codec = codec;
        if (codec === "h265" && !hevcSupported()) {
          finish(options.onError, options.hevcWords || "the camera sends H.265, which this browser"
            + " cannot decode (no HEVC in its Media Source Extensions)");
        }
      }),
      onClose(code, reason, received) {
        if (code === 1000) finish(options.onEnd, closeWords(code, reason), code);
        else finish(options.onError, closeWords(code, reason), code);
      },
    }),
  });
  handle.player = player;
  player.on(mpegts.Events.ERROR, (type, detail, info) => {
    const said = info && (info.msg || info.message);
    finish(options.onError, `the player failed (${type}: ${detail}${said ? `, ${said}` : ""})`);
  });
  video.addEventListener("error", onVideoError);
  player.attachMediaElement(video);
  player.load();
  const started = player.play();
  if (started && started.catch) {
    started.catch((e) => {
      // Autoplay refused (a page not yet clicked, sound on): say so; the stream still loads.
      if (!stopped && e && e.name === "NotAllowedError") {
        video.muted = true;
        video.play().catch(() => {});
      }
    });
  }
  const seen = () => {
    if (stopped || frames) return;
    frames = true;
    clearTimeout(timer);
    if (options.onPlaying) options.onPlaying();
  };
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(seen);
  else video.addEventListener("playing", seen, { once: true });
  const timeout = options.timeout ?? 20000;
  if (timeout) {
    timer = setTimeout(() => {
      if (!frames) finish(options.onError, `no picture came within ${Math.round(timeout / 1000)} s`);
    }, timeout);
  }
  return handle;
}
