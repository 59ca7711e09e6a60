"""The clip simulated cameras stream: encoded once, looped by every camera of a fleet.

A picture that moves (a scrolling diagonal gradient) with a clock burnt in (seconds and
frame of the clip, ``SS.FF``, big enough to read in a CIF sub-stream), in H.264 as DVRs
encode it: libx264 baseline (no B-frames), an IDR picture every ``gop`` frames with its
SPS/PPS in front, at ``fps``; and a tone (1 kHz) in G.711A, 40 ms (320 bytes) a frame.
With ``codec="h265"`` the same pictures are H.265 as H.265 cameras send them: libx265,
no B-frames, a closed GOP of ``gop`` frames, VPS/SPS/PPS in front of every IRAP picture.
Both come as ``ClipFrame`` values — (timestamp in ms from the clip's start, JT/T 1078 data
type, payload) — ready to be cut into packets.

Pictures are built from bytes (no numpy: it is not a dependency of ours). Encoding 10 s of
CIF takes well under a second; ``load_clip`` keeps each clip in memory once made and, given
a ``cache_dir``, on disk for the next process (written whole or not at all, and encoded
again when the file is not a clip this code wrote).
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
from attrs import frozen

from cmsv6.protocols.jt808.messages.jt1078 import AvCodec
from cmsv6.protocols.jt1078.packet import DataType

#: Sizes DVRs stream: the CIF sub-stream and the D1 main stream.
CIF = (352, 288)
D1 = (704, 576)
FPS = 25
GOP = 2 * FPS
SECONDS = 10
TONE = 1000  # Hz
AUDIO_RATE = 8000
AUDIO_FRAME = 320  # samples (and G.711 bytes): 40 ms
BIT_RATE = 400_000  # per CIF picture area; D1 gets four times as much

_MAGIC = b"cmsv6 clip 1\n"
_RECORD = struct.Struct(">IBI")  # timestamp (ms), data type, payload length
_KINDS = frozenset((DataType.I_FRAME, DataType.P_FRAME, DataType.AUDIO))
_MEMO: dict[tuple[object, ...], Clip] = {}
#: The video codecs a clip comes in, and their JT/T 1078 payload types.
CODECS = {"h264": AvCodec.H264, "h265": AvCodec.H265}

# A 3x5 font: each glyph five rows of three bits, the high bit leftmost.
_FONT = {
    "0": (7, 5, 5, 5, 7),
    "1": (2, 6, 2, 2, 7),
    "2": (7, 1, 7, 4, 7),
    "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7),
    "6": (7, 4, 7, 5, 7),
    "7": (7, 1, 2, 2, 2),
    "8": (7, 5, 7, 5, 7),
    "9": (7, 5, 7, 1, 7),
    ".": (0, 0, 0, 0, 2),
}
_ON, _OFF = 235, 16  # video-range white and black


class ClipFrame(NamedTuple):
    timestamp: int  # ms from the clip's start
    data_type: int  # DataType: I_FRAME, P_FRAME or AUDIO
    payload: bytes  # Annex B access unit, or G.711A bytes


@frozen
class Clip:
    """``video`` and ``audio`` frames of one loop of ``duration`` ms."""

    width: int
    height: int
    fps: int
    duration: int
    video: tuple[ClipFrame, ...]
    audio: tuple[ClipFrame, ...]
    video_payload_type: int = AvCodec.H264
    audio_payload_type: int = AvCodec.G711A


def clock_text(timestamp: int, fps: int = FPS) -> str:
    """The clock a picture shows: seconds and frame of the clip (``07.24``)."""
    seconds, ms = divmod(timestamp, 1000)
    return f"{seconds % 100:02d}.{ms * fps // 1000:02d}"


def clock_mask(text: str, scale: int) -> list[bytes]:
    """The clock's pixels: one row of 0/1 bytes per pixel row, a pixel of margin a font
    dot all round, glyphs a dot apart."""
    dots = [[0] * (4 * len(text) + 1) for _ in range(7)]
    for n, ch in enumerate(text):
        for r, bits in enumerate(_FONT[ch]):
            for c in range(3):
                dots[r + 1][1 + 4 * n + c] = (bits >> (2 - c)) & 1
    return [
        bytes(d for d in row for _ in range(scale))
        for row in dots
        for _ in range(scale)
    ]


def clock_box(width: int, height: int) -> tuple[int, int, int]:
    """Where the clock is drawn: (x, y, scale)."""
    scale = max(2, width // 88)  # 4 dots in CIF, 8 in D1
    return scale * 2, scale * 2, scale


def load_clip(
    width: int = CIF[0],
    height: int = CIF[1],
    seconds: int = SECONDS,
    fps: int = FPS,
    gop: int = GOP,
    tone: int = TONE,
    cache_dir: str | os.PathLike[str] | None = None,
    codec: str = "h264",
) -> Clip:
    """The clip, encoded once per process (and once per ``cache_dir``), in ``codec``
    ("h264" or "h265")."""
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r} is not one of {', '.join(CODECS)}")
    key = (width, height, seconds, fps, gop, tone, codec)
    clip = _MEMO.get(key)
    if clip is not None:
        return clip
    path = None
    if cache_dir is not None:
        suffix = "" if codec == "h264" else f"-{codec}"
        path = (
            Path(cache_dir)
            / f"clip-{width}x{height}-{seconds}s-{fps}fps-{gop}gop-{tone}hz{suffix}.bin"
        )
        clip = _read(path, width, height, fps, seconds * 1000, CODECS[codec])
    if clip is None:
        clip = encode_clip(width, height, seconds, fps, gop, tone, codec)
        if path is not None:
            _write(path, clip)
    _MEMO[key] = clip
    return clip


def encode_clip(
    width: int = CIF[0],
    height: int = CIF[1],
    seconds: int = SECONDS,
    fps: int = FPS,
    gop: int = GOP,
    tone: int = TONE,
    codec: str = "h264",
) -> Clip:
    """Encode the clip (what ``load_clip`` does once)."""
    if width % 16 or height % 16:
        raise ValueError(f"{width}x{height} is not whole macroblocks (16x16)")
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r} is not one of {', '.join(CODECS)}")
    video = tuple(_video(width, height, seconds * fps, fps, gop, codec))
    audio = tuple(_audio(seconds, tone))
    return Clip(width, height, fps, seconds * 1000, video, audio, CODECS[codec])


# -- pictures -------------------------------------------------------------------------------


def _video(width: int, height: int, frames: int, fps: int, gop: int, codec: str = "h264") -> list[ClipFrame]:
    ctx = av.CodecContext.create("libx265" if codec == "h265" else "libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = fps
    ctx.bit_rate = BIT_RATE * (width * height) // (CIF[0] * CIF[1])
    if codec == "h265":
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            # IRAP pictures every gop frames and only then, no GOP reaching into the
            # next one, the parameter sets in front of each, no banner SEI, quiet
            "x265-params": f"bframes=0:keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0"
            ":repeat-headers=1:info=0:log-level=error",
        }
    else:
        ctx.options = {
            "profile": "baseline",
            "bframes": "0",
            "g": str(gop),
            "sc_threshold": "0",  # no IDR pictures but every gop frames
            "preset": "ultrafast",
            "tune": "zerolatency",
        }
    x, y, scale = clock_box(width, height)
    out: list[ClipFrame] = []
    for i in range(frames + 1):
        if i == frames:
            packets = ctx.encode(None)
        else:
            frame = av.VideoFrame(width, height, "yuv420p")
            ms = i * 1000 // fps
            _draw(frame, i, clock_mask(clock_text(ms, fps), scale), x, y)
            frame.pts = i
            packets = ctx.encode(frame)
        for p in packets:
            ms = int(p.pts) * 1000 // fps
            kind = DataType.I_FRAME if p.is_keyframe else DataType.P_FRAME
            out.append(ClipFrame(ms, kind, bytes(p)))
    return out


def _draw(frame: av.VideoFrame, i: int, mask: list[bytes], x: int, y: int) -> None:
    """A diagonal gradient scrolling 4 levels a frame, in colour, and the clock over it."""
    for n, plane in enumerate(frame.planes):
        stride, rows = plane.line_size, plane.buffer_size // plane.line_size
        speed = 4 if n == 0 else 1
        base = bytes((v * (n + 1)) & 0xFF for v in range(stride + rows + 256))
        shift = (speed * i) & 0xFF
        if n == 0:
            picture = bytearray()
            for r in range(rows):
                picture += base[r + shift : r + shift + stride]
            on, off = bytes((_ON,)), bytes((_OFF,))
            for r, row in enumerate(mask):
                at = (y + r) * stride + x
                lit = row.replace(b"\x00", off).replace(b"\x01", on)
                picture[at : at + len(row)] = lit
            plane.update(bytes(picture))
        else:
            plane.update(
                b"".join(base[r + shift : r + shift + stride] for r in range(rows))
            )


# -- sound ----------------------------------------------------------------------------------


def _audio(seconds: int, tone: int) -> list[ClipFrame]:
    samples = seconds * AUDIO_RATE
    pcm = struct.pack(
        f"<{samples}h",
        *(
            round(8000 * math.sin(2 * math.pi * tone * i / AUDIO_RATE))
            for i in range(samples)
        ),
    )
    enc = av.CodecContext.create("pcm_alaw", "w")
    enc.sample_rate, enc.format, enc.layout = AUDIO_RATE, "s16", "mono"
    enc.time_base = Fraction(1, AUDIO_RATE)
    frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
    frame.planes[0].update(pcm)
    frame.sample_rate, frame.pts = AUDIO_RATE, 0
    alaw = b"".join(bytes(p) for p in enc.encode(frame)) + b"".join(
        bytes(p) for p in enc.encode(None)
    )
    step = AUDIO_FRAME * 1000 // AUDIO_RATE
    return [
        ClipFrame(n * step, DataType.AUDIO, alaw[at : at + AUDIO_FRAME])
        for n, at in enumerate(range(0, samples, AUDIO_FRAME))
    ]


# -- the disk cache -------------------------------------------------------------------------


def _write(path: Path, clip: Clip) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC)
            for frame in clip.video + clip.audio:
                f.write(
                    _RECORD.pack(frame.timestamp, frame.data_type, len(frame.payload))
                )
                f.write(frame.payload)
        os.replace(tmp, path)  # whole or not at all, even with several writers
    except BaseException:
        os.unlink(tmp)
        raise


def _read(
    path: Path, width: int, height: int, fps: int, duration: int, payload_type: int = AvCodec.H264
) -> Clip | None:
    """The cached clip, or None when there is none or the file is not one we wrote."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if not data.startswith(_MAGIC):
        return None
    at = len(_MAGIC)
    video: list[ClipFrame] = []
    audio: list[ClipFrame] = []
    while at < len(data):
        if at + _RECORD.size > len(data):
            return None
        ms, kind, size = _RECORD.unpack_from(data, at)
        at += _RECORD.size
        if at + size > len(data) or kind not in _KINDS:
            return None
        frame = ClipFrame(ms, DataType(kind), data[at : at + size])
        (audio if kind == DataType.AUDIO else video).append(frame)
        at += size
    if not video or not audio or video[0].data_type != DataType.I_FRAME:
        return None
    return Clip(width, height, fps, duration, tuple(video), tuple(audio), payload_type)
