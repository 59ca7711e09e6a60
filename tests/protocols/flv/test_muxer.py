"""A real H.264 clip cut into JT/T 1078 packets as a DVR does, reassembled, muxed to FLV,
written to a file and decoded by FFmpeg: what arrives is exactly what was sent, a loss
costs whole frames up to the next keyframe and never a corrupt picture, time never runs
backwards, and audio is announced only when AAC comes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import pytest

from cmsv6.protocols.flv.muxer import (
    H265,
    BadFrame,
    FlvError,
    FlvMuxer,
    FlvTag,
    Timeline,
    UnsupportedCodec,
    split_adts,
)
from cmsv6.protocols.flv.tags import TAG_HEADER, TagType
from cmsv6.protocols.jt1078.frames import DropReason, Frame, FrameDropped
from cmsv6.protocols.jt1078.packet import Packet, Subpackage
from cmsv6.protocols.jt1078.stream import MediaStream
from tests.protocols.flv.media import (
    SIM,
    STEP,
    AccessUnit,
    clip,
    decode_flv,
    dvr_packets,
    reference_pictures,
    renumber,
    wire,
)

START = 1_700_000_000_000


def to_flv(stream: bytes, path: Path, muxer: FlvMuxer | None = None) -> tuple[bytes, MediaStream, FlvMuxer]:
    """A unit's 1078 bytes through MediaStream and FlvMuxer into an FLV file."""
    media = MediaStream(phone=SIM)
    mux = muxer or FlvMuxer()
    out = [mux.header()]
    for event in media.feed(stream) + media.close():
        if isinstance(event, Frame):
            out += [t.data for t in mux.video(event.payload, event.timestamp or 0, event.payload_type)]
    data = b"".join(out)
    path.write_bytes(data)
    return path.read_bytes(), media, mux


def flv_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, timestamp, body) of each tag, read with the construct reference."""
    assert data[:3] == b"FLV"
    at = 13
    out = []
    while at < len(data):
        h = TAG_HEADER.parse(data[at : at + 11])
        body = data[at + 11 : at + 11 + h.size]
        assert int.from_bytes(data[at + 11 + h.size : at + 15 + h.size], "big") == 11 + h.size
        out.append((h.kind.type, h.timestamp | h.timestamp_extended << 24, body))
        at += 15 + h.size
    return out


def expected_after(units: tuple[AccessUnit, ...], absent: set[int]) -> dict[str, Any]:
    ref = reference_pictures(units)
    kept = [au.index for au in units if au.index not in absent]
    # FLV time starts at the first frame the muxer gets
    return {
        "pts": tuple((i - kept[0]) * STEP for i in kept),
        "keyframes": tuple((i - kept[0]) * STEP for i in kept if units[i].keyframe),
        "pictures": tuple(ref[i] for i in kept),
    }


def test_clip_arrives_as_sent(tmp_path: Path) -> None:
    """Every picture, keyframe and timestamp FFmpeg decodes from our FLV is the clip's own."""
    units = clip()
    packets = dvr_packets(units)
    assert max(len(p.payload) for p in packets) == 950
    assert {p.subpackage for p in packets} == set(Subpackage)  # big and small frames
    data, media, mux = to_flv(wire(packets), tmp_path / "clip.flv")
    got = decode_flv(data)
    want = expected_after(units, set())
    assert got.pts == want["pts"] and len(got.pts) == 75
    assert got.keyframes == want["keyframes"] == (0, 1000, 2000)
    assert got.pictures == want["pictures"]
    assert (got.corrupt, got.errors) == (0, 0)
    assert (media.counters.frames, media.counters.lost, media.counters.dropped) == (75, 0, 0)
    assert mux.counters.configs == 1
    # keyframe flags in the tags themselves: exactly the IDR pictures, config first
    video = [(ts, body[0] >> 4, body[1]) for kind, ts, body in flv_tags(data) if kind == TagType.VIDEO]
    assert video[0] == (0, 1, 0)
    assert [ts for ts, frame_type, kind in video if frame_type == 1 and kind == 1] == [0, 1000, 2000]


