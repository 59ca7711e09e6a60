"""Units' audio to AAC for browsers, with FFmpeg (PyAV).

Browsers' FLV players take AAC and nothing a DVR sends (G.711 in FLV stalls mpegts.js),
so the media server transcodes each unit channel's audio once — one ``AudioTranscoder``
per stream, shared by all its viewers, fed the frames in the order they came — and
muxes what comes out with ``FlvMuxer.aac(frame.data, frame.timestamp, frame.config)``.

How FFmpeg is made to decode what units send (PyAV cannot demux raw codec bytes as a
stream, but a decoder's generic options set what the demuxers would):

* G.711A/U: ``pcm_alaw``/``pcm_mulaw``, a byte a sample.
* G.726, 16-40 kbit/s (``bits_per_coded_sample`` 2-5): code words packed as RFC 3551 does,
  the first in the low bits (FFmpeg's ``g726le``; HiSilicon's ``G726_xxK``), unless
  ``g726_decoder="g726"`` (the first in the high bits; HiSilicon's ``MEDIA_G726_xxK``, which
  some peers decode). The only G.726 capture we have (tests/conformance, a 24 kbit/s unit)
  decodes to audio as ``g726le`` and to noise otherwise. The rate is ``g726_bits``, or
  comes from a frame's size and the step to the next frame's timestamp.
* IMA-ADPCM: one block a frame, a 4-byte state (predictor int16 little-endian, step index,
  reserved byte) then 4-bit codes *high nibble first*, the predictor not being a sample of
  its own (HiSilicon's "DVI4" layout; SmallChi/JT1078 and hylexus/jt-framework decode it
  so). The nibbles are swapped into ``adpcm_ima_wav``'s order and the sample that decoder
  makes of the predictor is dropped: 164 bytes, 320 samples, 40 ms. In the corpus's
  Streamax-like capture only this reading makes each block's predictor the last sample of
  the block before. ``ima_layout="wav"`` takes FFmpeg's own layout instead.

A HiSilicon header (``00 01 LL 00``) is stripped first, whatever the codec.

Time: each AAC frame gets the unit's clock (ms) of its first sample, counted in samples
from the frame that started the stream, so the output steps evenly and never goes back. A
frame whose timestamp is more than ``max_drift`` ms away from that count (audio lost, or the
unit's clock jumped) re-anchors the count on the unit's clock: forwards the output leaps
(the player fills the gap), backwards it holds still until the count catches up, unless the
unit's clock went back by more than the FLV muxer's ``MAX_GAP`` — a clock reset, which the
muxer's Timeline absorbs for audio and video alike, so audio follows it there.

Bad input never raises out of ``feed``: a payload that cannot be decoded (empty, larger than
``max_payload``, an ADPCM state out of range, FFmpeg refusing it) is counted in
``counters.skipped`` and its reason kept in ``last_error``; the stream goes on. Nothing is
held beyond one AAC frame's worth of samples in the resampler, the encoder's few frames,
and at most one G.726 frame waiting for its rate.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction

import av
from attrs import define, frozen

from cmsv6.protocols.flv.muxer import MAX_GAP
from cmsv6.protocols.jt808.messages.jt1078 import codec_name
from cmsv6.protocols.jt1078.audio import (
    AUDIO_CODECS,
    G726_RATES,
    IMA_STATE_SIZE,
    g726_bits_per_sample,
    strip_hisilicon,
)

#: The largest frame taken, in bytes without the HiSilicon header: 1 s of G.711.
MAX_PAYLOAD = 8000
#: How far (ms) a frame's timestamp may stray from the sample count before the output
#: clock is re-anchored on it.
MAX_DRIFT = 200
#: AAC output: FFmpeg's native encoder, AAC-LC mono. 8 kHz keeps all a unit's 8 kHz audio
#: holds, at the lowest cost; browsers' MSE and mpegts.js take it (16000 also works).
OUT_RATE = 8000
BIT_RATE = 24_000
#: The nibble swap that turns DVI4 code order into adpcm_ima_wav's.
_SWAP_NIBBLES = bytes(((b << 4) | (b >> 4)) & 0xFF for b in range(256))
_IMA_MAX_STEP = 88
#: Re-anchorings kept for frames the encoder still holds (it holds a few).
_MAX_ANCHORS = 64
#: How far (share of a rate) a jittery G.726 frame duration may miss a whole bit count.
_G726_FIT = 0.05


class TranscodeError(ValueError):
    """A transcoder that cannot be made (a codec or option we do not take), in words."""


class _Skip(Exception):
    """One payload that is not decoded; the message says why."""


@frozen
class AacFrame:
    """One raw AAC access unit (no ADTS header) for ``FlvMuxer.aac``.

    ``timestamp`` is the unit's clock (ms) of its first sample; ``config`` the encoder's
    AudioSpecificConfig; ``samples`` how many samples it codes (1024, fewer for the last).
    """

    data: bytes
    timestamp: int
    config: bytes
    samples: int


@define
class TranscodeCounters:
    #: Payloads fed.
    payloads: int = 0
    #: Payloads not decoded (``last_error`` says why the last one was not).
    skipped: int = 0
    #: Samples decoded, at the input rate.
    samples: int = 0
    aac_frames: int = 0
    #: Times the output clock was re-anchored on the unit's (lost audio, clock jumps).
    resyncs: int = 0


class AudioTranscoder:
    """One stream's audio (``codec_name``: one of ``AUDIO_CODECS``' names but "aac") to AAC.

    ``feed`` each frame's payload as the unit sent it, in order, with its timestamp (ms);
    ``flush`` at the end of the stream for the last samples.
    """

    def __init__(
        self,
        codec_name: str,
        sample_rate: int = 8000,
        *,
        out_rate: int = OUT_RATE,
        bit_rate: int = BIT_RATE,
        g726_bits: int | None = None,
        g726_decoder: str = "g726le",
        ima_layout: str = "dvi4",
        max_payload: int = MAX_PAYLOAD,
        max_drift: int = MAX_DRIFT,
    ) -> None:
        if codec_name == "aac":
            raise TranscodeError(
                "the unit sends AAC already: mux its ADTS frames as they are"
            )
        if codec_name not in ("pcm_alaw", "pcm_mulaw", "g726", "adpcm_ima"):
            raise TranscodeError(f"no transcoding from audio codec {codec_name!r}")
        if g726_bits is not None and g726_bits not in G726_RATES:
            raise TranscodeError(f"G.726 takes 2-5 bits a sample, not {g726_bits}")
        if g726_decoder not in ("g726le", "g726"):
            raise TranscodeError(
                f"G.726 decoder is g726le or g726, not {g726_decoder!r}"
            )
        if ima_layout not in ("dvi4", "wav"):
            raise TranscodeError(f"IMA-ADPCM layout is dvi4 or wav, not {ima_layout!r}")
        self.codec_name = codec_name
        self.sample_rate = sample_rate
        self.out_rate = out_rate
        self.max_payload = max_payload
        self.max_drift = max_drift
        self.counters = TranscodeCounters()
        #: Why the last skipped payload was skipped, in words.
        self.last_error: str | None = None
        self._g726_decoder = g726_decoder
        self._ima_layout = ima_layout
        self._decoder: av.CodecContext | None = None
        if codec_name == "g726":
            if g726_bits is not None:
                self._decoder = self._open_decoder(
                    g726_decoder, bits_per_coded_sample=g726_bits
                )
        elif codec_name == "adpcm_ima":
            # One block a packet: block_align only caps how much of a packet is read.
            self._decoder = self._open_decoder(
                "adpcm_ima_wav", bits_per_coded_sample=4, block_align=max_payload
            )
        else:
            self._decoder = self._open_decoder(codec_name)
        self.g726_bits = g726_bits
        self._pending: tuple[bytes, int] | None = (
            None  # a G.726 frame waiting for its rate
        )
        try:
            encoder = av.CodecContext.create("aac", "w")
            encoder.sample_rate = out_rate
            encoder.format = "fltp"
            encoder.layout = "mono"
            encoder.bit_rate = bit_rate
            encoder.time_base = Fraction(1, out_rate)
            encoder.open()
        except (av.error.FFmpegError, ValueError) as e:
            raise TranscodeError(
                f"no AAC encoder at {out_rate} Hz, {bit_rate} bit/s: {e}"
            ) from None
        self._encoder = encoder
        #: The AudioSpecificConfig every frame carries.
        self.config: bytes = encoder.extradata or b""
        self._resampler = av.AudioResampler(
            format="fltp", layout="mono", rate=out_rate, frame_size=encoder.frame_size
        )
        self._decoded = 0  # samples decoded (input rate)
        self._encoded_end: int | None = (
            None  # the output sample where the last AAC frame ends
        )
        self._out_pts = 0  # samples handed to the encoder (output rate)
        self._anchors: deque[tuple[int, int]] = deque(
            maxlen=_MAX_ANCHORS
        )  # (sample, ms)
        self._last_time: int | None = None
        self._closed = False

    @classmethod
    def for_payload_type(cls, payload_type: int, **options: object) -> AudioTranscoder:
        """The transcoder for a table 12 audio coding type (6 G.711A, 7 G.711U, 8 G.726,
        26 ADPCMA). Raises TranscodeError for AAC (nothing to do) and codecs we do not take."""
        codec = AUDIO_CODECS.get(payload_type)
        if codec is None:
            raise TranscodeError(
                f"audio coding {codec_name(payload_type)} is not supported"
            )
        return cls(codec, **options)  # type: ignore[arg-type]

    @property
    def buffered(self) -> int:
        """Samples (output rate) fed in but not yet out in an AAC frame."""
        fed = self._decoded * self.out_rate // self.sample_rate
        return fed - (self._encoded_end or 0)

    # -- in -----------------------------------------------------------------------------------

    def feed(self, payload: bytes, timestamp: int) -> list[AacFrame]:
        """The AAC frames that are ready once this frame is in (often none: one AAC frame
        holds 128 ms at 8 kHz). Never raises on input."""
        self.counters.payloads += 1
        if self._closed:
            self._skip("audio after the end of the stream")
            return []
        try:
            data = self._accept(payload)
            if self.codec_name == "g726" and self._decoder is None:
                return self._rate_g726(data, timestamp)
            return self._transcode(data, timestamp)
        except _Skip as e:
            self._skip(str(e))
            return []

    def flush(self) -> list[AacFrame]:
        """The stream ended: the samples still held, encoded. The transcoder takes no more."""
        if self._closed:
            return []
        self._closed = True
        if self._pending is not None:
            self._skip(
                f"G.726 frame of {len(self._pending[0])} bytes at the end, its rate never known"
            )
            self._pending = None
        frames = self._resampler.resample(None)
        return self._encode(frames, final=True)

    # -- decoding -----------------------------------------------------------------------------

    def _open_decoder(self, name: str, **options: int) -> av.CodecContext:
        ctx = av.CodecContext.create(name, "r")
        ctx.sample_rate = self.sample_rate
        ctx.layout = "mono"
        ctx.options = {k: str(v) for k, v in options.items()}
        try:
            ctx.open()
        except av.error.FFmpegError as e:
            raise TranscodeError(
                f"FFmpeg's {name} decoder does not open: {e}"
            ) from None
        return ctx

    def _accept(self, payload: bytes) -> bytes:
        data, _ = strip_hisilicon(payload)
        if len(data) > self.max_payload:
            raise _Skip(
                f"audio frame of {len(data)} bytes is over the {self.max_payload}-byte limit"
            )
        if not data:
            raise _Skip("empty audio frame")
        if self.codec_name == "adpcm_ima":
            if len(data) <= IMA_STATE_SIZE:
                raise _Skip(
                    f"IMA-ADPCM frame of {len(data)} bytes has no samples after its state"
                )
            if data[2] > _IMA_MAX_STEP:
                raise _Skip(
                    f"IMA-ADPCM step index {data[2]} is out of 0-{_IMA_MAX_STEP}"
                )
        return data

    def _rate_g726(self, data: bytes, timestamp: int) -> list[AacFrame]:
        """Without ``g726_bits``, hold the first frame until the next one's timestamp says
        how long it lasts; that gives the rate."""
        if self._pending is None:
            self._pending = (data, timestamp)
            return []
        first, first_time = self._pending
        self._pending = (data, timestamp)
        bits = _g726_bits(len(first), timestamp - first_time)
        if bits is None:
            raise _Skip(
                f"G.726 frame of {len(first)} bytes lasting {timestamp - first_time} ms fits no"
                " rate of 16-40 kbit/s"
            )
        self.g726_bits = bits
        self._decoder = self._open_decoder(
            self._g726_decoder, bits_per_coded_sample=bits
        )
        self._pending = None
        out = self._transcode_or_skip(first, first_time)
        return out + self._transcode_or_skip(data, timestamp)

    def _transcode_or_skip(self, data: bytes, timestamp: int) -> list[AacFrame]:
        try:
            return self._transcode(data, timestamp)
        except _Skip as e:
            self._skip(str(e))
            return []

    def _transcode(self, data: bytes, timestamp: int) -> list[AacFrame]:
        assert self._decoder is not None
        if self.codec_name == "adpcm_ima" and self._ima_layout == "dvi4":
            codes = data[IMA_STATE_SIZE:].translate(_SWAP_NIBBLES)
            data = data[:IMA_STATE_SIZE] + codes
        try:
            frames = self._decoder.decode(av.Packet(data))
        except av.error.FFmpegError as e:
            raise _Skip(
                f"{self.codec_name} frame of {len(data)} bytes does not decode: {e}"
            ) from None
        if self.codec_name == "adpcm_ima" and self._ima_layout == "dvi4":
            frames = [_drop_first_sample(f) for f in frames]
        samples = sum(f.samples for f in frames)
        if not samples:
            raise _Skip(
                f"{self.codec_name} frame of {len(data)} bytes decodes to no samples"
            )
        self._place(timestamp, samples)
        for f in frames:
            f.pts = self._decoded
            f.time_base = Fraction(1, self.sample_rate)
            self._decoded += f.samples
        self.counters.samples += samples
        resampled = [r for f in frames for r in self._resampler.resample(f)]
        return self._encode(resampled)

    def _skip(self, reason: str) -> None:
        self.counters.skipped += 1
        self.last_error = reason

    # -- time and encoding --------------------------------------------------------------------

    def _place(self, timestamp: int, samples: int) -> None:
        """Where the frame's first sample is on the unit's clock."""
        if self._anchors:
            at, ms = self._anchors[-1]
            expected = ms + (self._decoded - at) * 1000 / self.sample_rate
            if abs(timestamp - expected) <= self.max_drift:
                return
            self.counters.resyncs += 1
        self._anchors.append((self._decoded, timestamp))

    def _time(self, pts: int) -> int:
        """The unit's clock (ms) of output sample ``pts``."""
        at_input = pts * self.sample_rate / self.out_rate
        while len(self._anchors) > 1 and self._anchors[1][0] <= at_input:
            self._anchors.popleft()
        at, ms = self._anchors[0]
        t = max(0, round(ms + (at_input - at) * 1000 / self.sample_rate))
        last = self._last_time
        if last is not None and t < last and last - t <= MAX_GAP:
            t = last  # the unit's clock lags our count: hold still rather than go back
        self._last_time = t
        return t

    def _encode(
        self, frames: list[av.AudioFrame], final: bool = False
    ) -> list[AacFrame]:
        packets = []
        for f in frames:
            f.pts = self._out_pts
            f.time_base = Fraction(1, self.out_rate)
            self._out_pts += f.samples
            packets += self._encoder.encode(f)
        if final:
            packets += self._encoder.encode(None)
        out = []
        for p in packets:
            if p.pts is None or not self._anchors:
                continue
            duration = int(p.duration or self._encoder.frame_size)
            out.append(
                AacFrame(bytes(p), self._time(int(p.pts)), self.config, duration)
            )
            self._encoded_end = int(p.pts) + duration
        self.counters.aac_frames += len(out)
        return out


def _g726_bits(size: int, duration_ms: int) -> int | None:
    """G.726's bits a sample for ``size`` bytes lasting ``duration_ms``: exact, or within
    a few per cent for a unit whose clock jitters."""
    exact = g726_bits_per_sample(size, duration_ms)
    if exact is not None or duration_ms <= 0:
        return exact
    bits = size / duration_ms  # size * 8 bits over duration_ms * 8 samples
    nearest = round(bits)
    if nearest in G726_RATES and abs(bits - nearest) <= _G726_FIT * nearest:
        return nearest
    return None


def _drop_first_sample(frame: av.AudioFrame) -> av.AudioFrame:
    """``frame`` without its first sample (mono, 16-bit): the sample adpcm_ima_wav makes of
    a DVI4 block's predictor, which the block before already ended on."""
    n = frame.samples - 1
    out = av.AudioFrame(format=frame.format.name, layout="mono", samples=n)
    out.planes[0].update(bytes(frame.planes[0])[2 : 2 + 2 * n])
    out.sample_rate = frame.sample_rate
    return out
