"""JT/T 1078 frames and streams: reassembly from marks, loss, bounds, SIM identity, any
split of the bytes, garbage, and the corpus's captured streams decoded by FFmpeg."""

from __future__ import annotations

import io
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsv6.protocols.flv.muxer import FlvMuxer
from cmsv6.protocols.jt1078.frames import (
    MAX_OPEN,
    DropReason,
    Frame,
    FrameAssembler,
    FrameDropped,
)
from cmsv6.protocols.jt1078.packet import (
    MAGIC,
    DataType,
    Packet,
    Subpackage,
    build_packet,
    parse_packet,
    split_frame,
)
from cmsv6.protocols.jt1078.sim import SimIdentity
from cmsv6.protocols.jt1078.stream import (
    ForeignPacket,
    Garbage,
    MediaStream,
    SimSeen,
    StreamFailed,
)
from tests.support.corpus import records

TS = 1_700_000_000_000


def frame_packets(
    payload: bytes,
    data_type: int = DataType.P_FRAME,
    seq: int = 0,
    ts: int = TS,
    channel: int = 1,
    sim: str = "013800138999",
    max_body: int = 950,
) -> list[Packet]:
    video = data_type <= DataType.B_FRAME
    template = Packet(
        sim=sim,
        channel=channel,
        data_type=data_type,
        timestamp=ts,
        last_i_frame_interval=0 if video else None,
        last_frame_interval=40 if video else None,
        payload_type=98 if video else 6,
        sequence=seq,
    )
    return split_frame(template, payload, max_body)


def gop(n: int = 5, seq: int = 0, size: int = 2000) -> list[Packet]:
    """An I-frame and ``n - 1`` P-frames, each ``size`` bytes, numbered from ``seq``."""
    out: list[Packet] = []
    for i in range(n):
        kind = DataType.I_FRAME if i == 0 else DataType.P_FRAME
        out += frame_packets(bytes([i]) * size, kind, seq + len(out), TS + 40 * i)
    return out


def push_all(a: FrameAssembler, packets: list[Packet]) -> list[Frame | FrameDropped]:
    return [x for p in packets for x in a.push(p)]


