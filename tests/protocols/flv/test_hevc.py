"""H.265 as enhanced FLV, judged by FFmpeg: a camera's H.265 cut into JT/T 1078 packets,
reassembled and muxed decodes as HEVC picture for picture; the decoder configuration
record is the one FFmpeg itself writes for the same stream; parameter sets are read
through emulation prevention bytes and sub-layers."""

from __future__ import annotations

import io
import struct

import av
import pytest

from cmsv6.protocols.flv import hevc
from cmsv6.protocols.flv.h264 import split_annexb
from cmsv6.protocols.flv.muxer import (
    EX_HEADER,
    H264,
    H265,
    PACKET_CODED_FRAMES_X,
    PACKET_SEQUENCE_START,
    VIDEOCODECID_HEVC,
    BadFrame,
    FlvMuxer,
    FlvTag,
)
from cmsv6.protocols.flv.tags import TagType
from cmsv6.protocols.jt1078.frames import Frame
from cmsv6.protocols.jt1078.stream import MediaStream
from tests.protocols.flv.media import (
    SIM,
    STEP,
    AccessUnit,
    decode_flv,
    dvr_packets,
    ffmpeg_hvcc,
    hevc_clip,
    reference_hevc,
    wire,
)
from tests.protocols.flv.test_muxer import flv_tags

START = 1_700_000_000_000


def mux(units: tuple[AccessUnit, ...], muxer: FlvMuxer | None = None) -> tuple[bytes, list[FlvTag]]:
    """The units as a DVR sends them (1078 packets, payload type 99) through MediaStream
    and an H.265 FlvMuxer."""
    media = MediaStream(phone=SIM)
    m = muxer or FlvMuxer(codec=H265)
    tags: list[FlvTag] = []
    for event in media.feed(wire(dvr_packets(units, payload_type=H265))) + media.close():
        if isinstance(event, Frame):
            assert event.payload_type == H265
            tags += m.video(event.payload, event.timestamp or 0, event.payload_type)
    return m.header() + b"".join(t.data for t in tags), tags


def parameter_sets(au: AccessUnit) -> tuple[list[bytes], list[bytes], list[bytes]]:
    nals = split_annexb(au.data)
    return tuple(  # type: ignore[return-value]
        [n for n in nals if hevc.nal_type(n) == kind]
        for kind in (hevc.NAL_VPS, hevc.NAL_SPS, hevc.NAL_PPS)
    )


def test_h265_clip_arrives_as_hevc_picture_for_picture() -> None:
    """Every picture of the H.265 clip decodes from the FLV as HEVC, at its size, 40 ms
    apart from 0, keyframes at the IRAP pictures, identical to decoding the Annex B."""
    units = hevc_clip()
    data, tags = mux(units)
    container = av.open(io.BytesIO(data), format="flv")
    assert container.streams.video[0].codec_context.name == "hevc"
    container.close()
    got = decode_flv(data)
    assert got.errors == 0 and got.corrupt == 0
    assert got.sizes == ((160, 128),) * len(units)
    assert got.pts == tuple(i * STEP for i in range(len(units)))
    assert got.keyframes == tuple(au.index * STEP for au in units if au.keyframe) == (0, 1000, 2000)
    assert got.pictures == reference_hevc(units)
    assert [t.keyframe for t in tags if not t.config] == [au.keyframe for au in units]


