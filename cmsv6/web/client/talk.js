// Talk-back: hold the button to talk to the selected vehicle's driver. Pressing asks the
// Open API for a talk-back WebSocket (`POST /api/v1/devices/{phone}/talk`), opens the
// microphone, and once the media server says `{"type": "ready"}` sends 40 ms binary frames
// of 8 kHz mono 16-bit PCM (talk-worklet.js); releasing closes the socket, which ends the
// session on the device. While held, the vehicle's voice (FLV, AAC, binary messages on
// the same socket: docs/talkback.md) is decoded with WebCodecs and played.
//
// A browser gives the microphone only to a secure context (https, or http://localhost):
// elsewhere the button is disabled and #talk-status says why.
//
// For the browser tests: `window.cmsv6.talk = {state, sentFrames, receivedBytes, heardFrames}`
// (state: "idle" | "connecting" | "talking" | "error" | "unavailable").

import { closeWords, el } from "./player.js";

const FRAME_SAMPLES = 320; // 40 ms at 8000 Hz: 640 bytes a message

// What the talk-back close codes mean where they differ from live video's.
const TALK_CLOSE = {
  4015: "the vehicle's audio codec is none the media server can encode",
  4029: "somebody is talking on this channel already (one talk-back at a time), or the media server is full",
  4502: "the vehicle did not take the talk-back",
};
function talkCloseWords(code, reason) {
  if (TALK_CLOSE[code]) return reason ? `${TALK_CLOSE[code]}: ${reason}` : TALK_CLOSE[code];
  return closeWords(code, reason);
}

/** Why this page cannot have the microphone, in words; null when it can. */
export function microphoneRefusal() {
  if (!window.isSecureContext) {
    return "the microphone needs https (a secure context): see the README's TLS section";
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return "this browser gives no access to a microphone";
  }
  if (typeof AudioWorkletNode === "undefined") {
    return "this browser cannot process microphone audio (no AudioWorklet)";
  }
  return null;
}

// The vehicle's voice: an FLV byte stream (split anywhere) of AAC audio tags, decoded with
// WebCodecs' AudioDecoder and played on `audio` (an AudioContext) one buffer after another.
function voicePlayer(audio, onFrame) {
  let pending = new Uint8Array(0);
  let headerDone = false;
  let decoder = null;
  let next = 0;
  const MAX_PENDING = 1 << 20; // a tag is at most 16 MiB by format; ours are ~100 bytes

  function output(data) {
    try {
      const buffer = audio.createBuffer(1, data.numberOfFrames, data.sampleRate);
      data.copyTo(buffer.getChannelData(0), { planeIndex: 0, format: "f32-planar" });
      const source = audio.createBufferSource();
      source.buffer = buffer;
      source.connect(audio.destination);
      const at = Math.max(audio.currentTime + 0.05, next);
      source.start(at);
      next = at + buffer.duration;
      onFrame();
    } finally {
      data.close();
    }
  }

  function tag(type, timestamp, body) {
    if (type !== 8 || body.length < 2 || (body[0] >> 4) !== 10) return; // AAC audio only
    if (body[1] === 0) {
      if (decoder) decoder.close();
      decoder = new AudioDecoder({ output, error: () => {} });
      decoder.configure({ codec: "mp4a.40.2", sampleRate: 8000, numberOfChannels: 1, description: body.slice(2) });
    } else if (decoder && decoder.state === "configured") {
      decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: timestamp * 1000, data: body.slice(2) }));
    }
  }

  return {
    feed(chunk) {
      const bytes = new Uint8Array(chunk);
      const joined = new Uint8Array(pending.length + bytes.length);
      joined.set(pending);
      joined.set(bytes, pending.length);
      let at = 0;
      if (!headerDone) {
        if (joined.length < 13) {
          pending = joined;
          return;
        }
        at = 13; // FLV header (9) and PreviousTagSize0 (4)
        headerDone = true;
      }
      while (at + 11 <= joined.length) {
        const size = (joined[at + 1] << 16) | (joined[at + 2] << 8) | joined[at + 3];
        if (at + 11 + size + 4 > joined.length) break;
        const ts = ((joined[at + 7] << 24) | (joined[at + 4] << 16) | (joined[at + 5] << 8) | joined[at + 6]) >>> 0;
        tag(joined[at] & 0x1f, ts, joined.subarray(at + 11, at + 11 + size));
        at += 11 + size + 4;
      }
      pending = joined.slice(at);
      if (pending.length > MAX_PENDING) pending = new Uint8Array(0);
    },
    close() {
      if (decoder && decoder.state !== "closed") decoder.close();
      decoder = null;
    },
  };
}

