"""A simulated unit's audio codec: the clip's tone encoded in it, and what the platform
talks down decoded from it and measured.

Codecs (``--audio-codec``), as 0x1003 announces them and the packets' payload type says:

* ``g711a`` (6), ``g711u`` (7): FFmpeg's ``pcm_alaw``/``pcm_mulaw``, a byte a sample;
* ``g726`` (8): 32 kbit/s, code words packed from the low bits (FFmpeg's ``g726le``, as
  HiSilicon units send it);
* ``adpcm`` (26): IMA-ADPCM in HiSilicon's "DVI4" blocks: a 4-byte state (the predictor,
  int16 little-endian, which is the previous block's last sample; the step index; a zero
  byte), then two codes a byte, high nibble first. FFmpeg has no encoder for that layout
  (its ``adpcm_ima_wav`` makes blocks of 2^n bytes with the first sample in the state), so
  the blocks are encoded here by the IMA algorithm; the media server's reader
  (``cmsv6.media.audio``, FFmpeg's decoder) is what the tests check them with.

Every codec frames 40 ms (320 samples at 8 kHz): 320 bytes of G.711, 160 of G.726, 164 of
ADPCM. Decoding what comes down takes any frame length and a HiSilicon header or none.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from fractions import Fraction

import av
from attrs import frozen

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

_IMA_INDEX = (-1, -1, -1, -1, 2, 4, 6, 8) * 2
_IMA_STEPS = (
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60,
    66, 73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371,
    408, 449, 494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552, 1707, 1878,
    2066, 2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484, 7132, 7845,
    8630, 9493, 10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385, 24623, 27086,
    29794, 32767,
)  # fmt: skip
_SWAP_NIBBLES = bytes(((b << 4) | (b >> 4)) & 0xFF for b in range(256))


class AudioCodecError(ValueError):
    """A payload the unit cannot decode, in words."""


def payload_type(codec: str) -> int:
    """The table 12 code of a ``--audio-codec`` name."""
    return int(CODECS[codec])


# -- encoding -------------------------------------------------------------------------------


def encode(codec: str, pcm: bytes) -> list[bytes]:
    """16-bit little-endian mono 8 kHz samples as frames of 320 samples in ``codec`` (the
    last frame is dropped when it is not whole)."""
    if codec not in CODECS:
        raise ValueError(f"audio codec {codec!r} is not one of {sorted(CODECS)}")
    count = len(pcm) // 2 // FRAME_SAMPLES * FRAME_SAMPLES
    pcm = pcm[: 2 * count]
    if codec == "adpcm":
        return dvi4_blocks(struct.unpack(f"<{count}h", pcm))
    data = _ffmpeg_encode(_DECODERS[codec], pcm)
    size = {"g726": FRAME_SAMPLES * G726_BITS // 8}.get(codec, FRAME_SAMPLES)
    return [data[at : at + size] for at in range(0, count * size // FRAME_SAMPLES, size)]


def _ffmpeg_encode(name: str, pcm: bytes) -> bytes:
    enc = av.CodecContext.create(name, "w")
    enc.sample_rate, enc.layout, enc.format = RATE, "mono", "s16"
    enc.time_base = Fraction(1, RATE)
    if name == "g726le":
        enc.bit_rate = G726_BITS * RATE
    enc.open()
    samples = len(pcm) // 2
    size = enc.frame_size or samples
    out = []
    for at in range(0, samples, size):
        chunk = pcm[2 * at : 2 * (at + size)]
        if enc.frame_size and len(chunk) < 2 * size:
            chunk += bytes(2 * size - len(chunk))
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(chunk) // 2)
        frame.planes[0].update(chunk)
        frame.sample_rate, frame.pts = RATE, at
        out += [bytes(p) for p in enc.encode(frame)]
    out += [bytes(p) for p in enc.encode(None)]
    return b"".join(out)


def dvi4_blocks(samples: tuple[int, ...] | list[int]) -> list[bytes]:
    """IMA-ADPCM blocks of 320 samples in the DVI4 layout (the state before the block,
    codes high nibble first), the state carried from block to block."""
    predictor, index = 0, 0
    out = []
    for at in range(0, len(samples) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        block = bytearray(struct.pack("<hBB", predictor, index, 0))
        high = -1
        for s in samples[at : at + FRAME_SAMPLES]:
            step = _IMA_STEPS[index]
            diff = s - predictor
            code = 8 if diff < 0 else 0
            diff = abs(diff)
            delta = step >> 3
            if diff >= step:
                code |= 4
                diff -= step
                delta += step
            if diff >= step >> 1:
                code |= 2
                diff -= step >> 1
                delta += step >> 1
            if diff >= step >> 2:
                code |= 1
                delta += step >> 2
            predictor = predictor - delta if code & 8 else predictor + delta
            predictor = max(-32768, min(32767, predictor))
            index = max(0, min(88, index + _IMA_INDEX[code]))
            if high < 0:
                high = code
            else:
                block.append(high << 4 | code)
                high = -1
        out.append(bytes(block))
    return out


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