def test_tags_are_enhanced_flv_hvc1() -> None:
    """The FLV announces video hvc1 in onMetaData; one SequenceStart (the parameter sets
    repeat unchanged at each IRAP); pictures are CodedFramesX of length-prefixed NAL
    units without VPS/SPS/PPS; key frame type exactly on IRAP pictures."""
    units = hevc_clip()
    data, _ = mux(units)
    assert VIDEOCODECID_HEVC == 0x68766331
    at = data.find(b"videocodecid") + len(b"videocodecid")
    assert data[at] == 0 and struct.unpack(">d", data[at + 1 : at + 9])[0] == VIDEOCODECID_HEVC
    video = [(ts, body) for kind, ts, body in flv_tags(data) if kind == TagType.VIDEO]
    first, config = video[0][1][0], video[0][1][5:]
    assert first == EX_HEADER | 0x10 | PACKET_SEQUENCE_START and video[0][1][1:5] == b"hvc1"
    vps, sps, pps = parameter_sets(units[0])
    assert config == hevc.hevc_decoder_configuration(vps, sps, pps)
    pictures = video[1:]
    assert len(pictures) == len(units)
    for (_, body), au in zip(pictures, units):
        assert body[0] & 0x8F == EX_HEADER | PACKET_CODED_FRAMES_X and body[1:5] == b"hvc1"
        assert (body[0] >> 4) & 7 == (1 if au.keyframe else 2)
        nals, at = [], 5
        while at < len(body):
            n = int.from_bytes(body[at : at + 4], "big")
            nals.append(body[at + 4 : at + 4 + n])
            at += 4 + n
        assert at == len(body)
        assert nals == [n for n in split_annexb(au.data) if hevc.nal_type(n) < 32]


@pytest.mark.parametrize(
    ("pix_fmt", "chroma", "depth"),
    [("yuv420p", 1, 8), ("yuv422p10le", 2, 10), ("yuv444p12le", 3, 12), ("gray", 0, 8)],
)
def test_configuration_record_is_what_ffmpeg_writes(pix_fmt: str, chroma: int, depth: int) -> None:
    """The HEVCDecoderConfigurationRecord equals, byte for byte, the hvcC box FFmpeg's MP4
    muxer writes for the same stream: profile, tier, level, compatibility and constraint
    flags, chroma format and bit depths, layers, the parameter set arrays."""
    units = hevc_clip(frames=10, gop=10, pix_fmt=pix_fmt)
    ours = hevc.hevc_decoder_configuration(*parameter_sets(units[0]))
    theirs = ffmpeg_hvcc(units)
    parsed = hevc.HEVC_DECODER_CONFIGURATION.parse(ours)
    assert parsed.ptl.chroma_format_idc == chroma
    assert parsed.ptl.bit_depth_luma_minus8 == parsed.ptl.bit_depth_chroma_minus8 == depth - 8
    assert ours == theirs, (parsed, hevc.HEVC_DECODER_CONFIGURATION.parse(theirs))


def test_h265_10_bit_422_decodes_from_the_flv() -> None:
    """A 10-bit 4:2:2 H.265 stream decodes from the FLV as FFmpeg decodes its Annex B."""
    units = hevc_clip(frames=20, gop=10, pix_fmt="yuv422p10le")
    got = decode_flv(mux(units)[0])
    assert got.errors == 0 and got.pictures == reference_hevc(units)


# -- the SPS, bit by bit --------------------------------------------------------------------


def _bits(data: bytes) -> str:
    return "".join(f"{b:08b}" for b in data)


