"""Known audio for the transcoder tests: a tone encoded in each codec units send (FFmpeg's
encoders where it has one, the IMA-ADPCM algorithm in DVI4 blocks as HiSilicon units cut
them), and AAC decoded back by FFmpeg with the tone's frequency measured."""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterable
from fractions import Fraction

import av

RATE = 8000
TONE = 1000  # Hz


def tone(
    samples: int, freq: int = TONE, rate: int = RATE, amplitude: int = 8000
) -> list[int]:
    return [
        round(amplitude * math.sin(2 * math.pi * freq * i / rate))
        for i in range(samples)
    ]


def pcm16(samples: list[int]) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def ffmpeg_encode(codec: str, samples: list[int], **options: str) -> bytes:
    """``samples`` (16-bit, 8 kHz mono) through FFmpeg's ``codec`` encoder, as one stream."""
    enc = av.CodecContext.create(codec, "w")
    enc.sample_rate, enc.layout = RATE, "mono"
    enc.format = enc.codec.audio_formats[0].name
    enc.time_base = Fraction(1, RATE)
    if "code_size" in options:
        enc.bit_rate = int(options["code_size"]) * RATE
    enc.options = options
    enc.open()
    size = enc.frame_size or 320
    out = b""
    for at in range(0, len(samples), size):
        chunk = samples[at : at + size]
        chunk += [0] * (size - len(chunk)) if enc.frame_size else []
        frame = av.AudioFrame(format=enc.format.name, layout="mono", samples=len(chunk))
        frame.planes[0].update(pcm16(chunk))
        frame.sample_rate, frame.pts = RATE, at
        out += b"".join(bytes(p) for p in enc.encode(frame))
    return out + b"".join(bytes(p) for p in enc.encode(None))


def ffmpeg_blocks(codec: str, samples: list[int], **options: str) -> list[bytes]:
    """FFmpeg's encoder packets one by one (ADPCM blocks)."""
    enc = av.CodecContext.create(codec, "w")
    enc.sample_rate, enc.layout, enc.format = RATE, "mono", "s16p"
    enc.time_base = Fraction(1, RATE)
    enc.options = options
    enc.open()
    out = []
    for at in range(0, len(samples) - enc.frame_size + 1, enc.frame_size):
        frame = av.AudioFrame(format="s16p", layout="mono", samples=enc.frame_size)
        frame.planes[0].update(pcm16(samples[at : at + enc.frame_size]))
        frame.sample_rate, frame.pts = RATE, at
        out += [bytes(p) for p in enc.encode(frame)]
    return out


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def hisilicon(payload: bytes) -> bytes:
    """The payload behind a HiSilicon header (``00 01 LL 00``, LL in 16-bit words)."""
    assert len(payload) % 2 == 0 and len(payload) // 2 < 256
    return bytes((0, 1, len(payload) // 2, 0)) + payload


# -- IMA-ADPCM as HiSilicon units send it (DVI4 blocks) -------------------------------------

_INDEX = (-1, -1, -1, -1, 2, 4, 6, 8) * 2
_STEPS = (
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 21, 23, 25, 28, 31, 34, 37, 41, 45, 50, 55, 60,
    66, 73, 80, 88, 97, 107, 118, 130, 143, 157, 173, 190, 209, 230, 253, 279, 307, 337, 371,
    408, 449, 494, 544, 598, 658, 724, 796, 876, 963, 1060, 1166, 1282, 1411, 1552, 1707, 1878,
    2066, 2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358, 5894, 6484, 7132, 7845,
    8630, 9493, 10442, 11487, 12635, 13899, 15289, 16818, 18500, 20350, 22385, 24623, 27086,
    29794, 32767,
)  # fmt: skip


def dvi4_blocks(samples: list[int], per_block: int = 320) -> list[bytes]:
    """IMA-ADPCM blocks: the encoder's state (predictor, step index, 0) before the block,
    then ``per_block`` codes, two a byte, the first in the high nibble."""
    predictor, index = 0, 0
    out = []
    for at in range(0, len(samples) - per_block + 1, per_block):
        block = bytearray(struct.pack("<hBB", predictor, index, 0))
        codes = []
        for s in samples[at : at + per_block]:
            step = _STEPS[index]
            diff = s - predictor
            code = 8 if diff < 0 else 0
            diff = abs(diff)
            delta = step >> 3
            for bit, part in ((4, step), (2, step >> 1), (1, step >> 2)):
                if diff >= part:
                    code |= bit
                    diff -= part
                    delta += part
            predictor = max(
                -32768, min(32767, predictor - delta if code & 8 else predictor + delta)
            )
            index = max(0, min(88, index + _INDEX[code]))
            codes.append(code)
        block += bytes((a << 4) | b for a, b in zip(codes[0::2], codes[1::2]))
        out.append(bytes(block))
    return out


def dvi4_decode(block: bytes) -> list[int]:
    """The samples of one DVI4 block (the reference the transcoder is checked against)."""
    predictor, index = struct.unpack_from("<hB", block)
    out = []
    for byte in block[4:]:
        for code in (byte >> 4, byte & 15):
            step = _STEPS[index]
            delta = step >> 3
            for bit, part in ((4, step), (2, step >> 1), (1, step >> 2)):
                if code & bit:
                    delta += part
            predictor = max(
                -32768, min(32767, predictor - delta if code & 8 else predictor + delta)
            )
            index = max(0, min(88, index + _INDEX[code]))
            out.append(predictor)
    return out


# -- AAC back -------------------------------------------------------------------------------


def decode_aac(frames: Iterable[tuple[bytes, bytes]]) -> list[float]:
    """The samples FFmpeg decodes from raw AAC frames given as (config, data)."""
    ctx = None
    out: list[float] = []
    for config, data in frames:
        if ctx is None:
            ctx = av.CodecContext.create("aac", "r")
            ctx.extradata = config
        for f in ctx.decode(av.Packet(data)):
            out += struct.unpack(f"<{f.samples}f", bytes(f.planes[0])[: 4 * f.samples])
    return out


def dominant(samples: list[float], rate: int, step: int = 50) -> int:
    """The frequency (Hz, to ``step``) with the most power in ``samples`` (Goertzel)."""
    best, best_power = 0, -1.0
    for freq in range(step, rate // 2, step):
        coeff = 2 * math.cos(2 * math.pi * freq / rate)
        s1 = s2 = 0.0
        for x in samples:
            s1, s2 = x + coeff * s1 - s2, s1
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2
        if power > best_power:
            best, best_power = freq, power
    return best


def correlation(a: list[float], b: list[float]) -> float:
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return cov / math.sqrt(va * vb) if va and vb else 0.0


def roughness(samples: list[float]) -> float:
    """Power of the sample-to-sample steps over the signal's power: small for audio that
    sounds like anything, near or above 1 for noise."""
    power = sum(x * x for x in samples) or 1e-12
    return sum((a - b) ** 2 for a, b in itertools.pairwise(samples)) / power
