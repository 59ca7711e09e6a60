"""H.265 to H.264 (``cmsv6.media.transcode``), judged by FFmpeg: every picture comes out
as H.264 with the unit's timestamp, IDR pictures (SPS/PPS in front) where the input has
IRAP pictures, the picture itself (the clip's clock still reads); a size change gets a
new encoder; bad input is counted, never raised; a transcoder that falls behind skips to
the next keyframe; its thread hands results to the reactor thread in order and ends on
``stop``."""

from __future__ import annotations

import threading

import av
import pytest

from cmsv6.media.clip import Clip, clock_text, encode_clip
from cmsv6.media.transcode import BEHIND, H265ToH264, Picture, VideoTranscoder, bit_rate
from cmsv6.protocols.flv.h264 import NAL_IDR, NAL_PPS, NAL_SPS, nal_type, split_annexb
from cmsv6.protocols.jt1078.packet import DataType
from tests.media.test_clip import reads
from tests.plugins.media.test_hevc_fanout import ThreadReactor

START = 1_700_000_000_000


@pytest.fixture(scope="module")
def h265() -> Clip:
    return encode_clip(seconds=3, gop=25, codec="h265")


def decode_h264(pictures: list[Picture]) -> list[av.VideoFrame]:
    ctx = av.CodecContext.create("h264", "r")
    out = []
    for p in pictures:
        out += ctx.decode(av.Packet(p.data))
    return out + ctx.decode(None)


def test_every_picture_as_h264_at_its_time(h265: Clip) -> None:
    """75 H.265 pictures in, 75 H.264 pictures out, each at its unit timestamp (a clock
    that jumps back included), IDR pictures with SPS/PPS exactly where the input had IRAP
    pictures, decoding to the same picture (the burnt-in clock reads its time)."""
    codec = H265ToH264()
    stamps = [START + f.timestamp for f in h265.video]
    stamps[60:] = [s - 50_000 for s in stamps[60:]]  # the unit's clock reset
    out: list[Picture] = []
    for f, ts in zip(h265.video, stamps):
        out += codec.transcode(f.payload, ts)
    out += codec.flush()
    assert [p.timestamp for p in out] == stamps
    irap = [i for i, f in enumerate(h265.video) if f.data_type == DataType.I_FRAME]
    assert [i for i, p in enumerate(out) if p.keyframe] == irap == [0, 25, 50]
    for i, p in enumerate(out):
        types = {nal_type(n) for n in split_annexb(p.data)}
        assert ({NAL_SPS, NAL_PPS, NAL_IDR} <= types) == (i in irap)
    decoded = decode_h264(out)
    assert len(decoded) == 75 and {(d.width, d.height) for d in decoded} == {(352, 288)}
    assert [i for i, d in enumerate(decoded) if d.key_frame] == irap
    for i in (0, 13, 37, 74):
        assert reads(decoded[i], clock_text(i * 40)) > 0.95
    assert codec.counters.errors == {} and codec.counters.pictures_out == 75


def test_a_size_change_gets_a_new_encoder() -> None:
    """H.265 that changes picture size: a second encoder, an IDR at the change, and both
    sizes decode from the H.264."""
    small = encode_clip(176, 144, seconds=1, gop=25, codec="h265")
    large = encode_clip(seconds=1, gop=25, codec="h265")
    codec = H265ToH264()
    out: list[Picture] = []
    for n, f in enumerate(small.video + large.video):
        out += codec.transcode(f.payload, n * 40)
    out += codec.flush()
    decoded = decode_h264(out)
    assert [(d.width, d.height) for d in decoded] == [(176, 144)] * 25 + [(352, 288)] * 25
    assert codec.counters.encoders == 2 and out[25].keyframe


def test_bad_input_is_counted_not_raised(h265: Clip) -> None:
    """Garbage and a picture cut short are counted with a reason; the transcoder goes on
    and the next IRAP picture comes out."""
    codec = H265ToH264()
    assert codec.transcode(b"\x00\x00\x01\x26\x01garbage", 0) == []
    assert codec.transcode(h265.video[0].payload[:40], 40) == []
    out = [p for f in h265.video[25:30] for p in codec.transcode(f.payload, f.timestamp)]
    assert out and out[0].keyframe and out[0].timestamp == 1000
    assert sum(codec.counters.errors.values()) >= 1
    assert codec.last_error is not None and "H.265" in codec.last_error