def _escape(rbsp: bytes) -> bytes:
    out = bytearray()
    zeros = 0
    for b in rbsp:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def with_sub_layers(sps: bytes, minus1: int, tier: int, level: int) -> bytes:
    """``sps`` rewritten to have ``minus1`` + 1 sub-layers (each with its own profile and
    level, all bits set so that they cannot pass for the general ones), the general tier
    and level given, and emulation prevention where the new bits need it."""
    bits = _bits(hevc.unescape(sps[2:]))
    head, ptl, rest = bits[:8], bits[8:104], bits[104:]
    head = head[:4] + f"{minus1:03b}" + head[7]
    ptl = ptl[:2] + str(tier) + ptl[3:88] + f"{level:08b}"
    sub = "11" * minus1 + "00" * (8 - minus1) + ("1" * 88 + "1" * 8) * minus1
    body = head + ptl + sub + rest
    body += "0" * (-len(body) % 8)
    rbsp = int(body, 2).to_bytes(len(body) // 8, "big")
    return sps[:2] + _escape(rbsp)


def test_sps_read_through_sub_layers_and_emulation_prevention() -> None:
    """An SPS with 3 sub-layers (their profile and level skipped over) and emulation
    prevention bytes gives the general profile, tier and level and the picture format
    that follow them."""
    vps, sps, _ = parameter_sets(hevc_clip(frames=10, gop=10, width=352, height=288)[0])
    plain = hevc.parse_sps(sps[0])
    assert b"\x00\x00\x03" in sps[0]  # x265's SPS has them: the reader must remove them
    assert (plain.width, plain.height, plain.chroma_format_idc, plain.bit_depth_luma) == (352, 288, 1, 8)
    layered = hevc.parse_sps(with_sub_layers(sps[0], 2, 1, 123))
    assert layered.max_sub_layers == 3 and layered.tier == 1 and layered.level_idc == 123
    assert (layered.profile_idc, layered.compatibility, layered.constraints) == (
        plain.profile_idc, plain.compatibility, plain.constraints)  # fmt: skip
    assert (layered.width, layered.height, layered.chroma_format_idc) == (352, 288, 1)
    assert (layered.bit_depth_luma, layered.bit_depth_chroma) == (8, 8)
    record = hevc.HEVC_DECODER_CONFIGURATION.parse(
        hevc.hevc_decoder_configuration(vps, [with_sub_layers(sps[0], 2, 1, 123)], [b"\x44\x01"])
    )
    assert record.ptl.num_temporal_layers == 3 and record.ptl.level_idc == 123
    with pytest.raises(ValueError, match="early"):
        hevc.parse_sps(sps[0][:12])


def test_unescape_removes_only_emulation_prevention() -> None:
    """00 00 03 loses its 03; other 03 bytes and 00 00 00 stay."""
    assert hevc.unescape(b"\x00\x00\x03\x01\x03\x00\x00\x03\x03") == b"\x00\x00\x01\x03\x00\x00\x03"
    assert hevc.unescape(b"\x01\x03\x00\x03") == b"\x01\x03\x00\x03"


# -- a stream that changes -------------------------------------------------------------------


def test_changed_parameter_sets_send_a_new_sequence_start() -> None:
    """A camera changing resolution mid-stream: a second SequenceStart, and FFmpeg decodes
    both sizes as HEVC."""
    small = hevc_clip(frames=20, gop=10)
    large = hevc_clip(frames=20, gop=10, width=192, height=160)
    m = FlvMuxer(codec=H265)
    tags: list[FlvTag] = []
    for n, au in enumerate(small + large):
        tags += m.video(au.data, START + n * STEP, H265)
    assert [t.timestamp for t in tags if t.config] == [0, 20 * STEP]
    got = decode_flv(m.header() + b"".join(t.data for t in tags))
    assert got.sizes == ((160, 128),) * 20 + ((192, 160),) * 20
    assert got.pictures == reference_hevc(small) + reference_hevc(large)


def test_pictures_wait_for_an_irap_with_its_parameter_sets() -> None:
    """Muxing that starts mid-GOP skips pictures up to the first IRAP picture."""
    units = hevc_clip(frames=30, gop=10)
    m = FlvMuxer(codec=H265)
    out = [m.header()]
    for au in units[4:]:
        out += [t.data for t in m.video(au.data, START + au.index * STEP, H265)]
    assert m.counters.skipped == 6
    got = decode_flv(b"".join(out))
    assert len(got.pts) == 20 and got.pictures == reference_hevc(units)[10:]


def test_bad_h265_frames_are_skipped_in_words() -> None:
    """A frame without NAL units, and unusable parameter sets, are BadFrame; H.264 in an
    H.265 stream too; nothing is muxed from them."""
    m = FlvMuxer(codec=H265)
    with pytest.raises(BadFrame, match="no H.265 NAL unit"):
        m.video(b"garbage", 0, H265)
    with pytest.raises(BadFrame, match="unusable VPS/SPS/PPS"):
        m.video(b"\x00\x00\x01\x40\x01\x0c\x00\x00\x01\x42\x01\x01\x00\x00\x01\x44\x01", 0, H265)
    with pytest.raises(BadFrame, match="H.264 video in a stream that started in H.265"):
        m.video(b"\x00\x00\x01\x65\x88", 0, H264)
    assert m.counters.video_tags == 0 and m.counters.configs == 0
