"""Talk-back audio to a unit: a browser's PCM encoded into the unit's codec, with FFmpeg
(PyAV). The inverse of ``cmsv6.media.audio``: what comes out here decodes there.

In: PCM signed 16-bit little-endian, mono, 8000 Hz, in chunks of any size (an odd byte
waits for its pair). Out: the unit's audio frames, each ``frame_samples`` samples (its
0x1003 "audio frame length"; 320 = 40 ms when it does not say), ready to be cut into
JT/T 1078 audio packets:

* G.711A/U: FFmpeg's ``pcm_alaw``/``pcm_mulaw``, a byte a sample.
* G.726, 2-5 bits a sample (16-40 kbit/s): FFmpeg's ``g726le`` encoder (code words packed
  from the low bits, as ``cmsv6.media.audio`` and the captured units read them). FFmpeg's
  G.726 encoder takes 1640-4096 samples at a time (205-512 ms) and keeps its state from one
  to the next, so frames come out in bursts that long after the samples went in: the
  unit's audio lags that much more than with the other codecs.
* IMA-ADPCM as HiSilicon units take it ("DVI4"): one block a frame, a 4-byte state
  (predictor int16 LE, step index, 0) then the codes, high nibble first, the predictor
  not being a sample of its own. It is FFmpeg's ``adpcm_ima_wav`` block re-packed: that
  encoder writes the state (its first sample, exactly, and its step index) then codes the
  rest of the block low nibble first. Each unit frame is one FFmpeg block whose first
  sample is the previous frame's last sample and whose next ``frame_samples`` samples
  are the frame's; FFmpeg's blocks hold a power of two of bytes, so the codes past the
  frame are dropped, and the samples that fill them are the frame's own, backwards, so
  that the step index the next block starts with suits the signal. The first frame is
  encoded once before it counts, for the same reason.
* A HiSilicon header (``00 01 LL 00``, LL the length in 16-bit words) in front of each
  frame when the unit's own audio carries one (``hisilicon=True``).

Bounded: ``feed`` takes at most ``MAX_FEED`` bytes at a time and keeps fewer than one
frame of samples (G.726: one FFmpeg block) between calls. ``flush`` ends the stream with
the samples held, padded with silence to a whole frame.
"""

from __future__ import annotations

import struct
from fractions import Fraction

import av

from cmsv6.protocols.jt808.messages.jt1078 import AvCodec
from cmsv6.protocols.jt1078.audio import G726_RATES

RATE = 8000
#: The unit's frame when its 0x1003 does not say: 40 ms.
DEFAULT_FRAME_SAMPLES = 320
#: The longest frame taken (0x1003's field is 16 bits; units use 160-1024): 0.5 s.
MAX_FRAME_SAMPLES = 4000
#: The most PCM one ``feed`` takes: 1 s.
MAX_FEED = 2 * RATE
#: G.726 bits a sample when nothing says: 32 kbit/s.
DEFAULT_G726_BITS = 4
#: Codec names (as the Open API and the talk-back WebSocket say them) and their table 12
#: payload types.
CODECS: dict[str, int] = {
    "g711a": AvCodec.G711A,
    "g711u": AvCodec.G711U,
    "g726": AvCodec.G726,
    "adpcm": AvCodec.ADPCMA,
}
_FFMPEG = {"g711a": "pcm_alaw", "g711u": "pcm_mulaw", "g726": "g726le", "adpcm": "adpcm_ima_wav"}
#: adpcm_ima_wav takes blocks of a power of two of bytes, 4 of them its state.
_IMA_STATE = 4
_IMA_BLOCKS = tuple(1 << n for n in range(5, 14))  # 32 ... 8192
_SWAP_NIBBLES = bytes(((b << 4) | (b >> 4)) & 0xFF for b in range(256))
#: The longest payload a HiSilicon header can announce (LL is one byte of 16-bit words).
_HISILICON_MAX = 255 * 2


class TalkError(ValueError):
    """An encoder that cannot be made, or input it does not take, in words."""


