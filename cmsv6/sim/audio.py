"""A simulated unit's audio codec: the clip's tone encoded in it, and what the platform
talks down decoded from it and measured.

Codecs (``--audio-codec``), as 0x1003 announces them and the packets' payload type says:

* ``g711a`` (6), ``g711u`` (7): FFmpeg's ``pcm_alaw``/``pcm_mulaw``, a byte a sample;
* ``g726`` (8): 32 kbit/s, code words packed from the low bits (FFmpeg's ``g726le``, as
  HiSilicon units send it);
* ``adpcm`` (26): IMA-ADPCM in HiSilicon's "DVI4" blocks: a 4-byte state (the predictor,
  int16 little-endian, which is the previous block's last sample; the step index; a zero
  byte), then two codes a byte, high nibble first. FFmpeg has no encoder for that layout
  (its ``adpcm_ima_wav`` makes blocks of 2^n bytes with the first sample in the state):
  the unit encodes with the media server's talk-back encoder (``cmsv6.media.talk``),
  which re-packs FFmpeg's blocks; the media server's reader (``cmsv6.media.audio``,
  FFmpeg's decoder) is what the tests check them with.

Every codec frames 40 ms (320 samples at 8 kHz): 320 bytes of G.711, 160 of G.726, 164 of
ADPCM. Decoding what comes down takes any frame length and a HiSilicon header or none.
"""

from __future__ import annotations

import math
import struct
from collections import deque

import av
from attrs import frozen

from cmsv6.media.talk import MAX_FEED, TalkEncoder
from cmsv6.protocols.jt808.messages.jt1078 import AvCodec
from cmsv6.protocols.jt1078.audio import strip_hisilicon

