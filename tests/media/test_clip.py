"""The simulator's clip, decoded by FFmpeg: every picture, IDR pictures where the GOP says,
the burnt-in clock readable and moving; the tone in G.711A; the disk cache read back
instead of encoding again, and a damaged cache encoded again."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import pytest

from cmsv6.media import clip as clip_module
from cmsv6.media.clip import (
    AUDIO_FRAME,
    D1,
    Clip,
    clock_box,
    clock_mask,
    clock_text,
    encode_clip,
    load_clip,
)
from cmsv6.protocols.flv.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_type, split_annexb
from cmsv6.protocols.jt1078.packet import DataType
from tests.media.tones import dominant

SECONDS = 4
GOP = 25


@pytest.fixture(scope="module")
def cif() -> Clip:
    return encode_clip(seconds=SECONDS, gop=GOP)


def pictures(c: Clip) -> list[av.VideoFrame]:
    ctx = av.CodecContext.create("h264", "r")
    out = []
    for f in c.video:
        out += ctx.decode(av.Packet(f.payload))
    return out + ctx.decode(None)


def luma(frame: av.VideoFrame) -> tuple[bytes, int]:
    plane = frame.planes[0]
    return bytes(plane), plane.line_size


def clock_region(frame: av.VideoFrame, text: str) -> list[bytes]:
    x, y, scale = clock_box(frame.width, frame.height)
    pixels, stride = luma(frame)
    mask = clock_mask(text, scale)
    return [
        pixels[(y + r) * stride + x : (y + r) * stride + x + len(mask[0])]
        for r in range(len(mask))
    ]


def reads(frame: av.VideoFrame, text: str) -> float:
    """The share of the clock's pixels that are bright where ``text``'s glyphs are lit
    and dark elsewhere."""
    mask = clock_mask(text, clock_box(frame.width, frame.height)[2])
    region = clock_region(frame, text)
    hits = sum(
        (p > 128) == bool(m)
        for row, mrow in zip(region, mask)
        for p, m in zip(row, mrow)
    )
    return hits / (len(mask) * len(mask[0]))


def test_every_picture_in_order_with_idr_every_gop(cif: Clip) -> None:
    """25 pictures a second, 40 ms apart, in H.264 baseline; IDR pictures (with SPS and
    PPS in front) exactly every GOP, and FFmpeg sees the same ones as keyframes."""
    assert [f.timestamp for f in cif.video] == [i * 40 for i in range(SECONDS * 25)]
    keys = [i for i, f in enumerate(cif.video) if f.data_type == DataType.I_FRAME]
    assert keys == list(range(0, SECONDS * 25, GOP))
    assert {f.data_type for f in cif.video} == {DataType.I_FRAME, DataType.P_FRAME}
    for i, f in enumerate(cif.video):
        nals = split_annexb(f.payload)
        assert ({NAL_SPS, NAL_PPS, NAL_IDR} <= {nal_type(n) for n in nals}) == (
            i in keys
        )
        # constrained baseline (profile_idc 66, constraint_set1): every decoder takes it
        assert {(n[1], n[2] & 0x40) for n in nals if nal_type(n) == NAL_SPS} <= {
            (66, 0x40)
        }
    decoded = pictures(cif)
    assert len(decoded) == SECONDS * 25
    assert {(p.width, p.height) for p in decoded} == {(352, 288)}
    assert [i for i, p in enumerate(decoded) if p.key_frame] == keys


def test_the_clock_reads_the_clip_time_and_moves(cif: Clip) -> None:
    """Each picture shows its own time, readable after encoding; pictures at different
    times differ (clock and background alike)."""
    decoded = pictures(cif)
    for i in (0, 13, 37, 99):
        text = clock_text(i * 40)
        assert reads(decoded[i], text) > 0.95, text
    assert clock_text(37 * 40) == "01.12"
    assert reads(decoded[37], clock_text(0)) < 0.9
    assert clock_region(decoded[0], "00.00") != clock_region(decoded[25], "00.00")
    assert luma(decoded[10])[0] != luma(decoded[11])[0]


def test_the_tone_in_g711a(cif: Clip) -> None:
    """40 ms frames of 320 bytes, back to back, decoding to the 1 kHz tone."""
    assert [f.timestamp for f in cif.audio] == [i * 40 for i in range(SECONDS * 25)]
    assert {(f.data_type, len(f.payload)) for f in cif.audio} == {
        (DataType.AUDIO, AUDIO_FRAME)
    }
    ctx = av.CodecContext.create("pcm_alaw", "r")
    ctx.sample_rate, ctx.layout = 8000, "mono"
    samples: list[int] = []
    for f in cif.audio[:10]:
        for frame in ctx.decode(av.Packet(f.payload)):
            samples += struct.unpack(
                f"<{frame.samples}h", bytes(frame.planes[0])[: 2 * frame.samples]
            )
    assert len(samples) == 10 * AUDIO_FRAME
    assert dominant([float(s) for s in samples[:1024]], 8000) == 1000


def test_main_stream_size() -> None:
    c = encode_clip(*D1, seconds=1)
    decoded = pictures(c)
    assert {(p.width, p.height) for p in decoded} == {D1}
    assert reads(decoded[24], "00.24") > 0.95


def test_cached_once_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second process (an empty memo) reads the cache instead of encoding; a damaged
    cache file is encoded again and rewritten."""
    monkeypatch.setattr(clip_module, "_MEMO", {})
    first = load_clip(seconds=1, cache_dir=tmp_path)
    (cached,) = tmp_path.iterdir()
    assert load_clip(seconds=1, cache_dir=tmp_path) is first  # this process's memo

    def no_encoding(*args: object) -> Clip:
        raise AssertionError("encoded again")

    monkeypatch.setattr(clip_module, "_MEMO", {})
    monkeypatch.setattr(clip_module, "encode_clip", no_encoding)
    assert load_clip(seconds=1, cache_dir=tmp_path) == first

    monkeypatch.undo()
    monkeypatch.setattr(clip_module, "_MEMO", {})
    cached.write_bytes(cached.read_bytes()[:-7])  # cut short
    assert load_clip(seconds=1, cache_dir=tmp_path) == first
    assert cached.stat().st_size > 0 and [p.name for p in tmp_path.iterdir()] == [
        cached.name
    ]
    assert clip_module._read(cached, 352, 288, 25, 1000) == first