def test_bit_rate_is_sensible() -> None:
    """About 2.3 Mbit/s at 720p25, 250 kbit/s at CIF, never below 100 kbit/s."""
    assert bit_rate(1280, 720) == 2_304_000
    assert bit_rate(352, 288) == 253_440
    assert bit_rate(16, 16) == 100_000


def test_the_thread_hands_back_in_order_and_skips_to_a_keyframe_when_behind(h265: Clip) -> None:
    """With the thread held on its first picture and room for 3 more, the 5th is dropped
    and so is every one after it up to the next IRAP picture (counted); audio put along
    comes back between the pictures it went in between; what comes out decodes as H.264
    with no error, a keyframe first after the gap."""
    reactor = ThreadReactor()
    got: list[object] = []
    vt = VideoTranscoder(reactor, got.extend, "test", max_frames=3)
    held, release = threading.Event(), threading.Event()
    transcode = vt.codec.transcode

    def slow(*args: object) -> list[Picture]:
        held.set()
        release.wait(30)
        return transcode(*args)  # type: ignore[arg-type]

    vt.codec.transcode = slow  # type: ignore[method-assign]
    assert vt.feed(h265.video[0].payload, 0)
    assert held.wait(30)
    fed = [vt.feed(f.payload, f.timestamp) for f in h265.video[1:25]]
    assert fed == [True] * 3 + [False] * 21 and vt.dropped[BEHIND] == 21
    release.set()
    reactor.run_until(lambda: len(got) == 4, "the 4 pictures taken")
    assert not vt.feed(h265.video[24].payload, 960)  # room again, but still no keyframe
    assert vt.dropped[BEHIND] == 22
    vt.along("audio at 1000")
    # as many as there is room for, whatever the thread has taken yet
    assert all(vt.feed(f.payload, f.timestamp) for f in h265.video[25:28])
    reactor.run_until(lambda: len(got) == 8, "the audio and 3 pictures from the keyframe")
    times = [g.timestamp if isinstance(g, Picture) else g for g in got]
    assert times == [0, 40, 80, 120, "audio at 1000", 1000, 1040, 1080]
    assert got[5].keyframe  # type: ignore[union-attr]
    decoded = decode_h264([g for g in got if isinstance(g, Picture)])
    assert len(decoded) == 7
    vt.stop()
    vt.join(30)
    assert not vt.alive


def test_stop_ends_the_thread_and_nothing_more_is_delivered(h265: Clip) -> None:
    """After ``stop`` the thread ends, what was queued is dropped, results already on their
    way are not delivered, and feeding is refused."""
    reactor = ThreadReactor()
    got: list[object] = []
    vt = VideoTranscoder(reactor, got.extend, "test")
    for f in h265.video[:10]:
        vt.feed(f.payload, f.timestamp)
    vt.stop()
    vt.join(30)
    assert not vt.alive
    while not reactor.calls.empty():
        f, args = reactor.calls.get()
        f(*args)
    assert got == [] and not vt.feed(h265.video[0].payload, 0)


def test_the_thread_survives_bad_input(h265: Clip) -> None:
    """Input without NAL units is dropped at the door; garbage that claims to be an IRAP
    picture, and a fault of the codec's, are taken by the thread without it ending (the
    fault counted); the next pictures still come out."""
    reactor = ThreadReactor()
    got: list[Picture] = []
    vt = VideoTranscoder(reactor, got.extend, "test")
    transcode = vt.codec.transcode

    def faulty(access_unit: bytes, timestamp: int, keyframe: bool | None = None) -> list[Picture]:
        if timestamp == 120:
            raise RuntimeError("a codec fault")
        return transcode(access_unit, timestamp, keyframe)

    vt.codec.transcode = faulty  # type: ignore[method-assign]
    assert not vt.feed(b"nothing", 0) and vt.dropped["no H.265 NAL unit"] == 1
    assert not vt.feed(h265.video[1].payload, 40)  # not a keyframe: nothing to start from
    assert vt.feed(b"\x00\x00\x01\x28\x01" + b"\xff" * 50, 80)  # an IRAP type, garbage
    assert vt.feed(h265.video[0].payload, 120)
    for f in h265.video[25:35]:
        vt.feed(f.payload, f.timestamp)
    reactor.run_until(lambda: len(got) == 10, "ten pictures")
    assert got[0].keyframe and got[0].timestamp == 1000
    assert vt.codec.counters.errors["transcoder fault"] == 1 and vt.alive
    vt.stop()
