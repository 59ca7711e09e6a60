"""Real media for the stream tests: an H.264 clip encoded by FFmpeg (PyAV's libx264), cut
into JT/T 1078 packets as a DVR does, and FLV decoded back by FFmpeg."""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction
from functools import cache

import attrs
import av
from attrs import frozen

from cmsv6.protocols.jt1078.packet import DataType, Packet, build_packet, split_frame

FPS = 25
STEP = 1000 // FPS  # ms between frames
SIM = "013800138999"


@frozen
class AccessUnit:
    data: bytes  # Annex B
    index: int  # frame number in the clip
    keyframe: bool


@cache
def clip(frames: int = 75, gop: int = 25, width: int = 160, height: int = 120) -> tuple[AccessUnit, ...]:
    """``frames`` pictures of moving gradients, H.264 without B-frames (as DVRs encode),
    an IDR every ``gop`` frames."""
    assert "libx264" in av.codecs_available
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.framerate = FPS
    ctx.options = {
        "bframes": "0",
        "g": str(gop),
        "keyint_min": str(gop),
        "sc_threshold": "0",
        "preset": "ultrafast",
        "tune": "zerolatency",
    }
    out: list[AccessUnit] = []
    for i in range(frames + 1):
        if i == frames:
            packets = ctx.encode(None)
        else:
            frame = av.VideoFrame(width, height, "yuv420p")
            for n, plane in enumerate(frame.planes):
                rows = height if n == 0 else height // 2
                row = bytes((x * (n + 1) + 5 * i) & 0xFF for x in range(plane.line_size))
                plane.update(b"".join(row[y % 7 :] + row[: y % 7] for y in range(rows)))
            frame.pts = i
            packets = ctx.encode(frame)
        out += [AccessUnit(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in packets]
    return tuple(out)


def dvr_packets(
    units: Iterable[AccessUnit],
    start: int = 1_700_000_000_000,
    sim: str = SIM,
    channel: int = 1,
    clock: dict[int, int] | None = None,
    max_body: int = 950,
    payload_type: int = 98,
) -> list[Packet]:
    """The packets a DVR sends for these access units: ≤``max_body``-byte pieces, one
    sequence counter, the unit's clock in ms (``clock`` maps a frame number to its own
    timestamp, for jumps)."""
    out: list[Packet] = []
    seq = 0
    for au in units:
        ts = (clock or {}).get(au.index, start + au.index * STEP)
        template = Packet(
            sim=sim,
            channel=channel,
            data_type=DataType.I_FRAME if au.keyframe else DataType.P_FRAME,
            timestamp=ts,
            last_i_frame_interval=0,
            last_frame_interval=STEP,
            sequence=seq,
            payload_type=payload_type,
        )
        pieces = split_frame(template, au.data, max_body)
        seq = (seq + len(pieces)) & 0xFFFF
        out += pieces
    return out


def wire(packets: Iterable[Packet]) -> bytes:
    return b"".join(build_packet(p) for p in packets)


def renumber(packets: list[Packet]) -> list[Packet]:
    """Consecutive sequence numbers again (as if the unit never sent the missing ones)."""
    return [attrs.evolve(p, sequence=i & 0xFFFF) for i, p in enumerate(packets)]


@frozen
class Decoded:
    """What FFmpeg made of an FLV stream."""

    pts: tuple[int, ...]  # ms, each decoded video picture
    keyframes: tuple[int, ...]  # ms, the pictures FFmpeg saw as keyframes
    packet_pts: tuple[int, ...]  # ms, every video packet demuxed (pictures and config)
    sizes: tuple[tuple[int, int], ...]  # (width, height) of each picture
    pictures: tuple[bytes, ...]  # each picture's pixels (its planes, joined)
    corrupt: int  # pictures FFmpeg flagged corrupt
    audio_samples: int
    audio_codec: str | None
    errors: int  # decode errors FFmpeg raised


def decode_flv(data: bytes) -> Decoded:
    container = av.open(io.BytesIO(data), format="flv")
    pts: list[int] = []
    keys: list[int] = []
    packet_pts: list[int] = []
    sizes: list[tuple[int, int]] = []
    pictures: list[bytes] = []
    corrupt = 0
    samples = 0
    errors = 0
    audio_codec = container.streams.audio[0].codec_context.name if container.streams.audio else None
    for packet in container.demux():
        if packet.size == 0:
            continue
        if packet.stream.type == "video":
            packet_pts.append(int(packet.pts))
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            errors += 1
            continue
        for f in frames:
            if packet.stream.type == "video":
                pts.append(int(f.pts))
                sizes.append((f.width, f.height))
                pictures.append(_pixels(f))
                corrupt += bool(f.is_corrupt)
                if f.key_frame:
                    keys.append(int(f.pts))
            else:
                samples += f.samples
    container.close()
    return Decoded(
        tuple(pts),
        tuple(keys),
        tuple(packet_pts),
        tuple(sizes),
        tuple(pictures),
        corrupt,
        samples,
        audio_codec,
        errors,
    )


def _pixels(frame: av.VideoFrame) -> bytes:
    return b"".join(bytes(p) for p in frame.planes)


@cache
def reference_pictures(units: tuple[AccessUnit, ...]) -> tuple[bytes, ...]:
    """The clip's pictures as FFmpeg decodes its Annex B directly, in order."""
    ctx = av.CodecContext.create("h264", "r")
    out = []
    for au in units:
        out += [_pixels(f) for f in ctx.decode(av.Packet(au.data))]
    out += [_pixels(f) for f in ctx.decode(None)]
    return tuple(out)


@cache
def hevc_clip(frames: int = 75, gop: int = 25, width: int = 160, height: int = 128,
              pix_fmt: str = "yuv420p") -> tuple[AccessUnit, ...]:  # fmt: skip
    """The same kind of pictures in H.265 as cameras send it (libx265): no B-frames, a
    closed GOP of ``gop``, VPS/SPS/PPS in front of every IRAP picture."""
    assert "libx265" in av.codecs_available
    ctx = av.CodecContext.create("libx265", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base = Fraction(1, FPS)
    ctx.framerate = FPS
    ctx.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x265-params": f"bframes=0:keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0"
        ":repeat-headers=1:info=0:log-level=error",
    }
    out: list[AccessUnit] = []
    for i in range(frames + 1):
        if i == frames:
            packets = ctx.encode(None)
        else:
            frame = av.VideoFrame(width, height, pix_fmt)
            for n, plane in enumerate(frame.planes):
                plane.update(bytes((x * (n + 3) + 5 * i) & 0xFF for x in range(plane.buffer_size)))
            frame.pts = i
            packets = ctx.encode(frame)
        out += [AccessUnit(bytes(p), int(p.pts), bool(p.is_keyframe)) for p in packets]
    return tuple(out)


@cache
def reference_hevc(units: tuple[AccessUnit, ...]) -> tuple[bytes, ...]:
    """The H.265 clip's pictures as FFmpeg decodes its Annex B directly, in order."""
    ctx = av.CodecContext.create("hevc", "r")
    out = []
    for au in units:
        out += [_pixels(f) for f in ctx.decode(av.Packet(au.data))]
    out += [_pixels(f) for f in ctx.decode(None)]
    return tuple(out)


def ffmpeg_hvcc(units: Iterable[AccessUnit]) -> bytes:
    """The hvcC box FFmpeg's MP4 muxer writes (tag hvc1) for this Annex B stream, as the
    raw H.265 demuxer gives it: FFmpeg's own reading of the parameter sets."""
    source = av.open(io.BytesIO(b"".join(au.data for au in units)), format="hevc")
    out = io.BytesIO()
    mp4 = av.open(out, "w", format="mp4")
    stream = mp4.add_stream_from_template(source.streams.video[0])
    stream.codec_tag = "hvc1"
    stream.time_base = Fraction(1, FPS)
    n = 0
    for packet in source.demux():
        if packet.size == 0:
            continue
        packet.pts = packet.dts = n
        packet.time_base = Fraction(1, FPS)
        packet.stream = stream
        mp4.mux(packet)
        n += 1
    mp4.close()
    source.close()
    data = out.getvalue()
    at = data.find(b"hvcC")
    assert at > 4, "FFmpeg wrote no hvcC box"
    size = int.from_bytes(data[at - 4 : at], "big")
    return data[at + 4 : at - 4 + size]