def codec_of(payload_type: int) -> str | None:
    """The codec name of a table 12 audio coding type we can encode to, else None."""
    for name, code in CODECS.items():
        if code == payload_type:
            return name
    return None


def frame_bytes(codec: str, frame_samples: int, g726_bits: int = DEFAULT_G726_BITS) -> int:
    """The bytes of one frame of ``frame_samples`` samples, without a HiSilicon header."""
    if codec == "g726":
        return frame_samples * g726_bits // 8
    if codec == "adpcm":
        return _IMA_STATE + frame_samples // 2
    return frame_samples


class TalkEncoder:
    """One talk-back's PCM to the unit's frames (see the module docstring)."""

    def __init__(
        self,
        codec: str,
        frame_samples: int = DEFAULT_FRAME_SAMPLES,
        *,
        g726_bits: int = DEFAULT_G726_BITS,
        hisilicon: bool = False,
    ) -> None:
        if codec not in CODECS:
            raise TalkError(f"talk-back encodes {', '.join(CODECS)}, not {codec[:20]!r}")
        if not 1 <= frame_samples <= MAX_FRAME_SAMPLES:
            raise TalkError(f"an audio frame of {frame_samples} samples is not 1-{MAX_FRAME_SAMPLES}")
        if codec == "g726":
            if g726_bits not in G726_RATES:
                raise TalkError(f"G.726 takes 2-5 bits a sample, not {g726_bits}")
            if frame_samples * g726_bits % 8:
                raise TalkError(f"{frame_samples} samples of {g726_bits}-bit G.726 are not a"
                                " whole number of bytes")  # fmt: skip
        if codec == "adpcm" and frame_samples % 2:
            raise TalkError(f"an IMA-ADPCM frame holds an even number of samples, not {frame_samples}")
        size = frame_bytes(codec, frame_samples, g726_bits)
        if hisilicon and (size % 2 or size > _HISILICON_MAX):
            raise TalkError(f"a HiSilicon header cannot announce a frame of {size} bytes (an even"
                            f" number up to {_HISILICON_MAX})")  # fmt: skip
        self.codec = codec
        self.payload_type = int(CODECS[codec])
        self.frame_samples = frame_samples
        self.g726_bits = g726_bits
        self.hisilicon = hisilicon
        #: Bytes of a frame (without the HiSilicon header).
        self.frame_size = size
        self._pcm = bytearray()  # samples not yet in a frame (s16le)
        self._odd = b""  # half a sample
        self._coded = bytearray()  # G.726: codes not yet in a frame
        self._fed = 0  # G.726: samples given to FFmpeg
        self._out = 0  # G.726: samples out in frames
        self._last = 0  # IMA: the previous frame's last sample
        self._primed = False
        self._closed = False
        self._encoder = self._open()

    @classmethod
    def for_payload_type(cls, payload_type: int, frame_samples: int = DEFAULT_FRAME_SAMPLES,
                         **options: int | bool) -> TalkEncoder:  # fmt: skip
        """The encoder for a table 12 audio coding type (6, 7, 8, 26); TalkError for others."""
        codec = codec_of(payload_type)
        if codec is None:
            raise TalkError(f"talk-back cannot encode audio coding type {payload_type}")
        return cls(codec, frame_samples, **options)  # type: ignore[arg-type]

    @property
    def frame_ms(self) -> float:
        return self.frame_samples * 1000 / RATE

    @property
    def buffered(self) -> int:
        """Samples fed but not yet out in a frame."""
        return len(self._pcm) // 2 + (self._fed - self._out)

    def _open(self) -> av.AudioCodecContext:
        ctx = av.CodecContext.create(_FFMPEG[self.codec], "w")
        ctx.sample_rate = RATE
        ctx.layout = "mono"
        ctx.format = ctx.codec.audio_formats[0].name
        ctx.time_base = Fraction(1, RATE)
        if self.codec == "g726":
            ctx.bit_rate = self.g726_bits * RATE
        if self.codec == "adpcm":
            block = next(b for b in _IMA_BLOCKS if 2 * (b - _IMA_STATE) >= self.frame_samples)
            ctx.options = {"block_size": str(block)}
        try:
            ctx.open()
        except (av.error.FFmpegError, ValueError) as e:
            raise TalkError(f"FFmpeg's {_FFMPEG[self.codec]} encoder does not open: {e}") from None
        return ctx

    # -- in -----------------------------------------------------------------------------------

    def feed(self, pcm: bytes) -> list[bytes]:
        """The unit's frames that are whole once ``pcm`` is in (often none)."""
        if self._closed:
            raise TalkError("talk-back audio after the end of the stream")
        if len(pcm) > MAX_FEED:
            raise TalkError(f"{len(pcm)} bytes of PCM at once; at most {MAX_FEED}")
        data = self._odd + pcm
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        self._pcm += data[:whole]
        return self._frames()

    def flush(self) -> list[bytes]:
        """The end of the talk: what is held, padded with silence to whole frames."""
        if self._closed:
            return []
        self._closed = True
        self._odd = b""
        held = len(self._pcm) // 2
        if held % self.frame_samples:
            self._pcm += bytes(2 * (self.frame_samples - held % self.frame_samples))
        out = self._frames()
        if self.codec == "g726":
            out += self._g726(None)
        return out

    def _frames(self) -> list[bytes]:
        n = self.frame_samples
        if self.codec == "g726":
            # FFmpeg keeps the samples until it has a block of its own.
            samples, self._pcm = bytes(self._pcm), bytearray()
            return self._g726(samples) if samples else []
        out = []
        while len(self._pcm) >= 2 * n:
            block = bytes(self._pcm[: 2 * n])
            del self._pcm[: 2 * n]
            if self.codec == "adpcm":
                out.append(self._header(self._ima(block)))
            else:
                out.append(self._header(self._encode(block)))
        return out

    def _header(self, payload: bytes) -> bytes:
        if not self.hisilicon:
            return payload
        return bytes((0, 1, len(payload) // 2, 0)) + payload

    # -- FFmpeg -------------------------------------------------------------------------------

    def _encode(self, pcm: bytes | None) -> bytes:
        """``pcm`` (s16le) through FFmpeg's encoder; None flushes it."""
        frame = None
        if pcm is not None:
            samples = len(pcm) // 2
            planar = self._encoder.format.is_planar
            frame = av.AudioFrame(format="s16p" if planar else "s16", layout="mono", samples=samples)
            frame.planes[0].update(pcm)
            frame.sample_rate = RATE
        return b"".join(bytes(p) for p in self._encoder.encode(frame))

    def _g726(self, pcm: bytes | None) -> list[bytes]:
        if pcm is not None:
            self._fed += len(pcm) // 2
        self._coded += self._encode(pcm)
        out = []
        size = self.frame_size
        while len(self._coded) >= size:
            out.append(self._header(bytes(self._coded[:size])))
            del self._coded[:size]
            self._out += self.frame_samples
        if pcm is None:
            self._coded.clear()  # FFmpeg's padding of its last block
        return out

    def _ima(self, block: bytes) -> bytes:
        """One DVI4 block of ``block``'s samples, re-packed from an adpcm_ima_wav block."""
        n = self.frame_samples
        codes = self._encoder.frame_size - 1  # the block's first sample is its state
        backwards = struct.pack(f"<{n}h", *reversed(struct.unpack(f"<{n}h", block)))
        fill = (backwards * (codes // n + 1))[: 2 * (codes - n)]
        if not self._primed:
            # A first block from the smallest step would start the talk muffled.
            self._primed = True
            self._encode(backwards[:2] + backwards + fill)
        wav = self._encode(struct.pack("<h", self._last) + block + fill)
        self._last = struct.unpack_from("<h", block, 2 * n - 2)[0]
        if len(wav) != _IMA_STATE + codes // 2:
            raise TalkError(f"FFmpeg's adpcm_ima_wav gave {len(wav)} bytes for a block of"
                            f" {codes + 1} samples")  # fmt: skip
        return wav[:_IMA_STATE] + wav[_IMA_STATE : _IMA_STATE + n // 2].translate(_SWAP_NIBBLES)
