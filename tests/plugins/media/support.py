"""What the media server tests share: the test clip as a DVR sends it (frames, packets,
bytes), viewers that collect what they are sent, viewing tokens, and FFmpeg's reading of
the FLV that comes out."""

from __future__ import annotations

import io
import struct
import time
from typing import Any, Iterable

import attrs
import av
from attrs import frozen

from cmsv6.config import MediaConfig
from cmsv6.media.clip import Clip, load_clip
from cmsv6.media.viewing import View, sign_view, view_key
from cmsv6.plugins.media.fanout import Viewer, ViewerError
from cmsv6.protocols.jt1078.frames import Frame
from cmsv6.protocols.jt1078.packet import DataType, Packet, build_packet, split_frame
from cmsv6.rpc.keys import derive

PHONE = "13800138999"
SIM = "013800138999"
#: The unit's clock at the clip's start (ms).
START = 1_700_000_000_000
MASTER = b"m" * 32
MEDIA_ID = "media-test"
SERVER_KEY = derive(MASTER, MEDIA_ID)
#: Frames of the test clip a second, and frames a GOP.
FPS = 25
GOP = 25


def clip(seconds: int = 4) -> Clip:
    """The simulator's clip (CIF, 1 s GOPs, a 1 kHz tone in G.711A), ``seconds`` long."""
    return load_clip(seconds=seconds, gop=GOP)


def config(**changes: Any) -> MediaConfig:
    return attrs.evolve(MediaConfig(id=MEDIA_ID), **changes)


def token(phone: str = PHONE, channel: int = 1, stream: str = "main", *, expires: float | None = None,
          media: str = MEDIA_ID, key: bytes = SERVER_KEY) -> str:  # fmt: skip
    """A viewing token as login signs it."""
    when = int(time.time() + 120) if expires is None else int(expires)
    return sign_view(view_key(key), View(media, phone, channel, stream, when))


def frames(c: Clip, loops: int = 1, channel: int = 1, video_type: int = 98,
           audio: bool = True) -> list[Frame]:  # fmt: skip
    """The clip's frames in the order a DVR sends them (by time, video first), on the unit's
    clock, ``loops`` times over."""
    out: list[tuple[int, int, Frame]] = []
    for loop in range(loops):
        base = START + loop * c.duration
        kinds = [(c.video, video_type)] + ([(c.audio, int(c.audio_payload_type))] if audio else [])
        for order, (source, pt) in enumerate(kinds):
            for f in source:
                ts = base + f.timestamp
                out.append((ts, order, Frame(channel, int(f.data_type), ts, f.payload, pt)))
    out.sort(key=lambda x: (x[0], x[1]))
    return [f for _, _, f in out]


def packets(stream: Iterable[Frame], sim: str = SIM) -> list[Packet]:
    """The packets a DVR cuts ``stream`` into: ≤950-byte pieces, one sequence counter."""
    out: list[Packet] = []
    seq = 0
    for f in stream:
        video = f.data_type <= DataType.B_FRAME
        template = Packet(
            sim=sim, channel=f.channel, data_type=f.data_type, timestamp=f.timestamp,
            last_i_frame_interval=0 if video else None,
            last_frame_interval=1000 // FPS if video else None,
            payload_type=f.payload_type, sequence=seq,
        )  # fmt: skip
        pieces = split_frame(template, f.payload)
        seq = (seq + len(pieces)) & 0xFFFF
        out += pieces
    return out


def wire(stream: Iterable[Packet]) -> bytes:
    return b"".join(build_packet(p) for p in stream)


class Collector(Viewer):
    """A viewer whose connection is a list: ``data`` is what it was sent; ``paused`` is
    set by the test as a full connection's transport would."""

    def __init__(self, limit: int = 1 << 30) -> None:
        super().__init__(limit, "test")
        self.chunks: list[bytes] = []
        self.error: ViewerError | None = None
        self.closed = False

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def close(self, error: ViewerError | None) -> None:
        self.closed = True
        self.error = error


@frozen
class Played:
    """What FFmpeg made of an FLV byte stream."""

    video_pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    corrupt: int
    errors: int
    audio: tuple[float, ...]
    audio_codec: str | None
    audio_pts: tuple[int, ...]


def play(data: bytes) -> Played:
    """Decode ``data`` (an FLV stream) with FFmpeg: every picture's time and whether it was
    a keyframe, decode errors, and the audio samples."""
    container = av.open(io.BytesIO(data), format="flv")
    pts: list[int] = []
    keys: list[int] = []
    audio: list[float] = []
    audio_pts: list[int] = []
    corrupt = errors = 0
    codec = container.streams.audio[0].codec_context.name if container.streams.audio else None
    for packet in container.demux():
        if packet.size == 0:
            continue
        try:
            decoded = packet.decode()
        except av.error.FFmpegError:
            errors += 1
            continue
        for f in decoded:
            if packet.stream.type == "video":
                pts.append(int(f.pts))
                corrupt += bool(f.is_corrupt)
                if f.key_frame:
                    keys.append(int(f.pts))
            else:
                audio_pts.append(int(f.pts))
                plane = bytes(f.planes[0])
                audio += struct.unpack(f"<{f.samples}f", plane[: 4 * f.samples])
    container.close()
    return Played(tuple(pts), tuple(keys), corrupt, errors, tuple(audio), codec, tuple(audio_pts))


def video_times(stream: Iterable[Frame]) -> list[int]:
    """The FLV times (ms from the first) of the video frames of ``stream``."""
    ts = [f.timestamp for f in stream if f.data_type <= DataType.B_FRAME]
    return [t - ts[0] for t in ts]  # type: ignore[operator]