export function mount(element, ctx) {
  window.cmsv6 = window.cmsv6 || {};
  const info = { state: "idle", sentFrames: 0, receivedBytes: 0, heardFrames: 0 };
  window.cmsv6.talk = info;

  const button = el("button", { type: "button", id: "talk", title: "Hold to talk to the driver" }, "Hold to talk");
  const status = el("span", { id: "talk-status", role: "status" });
  element.replaceChildren(el("div", { class: "talk" }, button, status));

  const refusal = microphoneRefusal();
  const canHear = typeof AudioDecoder !== "undefined";

  function say(words, error = false) {
    status.textContent = words;
    status.classList.toggle("error", error);
  }
  function vehicleName(phone) {
    const d = ctx.store.vehicles && ctx.store.vehicles.get(phone);
    return d && d.plate ? `${d.plate} (${phone})` : phone;
  }
  function idle() {
    if (refusal) {
      info.state = "unavailable";
      button.disabled = true;
      say(refusal, true);
      return;
    }
    info.state = "idle";
    const phone = ctx.store.selected;
    button.disabled = !phone;
    say(phone ? `ready: hold the button to talk to ${vehicleName(phone)}` : "select a vehicle to talk to its driver");
  }

  let session = null; // {ws, stream, audio, node, voice, ready, closed}
  let held = false;

  async function start() {
    if (refusal || session) return;
    const phone = ctx.store.selected;
    if (!phone) {
      say("select a vehicle first", true);
      return;
    }
    held = true;
    const s = (session = { ws: null, stream: null, audio: null, node: null, voice: null, ready: false, closed: false });
    info.state = "connecting";
    info.sentFrames = 0;
    info.receivedBytes = 0;
    info.heardFrames = 0;
    button.classList.add("talking");
    say("opening the microphone…");
    try {
      s.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      if (s.closed) return end(s);
      try {
        s.audio = new AudioContext({ sampleRate: 8000, latencyHint: "interactive" });
      } catch (e) {
        s.audio = new AudioContext({ latencyHint: "interactive" }); // the worklet resamples
      }
      await s.audio.audioWorklet.addModule(new URL("./talk-worklet.js", import.meta.url));
      if (s.closed) return end(s);
      const mic = s.audio.createMediaStreamSource(s.stream);
      s.node = new AudioWorkletNode(s.audio, "cmsv6-pcm-frames", {
        numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
        processorOptions: { frame: FRAME_SAMPLES },
      });
      // Connected to the output (silent) so that the browser keeps the worklet running.
      const mute = s.audio.createGain();
      mute.gain.value = 0;
      mic.connect(s.node).connect(mute).connect(s.audio.destination);
      s.node.port.onmessage = (e) => {
        // Before "ready" the server would drop it: not sent (docs/talkback.md).
        if (s.ready && s.ws && s.ws.readyState === WebSocket.OPEN && s.ws.bufferedAmount < 16384) {
          s.ws.send(e.data);
          info.sentFrames += 1;
        }
      };
    } catch (e) {
      return fail(s, e && e.name === "NotAllowedError"
        ? "the microphone was refused: allow it for this site in the browser"
        : `the microphone could not be opened: ${e && e.message ? e.message : e}`);
    }
    say(`asking ${vehicleName(phone)} to open talk-back…`);
    let answer;
    try {
      answer = await ctx.api("POST", `/api/v1/devices/${encodeURIComponent(phone)}/talk`, { channel: 1 });
    } catch (e) {
      return fail(s, e.message || String(e));
    }
    if (s.closed) return end(s);
    if (location.protocol === "https:" && answer.ws.startsWith("ws:")) {
      return fail(s, "this page is https but the media server's talk-back address is ws://, which the"
        + " browser refuses: serve the media server over TLS (README, \"TLS\")");
    }
    const ws = (s.ws = new WebSocket(answer.ws));
    ws.binaryType = "arraybuffer";
    s.voice = canHear ? voicePlayer(s.audio, () => { info.heardFrames += 1; }) : null;
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        let msg = null;
        try {
          msg = JSON.parse(e.data);
        } catch (err) {
          return;
        }
        if (msg && msg.type === "ready") {
          s.ready = true;
          info.state = "talking";
          say(`talking to ${vehicleName(phone)} (${msg.codec || "?"}): release to stop`
            + (canHear ? "" : "; this browser cannot play the vehicle's voice (no WebCodecs)"));
        } else if (msg && msg.type === "error") {
          s.error = msg.error;
        }
        return;
      }
      info.receivedBytes += e.data.byteLength;
      if (s.voice) {
        try {
          s.voice.feed(e.data);
        } catch (err) {
          s.voice = null; // the voice is a bonus: talking goes on without it
        }
      }
    };
    ws.onclose = (e) => {
      if (s.closed) return;
      if (e.code === 1000) {
        end(s);
        say(e.reason ? `talk-back ended: ${e.reason}` : "talk-back ended");
      } else {
        fail(s, s.error || talkCloseWords(e.code, e.reason));
      }
    };
    if (!held) end(s);
  }

  function end(s) {
    s.closed = true;
    if (s.ws && s.ws.readyState <= WebSocket.OPEN) s.ws.close(1000);
    if (s.voice) s.voice.close();
    if (s.stream) for (const t of s.stream.getTracks()) t.stop();
    if (s.audio && s.audio.state !== "closed") s.audio.close().catch(() => {});
    if (session === s) {
      session = null;
      button.classList.remove("talking");
      idle();
    }
  }

  function fail(s, words) {
    end(s);
    info.state = "error";
    say(words, true);
  }

  function release() {
    held = false;
    if (session) end(session);
  }

  button.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    button.setPointerCapture(e.pointerId);
    start();
  });
  button.addEventListener("pointerup", release);
  button.addEventListener("pointercancel", release);
  button.addEventListener("lostpointercapture", release);
  button.addEventListener("keydown", (e) => {
    if ((e.key === " " || e.key === "Enter") && !e.repeat) {
      e.preventDefault();
      start();
    }
  });
  button.addEventListener("keyup", (e) => {
    if (e.key === " " || e.key === "Enter") release();
  });
  button.addEventListener("contextmenu", (e) => e.preventDefault()); // a long touch
  window.addEventListener("blur", release);
  ctx.on("select", () => {
    release();
    idle();
  });
  ctx.on("signout", release);
  idle();
}
