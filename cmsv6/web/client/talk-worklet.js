// The talk-back microphone's AudioWorklet (loaded by talk.js): the microphone, mono, brought
// to 8000 Hz and cut into frames of signed 16-bit PCM (`frame` samples, 320 = 40 ms), each
// posted to the page as an ArrayBuffer, which sends it as one WebSocket message
// (docs/talkback.md: 20-40 ms a message).
//
// Resampling averages the input samples that fall in each output sample (a box filter):
// enough against aliasing for speech from 44.1/48 kHz, and exact when the AudioContext
// already runs at 8000 Hz (Chromium resamples the microphone itself then).

const RATE = 8000;

class PcmFrames extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.frame = o.frame || 320;
    this.step = sampleRate / RATE; // input samples per output sample (global `sampleRate`)
    this.out = new Int16Array(this.frame);
    this.n = 0;
    this.sum = 0;
    this.count = 0;
    this.pos = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || !input.length) return true;
    const channel = input[0];
    for (let i = 0; i < channel.length; i += 1) {
      this.sum += channel[i];
      this.count += 1;
      this.pos += 1;
      if (this.pos < this.step) continue;
      this.pos -= this.step;
      const v = Math.max(-1, Math.min(1, this.sum / this.count));
      this.sum = 0;
      this.count = 0;
      this.out[this.n] = v < 0 ? v * 0x8000 : v * 0x7fff;
      this.n += 1;
      if (this.n === this.frame) {
        this.port.postMessage(this.out.buffer, [this.out.buffer]);
        this.out = new Int16Array(this.frame);
        this.n = 0;
      }
    }
    return true;
  }
}

registerProcessor("cmsv6-pcm-frames", PcmFrames);