RATE = 8000
FRAME_SAMPLES = 320
#: G.726's bits a sample (32 kbit/s).
G726_BITS = 4
#: ``--audio-codec`` names → table 12 codes.
CODECS = {
    "g711a": AvCodec.G711A,
    "g711u": AvCodec.G711U,
    "g726": AvCodec.G726,
    "adpcm": AvCodec.ADPCMA,
}
#: FFmpeg's decoder for each.
_DECODERS = {"g711a": "pcm_alaw", "g711u": "pcm_mulaw", "g726": "g726le", "adpcm": "adpcm_ima_wav"}
#: Frames at most a talk-back keeps for measuring its frequency (0.5 s... here 2048 samples).
WINDOW = 2048
#: Frequencies a talk-back report chooses from (Hz): 50 to 3950 in steps of 50.
CANDIDATES = tuple(range(50, RATE // 2, 50))
#: The largest payload decoded, in bytes (1 s of G.711).
MAX_PAYLOAD = 8000

_SWAP_NIBBLES = bytes(((b << 4) | (b >> 4)) & 0xFF for b in range(256))


class AudioCodecError(ValueError):
    """A payload the unit cannot decode, in words."""


def payload_type(codec: str) -> int:
    """The table 12 code of a ``--audio-codec`` name."""
    return int(CODECS[codec])


# -- encoding -------------------------------------------------------------------------------


def encode(codec: str, pcm: bytes) -> list[bytes]:
    """16-bit little-endian mono 8 kHz samples as frames of 320 samples in ``codec`` (the
    last frame is dropped when it is not whole): the media server's talk-back encoder
    (FFmpeg's, with IMA-ADPCM re-packed into the DVI4 layout units use)."""
    if codec not in CODECS:
        raise ValueError(f"audio codec {codec!r} is not one of {sorted(CODECS)}")
    count = len(pcm) // 2 // FRAME_SAMPLES
    encoder = TalkEncoder(codec, FRAME_SAMPLES, g726_bits=G726_BITS)
    frames: list[bytes] = []
    for at in range(0, 2 * count * FRAME_SAMPLES, MAX_FEED):
        frames += encoder.feed(pcm[at : min(at + MAX_FEED, 2 * count * FRAME_SAMPLES)])
    frames += encoder.flush()
    return frames[:count]


# -- decoding -------------------------------------------------------------------------------


class Decoder:
    """What the platform sends down, in the unit's codec, to 16-bit samples."""

    def __init__(self, codec: str) -> None:
        if codec not in CODECS:
            raise ValueError(f"audio codec {codec!r} is not one of {sorted(CODECS)}")
        self.codec = codec
        name = _DECODERS[codec]
        ctx = av.CodecContext.create(name, "r")
        ctx.sample_rate, ctx.layout = RATE, "mono"
        if codec == "g726":
            ctx.options = {"bits_per_coded_sample": str(G726_BITS)}
        elif codec == "adpcm":
            ctx.options = {"bits_per_coded_sample": "4", "block_align": str(MAX_PAYLOAD)}
        ctx.open()
        self._ctx = ctx

    def decode(self, payload: bytes) -> list[int]:
        """The samples of one frame; AudioCodecError when it does not decode."""
        data, _ = strip_hisilicon(payload)
        if not data:
            raise AudioCodecError("empty audio frame")
        if len(data) > MAX_PAYLOAD:
            raise AudioCodecError(f"audio frame of {len(data)} bytes is over {MAX_PAYLOAD}")
        adpcm = self.codec == "adpcm"
        if adpcm:
            if len(data) <= 4 or data[2] > 88:
                raise AudioCodecError(f"IMA-ADPCM frame of {len(data)} bytes has no valid state")
            data = data[:4] + data[4:].translate(_SWAP_NIBBLES)
        try:
            frames = self._ctx.decode(av.Packet(data))
        except av.error.FFmpegError as e:
            raise AudioCodecError(f"{self.codec} frame of {len(data)} bytes: {e}") from None
        out: list[int] = []
        for f in frames:
            plane = bytes(f.planes[0])[: 2 * f.samples]
            out += struct.unpack(f"<{f.samples}h", plane)
        if adpcm and out:
            out = out[1:]  # FFmpeg makes a sample of the state's predictor: not one in DVI4
        return out


# -- measuring ------------------------------------------------------------------------------


def goertzel(samples: list[int] | deque[int], freq: float, rate: int = RATE) -> float:
    """The power of ``samples`` at ``freq``."""
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def dominant(samples: list[int] | deque[int], candidates: tuple[int, ...] = CANDIDATES) -> int:
    """The candidate frequency with the most power (0 for silence)."""
    if not any(samples):
        return 0
    return max(candidates, key=lambda f: goertzel(samples, f))


def dbfs(square_sum: float, count: int) -> float:
    """The RMS level of ``count`` 16-bit samples whose squares sum to ``square_sum``, in dB
    below full scale (-inf for silence)."""
    if not count or not square_sum:
        return -math.inf
    return 20 * math.log10(math.sqrt(square_sum / count) / 32768)


@frozen
class TalkReport:
    """What a talk-back (or broadcast) has received so far."""

    phone: str
    channel: int
    codec: str
    frames: int
    seconds: float
    level_dbfs: float
    frequency: int
    skipped: int = 0
    last_error: str | None = None

    def __str__(self) -> str:
        text = (
            f"{self.phone} channel {self.channel}: talk-back heard {self.frames} {self.codec}"
            f" frames, {self.seconds:.1f} s, {self.level_dbfs:.1f} dBFS, {self.frequency} Hz"
        )
        if self.skipped:
            text += f" ({self.skipped} frames did not decode: {self.last_error})"
        return text


class Listener:
    """A talk-back's ear: decodes the frames that come down and measures them."""

    def __init__(self, phone: str, channel: int, codec: str) -> None:
        self.phone = phone
        self.channel = channel
        self.codec = codec
        self.frames = 0
        self.samples = 0
        self.skipped = 0
        self.last_error: str | None = None
        self._squares = 0.0
        self._window: deque[int] = deque(maxlen=WINDOW)
        self._decoder = Decoder(codec)
        self._frequency = 0
        self._measured_at = -1

    def heard(self, payload: bytes) -> None:
        try:
            samples = self._decoder.decode(payload)
        except AudioCodecError as e:
            self.skipped += 1
            self.last_error = str(e)
            return
        self.frames += 1
        self.samples += len(samples)
        self._squares += sum(s * s for s in samples)
        self._window.extend(samples)

    def report(self, fresh: bool = False) -> TalkReport:
        """The report; the frequency is measured again every 25 frames (or ``fresh``)."""
        if fresh or self._measured_at < 0 or self.frames - self._measured_at >= 25:
            self._measured_at = self.frames
            self._frequency = dominant(self._window)
        return TalkReport(
            self.phone, self.channel, self.codec, self.frames, self.samples / RATE,
            round(dbfs(self._squares, self.samples), 1), self._frequency, self.skipped,
            self.last_error,
        )