def frames(events: list[Any]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


# -- reassembly ----------------------------------------------------------------------------


def test_pieces_make_one_frame() -> None:
    """First, middle and last pieces come out as one frame with the first piece's number."""
    payload = bytes(range(256)) * 9
    out = push_all(FrameAssembler(), frame_packets(payload, DataType.I_FRAME, seq=7))
    assert out == [Frame(1, DataType.I_FRAME, TS, payload, 98, 7, 0, 40)]


def test_start_waits_for_a_keyframe() -> None:
    """A connection that starts mid-GOP drops P-frames until its first I-frame."""
    a = FrameAssembler()
    out = push_all(a, frame_packets(b"p" * 10) + gop(seq=1))
    assert isinstance(out[0], FrameDropped) and out[0].why is DropReason.AWAITING_KEYFRAME
    assert [f.payload[:1] for f in frames(out)] == [bytes([i]) for i in range(5)]
    assert (a.counters.dropped, a.counters.frames) == (1, 5)


def test_sequence_gap_drops_the_frame_and_waits_for_the_next_keyframe() -> None:
    """A packet missing inside a P-frame loses it and the P-frames after it, not the next GOP."""
    packets = gop() + gop(seq=len(gop()))
    lost = 4  # the middle piece of the first P-frame
    assert packets[lost].subpackage == Subpackage.MIDDLE
    a = FrameAssembler()
    out = push_all(a, packets[:lost] + packets[lost + 1 :])
    got = [(f.data_type, f.payload[0]) for f in frames(out)]
    assert got == [(0, 0)] + [(0, 0), (1, 1), (1, 2), (1, 3), (1, 4)]
    drops = [e.why for e in out if isinstance(e, FrameDropped)]
    assert drops == [DropReason.LOST] + [DropReason.AWAITING_KEYFRAME] * 3
    assert (a.counters.lost, a.counters.dropped, a.counters.sequence_gaps) == (1, 3, 1)


def test_marks_catch_a_loss_the_numbering_cannot() -> None:
    """Without usable numbers (a unit that repeats them), a first piece before the last
    one, or a last piece without a first, still drops the broken frames."""
    i_frame = frame_packets(b"i" * 2000, DataType.I_FRAME)
    p1 = frame_packets(b"1" * 2000, ts=TS + 40)
    p2 = frame_packets(b"2" * 2000, ts=TS + 80)
    packets = [attrs.evolve(p, sequence=0) for p in i_frame + p1[:-1] + p2[1:]]
    a = FrameAssembler()
    out = push_all(a, packets)
    assert not a.sequence_counts
    assert [f.payload[:1] for f in frames(out)] == [b"i"]
    assert [e.reason for e in out if isinstance(e, FrameDropped)] == [
        "its last piece never came",
        "its first piece never came",
    ]
    assert a.counters.lost == 2


def test_oversize_frame_is_dropped_with_an_error() -> None:
    """A frame beyond ``max_frame`` is dropped (held no further), the next keyframe restarts."""
    a = FrameAssembler(max_frame=3000)
    big = frame_packets(b"x" * 5000, DataType.I_FRAME)
    events: list[Any] = []
    for p in big:
        events += a.push(p)
        assert a.buffered <= 3000
    (drop,) = events
    assert isinstance(drop, FrameDropped) and drop.why is DropReason.OVERSIZE
    assert "3000-byte limit" in drop.reason and drop.size == 5000
    out = push_all(a, gop(2, seq=len(big), size=1000))
    assert [f.data_type for f in frames(out)] == [0, 1]
    assert a.counters.oversize == 1


def test_audio_needs_no_keyframe_and_shares_the_counter() -> None:
    """Audio interleaved with video on one counter passes at once and breaks nothing."""
    video = gop(2)
    audio = [attrs.evolve(p, sequence=0) for p in frame_packets(b"\xd5" * 160, DataType.AUDIO)]
    mixed = [video[0], video[1], audio[0], video[2], *video[3:]]
    mixed = [attrs.evolve(p, sequence=i) for i, p in enumerate(mixed)]
    a = FrameAssembler()
    out = push_all(a, mixed)
    assert [f.data_type for f in frames(out)] == [DataType.AUDIO, 0, 1]
    assert a.counters.sequence_gaps == 0


def test_separate_counters_per_kind_are_no_gap() -> None:
    """A unit numbering audio and video separately shows no loss."""
    video = gop(2)
    audio = [attrs.evolve(frame_packets(b"\xd5" * 160, DataType.AUDIO)[0], sequence=100 + i) for i in range(3)]
    mixed = [audio[0], video[0], audio[1], *video[1:3], audio[2], *video[3:]]
    a = FrameAssembler()
    push_all(a, mixed)
    assert (a.counters.sequence_gaps, a.counters.lost, a.counters.frames) == (0, 0, 5)


def test_frames_in_progress_are_bounded() -> None:
    """First pieces on many channels never hold more than MAX_OPEN frames."""
    a = FrameAssembler()
    out: list[Any] = []
    for ch in range(10):
        out += a.push(frame_packets(b"x" * 2000, DataType.I_FRAME, seq=ch, channel=ch)[0])
        assert a.buffered <= MAX_OPEN * 950
    assert sum(isinstance(e, FrameDropped) for e in out) == 10 - MAX_OPEN


# -- the stream: SIM, garbage, splits ------------------------------------------------------


def test_sim_in_bcd_matches_the_phone() -> None:
    """A 6- or 10-byte BCD SIM names the 808 phone; the stream says how, once."""
    for sim in ("013800138999", "00000000013800138999"):
        media = MediaStream(phone="013800138999")
        events = media.feed(b"".join(build_packet(attrs.evolve(p, sim=sim)) for p in gop(2)))
        (seen,) = [e for e in events if isinstance(e, SimSeen)]
        assert seen.match is not None and seen.match.how == "bcd"
        assert seen.match.sim_size == len(sim) // 2
        assert "is phone 13800138999" in seen.reason
        assert media.sim_size == len(sim) // 2


def test_binary_sim_is_mapped_and_reported() -> None:
    """A unit writing its number in binary is mapped to the phone, saying what was seen."""
    binary = (13800138999).to_bytes(6, "big").hex()
    assert binary == "0003368d68f7"
    media = MediaStream(phone="13800138999")
    events = media.feed(b"".join(build_packet(attrs.evolve(p, sim=binary)) for p in gop(2)))
    (seen,) = [e for e in events if isinstance(e, SimSeen)]
    assert seen.match is not None and seen.match.how == "binary"
    assert seen.reason == "SIM 0003368d68f7 (6 bytes, binary) is phone 13800138999"
    assert len(frames(events)) == 2


def test_unmatched_sim_names_its_readings() -> None:
    """A SIM that is not the expected phone is reported with every reading of it."""
    identity = SimIdentity("013800138999")
    assert identity.candidates() == ("13800138999", "1340031076761")
    media = MediaStream(phone="13900000000")
    (seen, *_) = media.feed(b"".join(build_packet(p) for p in gop(1)))
    assert isinstance(seen, SimSeen) and seen.match is None
    assert "reads as phone 13800138999 or 1340031076761" in seen.reason


def test_packets_of_another_sim_are_dropped() -> None:
    """One connection is one unit: a packet naming another SIM is reported and dropped."""
    media = MediaStream()
    other = [attrs.evolve(p, sim="013800138000") for p in gop(2, seq=len(gop(2)))]
    events = media.feed(b"".join(build_packet(p) for p in gop(2) + other))
    foreign = [e for e in events if isinstance(e, ForeignPacket)]
    assert len(foreign) == len(other) and "013800138000" in foreign[0].reason
    assert len(frames(events)) == 2 and media.counters.foreign_packets == len(other)


def test_garbage_is_counted_exactly_and_bounded() -> None:
    """Garbage between packets is skipped and counted; past ``max_garbage`` bytes in a row
    the stream fails, and is ignored from then on."""
    media = MediaStream(max_garbage=10_000)
    junk = b"\x7e" * 6000
    events = media.feed(build_packet(gop(1)[0]) + junk + build_packet(gop(1)[1]))
    assert media.counters.garbage_bytes == 6000
    assert sum(e.size for e in events if isinstance(e, Garbage)) == 6000
    events = media.feed(junk)
    assert media.failed is None
    events = media.feed(junk)
    assert isinstance(events[-1], StreamFailed) and media.failed is events[-1]
    assert "12000 bytes in a row" in media.failed.reason
    assert media.feed(b"".join(build_packet(p) for p in gop(2))) == []
    assert media.buffered <= 2 * 950  # the first frame's two pieces; no garbage kept


def _events(media: MediaStream, chunks: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for chunk in chunks:
        out += media.feed(chunk)
        assert media.buffered <= 2 * 950 + MAX_OPEN * 4000
    return out + media.close()


@st.composite
def streams(draw: st.DrawFn) -> list[Packet]:
    """Frames of a unit: GOPs with random sizes, some audio, one counter."""
    out: list[Packet] = []
    n = draw(st.integers(1, 12))
    for i in range(n):
        kind = draw(st.sampled_from([DataType.I_FRAME, DataType.P_FRAME, DataType.AUDIO]))
        size = draw(st.integers(1, 2500))
        out += frame_packets(bytes([i]) * size, kind, ts=TS + 40 * i)
    return [attrs.evolve(p, sequence=i) for i, p in enumerate(out)]


@given(streams(), st.lists(st.integers(0, 30_000), max_size=20))
@settings(max_examples=200, deadline=None)
def test_any_split_gives_the_same_frames(packets: list[Packet], cuts: list[int]) -> None:
    """However the bytes are split, the stream gives the same frames and notes."""
    data = b"".join(build_packet(p) for p in packets)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[i:j] for i, j in zip([0, *points], [*points, len(data)])]
    whole = _events(MediaStream(), [data])
    assert _events(MediaStream(), chunks) == whole
    assert any(isinstance(e, (Frame, FrameDropped)) for e in whole)


@given(streams(), st.lists(st.binary(max_size=200).filter(lambda b: MAGIC[:1] not in b), max_size=5), st.data())
@settings(max_examples=200, deadline=None)
def test_garbage_between_packets_costs_only_itself(
    packets: list[Packet], junks: list[bytes], data: st.DataObject
) -> None:
    """Garbage without a frame header between packets leaves the frames as they were."""
    wire = [build_packet(p) for p in packets]
    clean = _events(MediaStream(), [b"".join(wire)])
    for junk in junks:
        at = data.draw(st.integers(0, len(wire)))
        wire.insert(at, junk)
    dirty = _events(MediaStream(), [b"".join(wire)])
    assert [e for e in dirty if not isinstance(e, Garbage)] == clean


@given(st.lists(st.binary(max_size=3000), max_size=30))
@settings(max_examples=200, deadline=None)
def test_random_bytes_never_raise_nor_grow(chunks: list[bytes]) -> None:
    """Random input (with frame headers sprinkled in) gives values only, in bounded memory."""
    media = MediaStream(max_garbage=1 << 30)
    for chunk in chunks:
        for e in media.feed(chunk[:50] + MAGIC + chunk[50:]):
            assert isinstance(e, (Frame, FrameDropped, SimSeen, ForeignPacket, Garbage))
        assert media.buffered <= 34 + 950 + 3 + MAX_OPEN * (1 << 20)
        assert media._frames.buffered <= MAX_OPEN * (1 << 20)


# -- the corpus's captured streams ---------------------------------------------------------

_CAPTURES = {
    "SmallChi/JT1078 doc/video/JT1078_2.txt": 6,
    "sim-length-6-h264-adpcma.txt": 6,
    "sim-length-10-h264-g711a.txt": 10,
}


def _capture(name: str) -> list[dict[str, Any]]:
    return [
        r
        for r in records("jt1078_packets.jsonl")
        if r["kind"] == "jt1078_packet" and r["source"].split(":")[0].endswith(name)
    ]


def test_corpus_captures_reassemble_and_decode() -> None:
    """The corpus's real captures give whole frames, and FFmpeg decodes their FLV with no
    corrupt picture; the SIM length is found from the stream."""
    import av  # noqa: PLC0415 (only this test needs FFmpeg)

    from tests.protocols.flv.media import decode_flv  # noqa: PLC0415

    for name, sim_size in _CAPTURES.items():
        rs = _capture(name)
        assert len(rs) > 50, name
        media = MediaStream()
        events = media.feed(b"".join(bytes.fromhex(r["hex"]) for r in rs)) + media.close()
        assert media.sim_size == sim_size, name
        assert media.counters.garbage_bytes == 0 and media.counters.lost == 0, name
        mux = FlvMuxer()
        out = [mux.header()]
        video = [f for f in frames(events) if f.data_type <= DataType.B_FRAME]
        for f in video:
            out += [t.data for t in mux.video(f.payload, f.timestamp or 0, f.payload_type)]
        got = decode_flv(b"".join(out))
        assert len(got.pts) == mux.counters.video_tags > 10, name
        assert (got.corrupt, got.errors) == (0, 0), name
        assert av.open(io.BytesIO(b"".join(out)), format="flv").streams.video[0].codec_context.name == "h264"


def test_corpus_packets_reassemble_alone() -> None:
    """Each corpus packet the reader cuts passes the assembler as a value (no exception)."""
    for r in records("jt1078_packets.jsonl"):
        if r["kind"] != "jt1078_packet":
            continue
        a = FrameAssembler()
        for e in a.push(parse_packet(bytes.fromhex(r["hex"]))):
            assert isinstance(e, (Frame, FrameDropped))