def test_h265_variant_is_the_same_clip_in_hevc() -> None:
    """``codec="h265"``: the same pictures (the clock reads the same) in H.265 without
    B-frames, an IRAP picture with VPS/SPS/PPS in front exactly every GOP, labelled
    payload type 99; FFmpeg decodes every picture and sees the same keyframes."""
    c = encode_clip(seconds=2, gop=GOP, codec="h265")
    assert c.video_payload_type == 99
    assert [f.timestamp for f in c.video] == [i * 40 for i in range(2 * 25)]
    keys = [i for i, f in enumerate(c.video) if f.data_type == DataType.I_FRAME]
    assert keys == list(range(0, 2 * 25, GOP))
    for i, f in enumerate(c.video):
        types = [(n[0] >> 1) & 0x3F for n in split_annexb(f.payload)]
        assert ({32, 33, 34} <= set(types)) == (i in keys)
        assert any(16 <= t <= 23 for t in types) == (i in keys)
    ctx = av.CodecContext.create("hevc", "r")
    decoded = [p for f in c.video for p in ctx.decode(av.Packet(f.payload))] + ctx.decode(None)
    assert len(decoded) == 2 * 25 and {(p.width, p.height) for p in decoded} == {(352, 288)}
    assert [i for i, p in enumerate(decoded) if p.key_frame] == keys
    assert reads(decoded[37], clock_text(37 * 40)) > 0.95


def test_h265_is_cached_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The H.264 and H.265 clips of one size are two cache files, each read back as the
    codec it was; an unknown codec is refused in words."""
    monkeypatch.setattr(clip_module, "_MEMO", {})
    h264 = load_clip(seconds=1, cache_dir=tmp_path)
    h265 = load_clip(seconds=1, cache_dir=tmp_path, codec="h265")
    assert len(list(tmp_path.iterdir())) == 2 and h264.video != h265.video
    monkeypatch.setattr(clip_module, "_MEMO", {})
    monkeypatch.setattr(clip_module, "encode_clip", lambda *a: pytest.fail("encoded again"))
    assert load_clip(seconds=1, cache_dir=tmp_path, codec="h265") == h265
    assert load_clip(seconds=1, cache_dir=tmp_path).video_payload_type == 98
    with pytest.raises(ValueError, match="'vp8' is not one of h264, h265"):
        load_clip(seconds=1, codec="vp8")