def _drop(packets: list[Packet], index: int, which: str) -> list[Packet]:
    """``packets`` without one piece of frame ``index`` (the frame's n-th in the clip)."""
    frames: list[list[int]] = []
    for i, p in enumerate(packets):
        if p.subpackage in (Subpackage.ATOMIC, Subpackage.FIRST):
            frames.append([])
        frames[-1].append(i)
    pieces = frames[index]
    at = {"first": pieces[0], "middle": pieces[len(pieces) // 2], "last": pieces[-1]}[which]
    return packets[:at] + packets[at + 1 :]


@pytest.mark.parametrize(
    "index,which,absent",
    [
        (30, "first", set(range(30, 50))),  # a P-frame: it and the rest of its GOP
        (25, "middle", set(range(25, 50))),  # an I-frame: its whole GOP
        (49, "last", {49}),  # the GOP's last picture: nothing else refers to it
        (0, "middle", set(range(25))),  # the very first keyframe
    ],
)
def test_lost_packet_costs_frames_to_the_next_keyframe(
    tmp_path: Path, index: int, which: str, absent: set[int]
) -> None:
    """A missing piece drops its frame and every picture up to the next keyframe; FFmpeg
    decodes the rest, each picture identical to the clip's, none corrupt."""
    units = clip()
    assert len(dvr_packets(units[index : index + 1])) > 1 or which == "first"
    packets = _drop(dvr_packets(units), index, which)
    data, media, _ = to_flv(wire(packets), tmp_path / "lost.flv")
    got = decode_flv(data)
    want = expected_after(units, absent)
    assert got.pts == want["pts"]
    assert got.keyframes == want["keyframes"]
    assert got.pictures == want["pictures"]
    assert (got.corrupt, got.errors) == (0, 0)
    assert media.counters.lost == 1
    assert media.counters.dropped == len(absent) - 1
    assert media.counters.frames == 75 - len(absent)


def test_lost_piece_without_a_sequence_gap_is_still_caught(tmp_path: Path) -> None:
    """A first piece lost where the numbering shows no gap is caught by the marks alone."""
    units = clip()
    packets = renumber(_drop(dvr_packets(units), 30, "first"))
    data, media, _ = to_flv(wire(packets), tmp_path / "marks.flv")
    got = decode_flv(data)
    assert got.pts == expected_after(units, set(range(30, 50)))["pts"]
    assert got.corrupt == 0 and media.counters.sequence_gaps == 0 and media.counters.lost == 1


def test_unit_clock_jumping_and_wrapping_never_runs_backwards(tmp_path: Path) -> None:
    """A unit clock that resets, leaps and wraps 32 bits gives increasing FLV time and
    loses no picture; between jumps the unit's own steps are kept."""
    units = clip()
    clock = {}
    for i in range(75):
        if i < 20:
            clock[i] = START + i * STEP
        elif i < 40:
            clock[i] = (i - 20) * STEP  # the unit's clock reset to 0
        elif i < 60:
            clock[i] = 0xFFFFFFFF - (59 - i) * STEP  # about to wrap 32 bits...
        else:
            clock[i] = (i - 60) * STEP  # ...and wrapped
    data, media, mux = to_flv(wire(dvr_packets(units, clock=clock)), tmp_path / "jump.flv")
    stamps = [ts for kind, ts, body in flv_tags(data) if kind == TagType.VIDEO and body[1] == 1]
    assert len(stamps) == 75
    assert all(b - a == STEP for a, b in zip(stamps, stamps[1:]))
    assert mux.timeline.jumps == 3
    got = decode_flv(data)
    assert list(got.pts) == sorted(set(got.pts)) and len(got.pts) == 75
    assert got.pictures == reference_pictures(units)


def test_timeline_follows_steps_and_reanchors_on_jumps() -> None:
    """Within ``max_gap`` the unit's time is kept; a jump continues one step on; audio and
    video share the offset but each is monotonic."""
    t = Timeline(max_gap=1000)
    assert [t.map("video", c) for c in (5000, 5040, 5080)] == [0, 40, 80]
    assert t.map("audio", 4990) == 0  # audio starting just before video: held at 0
    assert t.map("audio", 5010) == 10
    assert t.map("video", 100) == 120  # backwards: one usual step on
    assert t.map("video", 140) == 160
    assert t.map("audio", 150) == 170  # the new offset applies to audio too
    assert t.map("video", 10**12) == 200  # far forward: one step on
    assert t.jumps == 2


def test_audio_flag_clear_without_aac(tmp_path: Path) -> None:
    """Without AAC the header's audio bit and onMetaData's hasAudio are off."""
    data, _, _ = to_flv(wire(dvr_packets(clip()[:5])), tmp_path / "silent.flv")
    assert data[4] == 0x01  # video only
    container = av.open(io.BytesIO(data), format="flv")
    assert container.metadata["hasAudio"] == "false"
    assert [s.type for s in container.streams] == ["video"]
    with pytest.raises(FlvError):
        FlvMuxer().aac(b"\xff\xf1\x50\x80\x01\x7f\xfc", 0)


def _adts(seconds: int = 1) -> bytes:
    """AAC in ADTS, as a unit would send it, from FFmpeg's encoder."""
    buf = io.BytesIO()
    out = av.open(buf, "w", format="adts")
    stream = out.add_stream("aac", rate=8000)
    stream.layout = "mono"
    for i in range(8 * seconds):
        frame = av.AudioFrame(format="s16", layout="mono", samples=1000)
        frame.sample_rate = 8000
        frame.planes[0].update(bytes((i * 7 + n) & 0xFF for n in range(2000)))
        frame.pts = i * 1000
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()
    return buf.getvalue()


def test_aac_is_announced_and_decodes(tmp_path: Path) -> None:
    """With AAC the header announces audio, and FFmpeg decodes the video and AAC frames."""
    frames = split_adts(_adts())
    assert len(frames) >= 7
    mux = FlvMuxer(audio=True)
    out = [mux.header()]
    units = clip()[:25]
    for au in units:
        out += [t.data for t in mux.video(au.data, START + au.index * STEP)]
        if au.index < len(frames):
            config, raw = frames[au.index]
            adts = _adts_frame(config, raw)
            out += [t.data for t in mux.aac(adts, START + au.index * STEP)]
    data = b"".join(out)
    (tmp_path / "aac.flv").write_bytes(data)
    assert data[4] == 0x05
    got = decode_flv(data)
    assert got.audio_codec == "aac"
    assert got.audio_samples == 1024 * (len(frames) - 1) or got.audio_samples == 1024 * len(frames)
    assert len(got.pts) == 25 and got.corrupt == 0
    audio = [body for kind, _, body in flv_tags(data) if kind == TagType.AUDIO]
    assert [b[1] for b in audio[:2]] == [0, 1]  # the AudioSpecificConfig once, first
    assert sum(b[1] == 0 for b in audio) == 1


def _adts_frame(config: bytes, raw: bytes) -> bytes:
    """One ADTS frame (no CRC) around a raw AAC frame."""
    profile = (config[0] >> 3) - 1
    rate = ((config[0] & 7) << 1) | (config[1] >> 7)
    channels = (config[1] >> 3) & 0xF
    n = len(raw) + 7
    return bytes(
        (
            0xFF,
            0xF1,
            (profile << 6) | (rate << 2) | (channels >> 2),
            ((channels & 3) << 6) | (n >> 11),
            (n >> 3) & 0xFF,
            ((n & 7) << 5) | 0x1F,
            0xFC,
        )
    ) + raw


def test_other_codecs_get_a_clear_error() -> None:
    """A codec FLV output does not carry raises UnsupportedCodec with words for the viewer;
    H.265 in a stream started in H.264 (and the reverse) is a frame skipped, not garbage."""
    mux = FlvMuxer()
    with pytest.raises(UnsupportedCodec, match="neither H.264 nor H.265"):
        mux.video(b"\x00\x00\x00\x01\x65", 0, codec=100)
    with pytest.raises(BadFrame, match="H.265 video in a stream that started in H.264"):
        mux.video(b"\x00\x00\x00\x01\x40\x01\x0c", 0, codec=H265)
    with pytest.raises(BadFrame):
        mux.video(b"no start code", 0)
    assert mux.counters.video_tags == 0


def test_pictures_wait_for_an_idr_with_its_parameter_sets(tmp_path: Path) -> None:
    """Muxing that starts mid-GOP skips pictures up to the first IDR with SPS/PPS."""
    units = clip()
    mux = FlvMuxer()
    out = [mux.header()]
    for au in units[10:]:
        out += [t.data for t in mux.video(au.data, START + au.index * STEP)]
    assert mux.counters.skipped == 15
    got = decode_flv(b"".join(out))
    assert got.pts[0] == 0 and len(got.pts) == 50 and got.corrupt == 0
    assert got.pictures == reference_pictures(units)[25:]


def test_changed_parameter_sets_send_a_new_sequence_header(tmp_path: Path) -> None:
    """A unit that changes resolution mid-stream gets a second AVC sequence header, and
    FFmpeg decodes both sizes."""
    small, large = clip(frames=25), clip(frames=25, width=176, height=144)
    mux = FlvMuxer()
    tags: list[FlvTag] = []
    for n, au in enumerate(small + large):
        tags += mux.video(au.data, START + n * STEP)
    assert [t.timestamp for t in tags if t.config] == [0, 25 * STEP]
    assert mux.counters.configs == 2
    got = decode_flv(mux.header() + b"".join(t.data for t in tags))
    assert got.sizes == ((160, 120),) * 25 + ((176, 144),) * 25
    assert got.pictures == reference_pictures(small) + reference_pictures(large)


def test_repeated_parameter_sets_send_no_new_header() -> None:
    """SPS/PPS repeated with every IDR, unchanged, give one sequence header only."""
    mux = FlvMuxer()
    tags = [t for au in clip() for t in mux.video(au.data, au.index * STEP)]
    assert sum(t.config for t in tags) == 1
    assert [t.timestamp for t in tags if t.keyframe and not t.config] == [0, 1000, 2000]


def test_frames_report_drops_as_values() -> None:
    """Frames waiting for a keyframe at the start are returned as FrameDropped values."""
    media = MediaStream()
    units = clip()
    events = media.feed(wire(dvr_packets(units[5:26])))
    drops = [e for e in events if isinstance(e, FrameDropped)]
    assert [d.why for d in drops] == [DropReason.AWAITING_KEYFRAME] * 20
    assert [e.timestamp for e in events if isinstance(e, Frame)] == [START + 25 * STEP]
