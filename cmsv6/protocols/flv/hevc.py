"""H.265 (ITU-T H.265 / ISO/IEC 23008-2) as far as enhanced FLV needs it: NAL unit types,
the few fields of the VPS and SPS the decoder configuration record repeats, and the
HEVC decoder configuration record itself (ISO/IEC 14496-15, 8.3.3.1).

An H.265 NAL unit starts with a two-byte header (type in bits 1-6 of the first byte); the
Annex B byte stream is cut as H.264's is (``h264.split_annexb``). Parameter set payloads
are RBSP behind emulation prevention bytes (``00 00 03``), removed before reading bits.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen
from construct import (
    BitsInteger,
    BitStruct,
    Const,
    Flag,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Prefixed,
    PrefixedArray,
    Struct,
)

NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34
NAL_AUD = 35
NAL_SEI_PREFIX = 39
NAL_SEI_SUFFIX = 40
#: Coded slices (VCL NAL unit types, reserved ones included).
VCL = range(0, 32)
#: Intra random access point pictures (BLA, IDR, CRA and the reserved IRAP types): where
#: decoding can start, FLV's keyframes.
IRAP = range(16, 24)
#: The most parameter sets of each kind a stream may have (H.265 7.4.3).
MAX_VPS = 16
MAX_SPS = 16
MAX_PPS = 64


def nal_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F


def unescape(nal: bytes) -> bytes:
    """The RBSP of a NAL unit: without emulation prevention bytes (the 03 of ``00 00 03``)."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


class _Bits:
    """Big-endian bit reader over an RBSP; ValueError past its end."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "big")
        self.size = 8 * len(data)
        self.at = 0

    def u(self, n: int) -> int:
        if self.at + n > self.size:
            raise ValueError(f"parameter set ends {self.at + n - self.size} bits early")
        self.at += n
        return (self.value >> (self.size - self.at)) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("an Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)


@frozen
class SpsInfo:
    """What the configuration record repeats of an SPS (general profile_tier_level and the
    picture format), and the picture size after the conformance window."""

    profile_space: int
    tier: int
    profile_idc: int
    compatibility: int  # general_profile_compatibility_flag[32], flag 0 the top bit
    constraints: int  # the 48 bits from general_progressive_source_flag on
    level_idc: int
    max_sub_layers: int  # sps_max_sub_layers_minus1 + 1
    temporal_id_nesting: bool
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int


def _profile_tier_level(r: _Bits, max_sub_layers_minus1: int) -> tuple[int, ...]:
    """profile_tier_level(1, maxNumSubLayersMinus1) (H.265 7.3.3): the general fields;
    the sub-layers' are read past."""
    space, tier, idc = r.u(2), r.u(1), r.u(5)
    compatibility = r.u(32)
    constraints = r.u(48)
    level = r.u(8)
    present = [(r.u(1), r.u(1)) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        r.u(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile, level_present in present:
        if profile:
            r.u(88)
        if level_present:
            r.u(8)
    return space, tier, idc, compatibility, constraints, level


def parse_sps(nal: bytes) -> SpsInfo:
    """The fields of an SPS NAL unit (with its header) the configuration record needs.
    Raises ValueError for one that is cut short or not an SPS."""
    if len(nal) < 3 or nal_type(nal) != NAL_SPS:
        raise ValueError("not an H.265 SPS")
    r = _Bits(unescape(nal[2:]))
    r.u(4)  # sps_video_parameter_set_id
    sub_layers_minus1 = r.u(3)
    if sub_layers_minus1 > 6:
        raise ValueError(f"sps_max_sub_layers_minus1 is {sub_layers_minus1}, at most 6")
    nesting = r.u(1)
    space, tier, idc, compatibility, constraints, level = _profile_tier_level(r, sub_layers_minus1)
    r.ue()  # sps_seq_parameter_set_id
    chroma = r.ue()
    if chroma > 3:
        raise ValueError(f"chroma_format_idc {chroma} is not 0-3")
    separate_planes = r.u(1) if chroma == 3 else 0
    width, height = r.ue(), r.ue()
    if r.u(1):  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        # SubWidthC/SubHeightC (table 6-1); ChromaArrayType 0 counts in luma samples
        sub_w, sub_h = (1, 1) if chroma in (0, 3) or separate_planes else (2, 2 if chroma == 1 else 1)
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    luma, chroma_depth = r.ue() + 8, r.ue() + 8
    if luma > 16 or chroma_depth > 16:
        raise ValueError(f"bit depths {luma}/{chroma_depth} are past 16")
    return SpsInfo(space, tier, idc, compatibility, constraints, level, sub_layers_minus1 + 1,
                   bool(nesting), chroma, luma, chroma_depth, width, height)  # fmt: skip


def vps_max_sub_layers(nal: bytes) -> int:
    """vps_max_sub_layers_minus1 + 1 of a VPS NAL unit (with its header)."""
    if len(nal) < 4 or nal_type(nal) != NAL_VPS:
        raise ValueError("not an H.265 VPS")
    return ((nal[3] >> 1) & 0x07) + 1


_ARRAY = Struct(
    "header"
    / BitStruct(
        "completeness" / Flag,
        "reserved" / Const(0, BitsInteger(1)),
        "nal_type" / BitsInteger(6),
    ),
    "nalus" / PrefixedArray(Int16ub, Prefixed(Int16ub, GreedyBytes)),
)

#: HEVCDecoderConfigurationRecord, the body of enhanced FLV's hvc1 SequenceStart (4-byte
#: NAL lengths).
HEVC_DECODER_CONFIGURATION = Struct(
    "version" / Const(1, Int8ub),
    "ptl"
    / BitStruct(
        "profile_space" / BitsInteger(2),
        "tier" / BitsInteger(1),
        "profile_idc" / BitsInteger(5),
        "compatibility" / BitsInteger(32),
        "constraints" / BitsInteger(48),
        "level_idc" / BitsInteger(8),
        "reserved1" / Const(0xF, BitsInteger(4)),
        "min_spatial_segmentation_idc" / BitsInteger(12),
        "reserved2" / Const(0x3F, BitsInteger(6)),
        "parallelism_type" / BitsInteger(2),
        "reserved3" / Const(0x3F, BitsInteger(6)),
        "chroma_format_idc" / BitsInteger(2),
        "reserved4" / Const(0x1F, BitsInteger(5)),
        "bit_depth_luma_minus8" / BitsInteger(3),
        "reserved5" / Const(0x1F, BitsInteger(5)),
        "bit_depth_chroma_minus8" / BitsInteger(3),
        "avg_frame_rate" / BitsInteger(16),
        "constant_frame_rate" / BitsInteger(2),
        "num_temporal_layers" / BitsInteger(3),
        "temporal_id_nested" / Flag,
        "length_size_minus_one" / Const(3, BitsInteger(2)),
    ),
    "arrays" / PrefixedArray(Int8ub, _ARRAY),
)

def hevc_decoder_configuration(vps: Sequence[bytes], sps: Sequence[bytes], pps: Sequence[bytes]) -> bytes:
    """The configuration record for these parameter sets (VPS, SPS and PPS arrays, each
    complete: the coded frames carry none). Profile, tier, level, constraints, chroma
    format and bit depths come from the first SPS. Raises ValueError for sets that cannot
    be described."""
    if not vps or not sps or not pps:
        raise ValueError("an HEVC configuration needs a VPS, an SPS and a PPS")
    if len(vps) > MAX_VPS or len(sps) > MAX_SPS or len(pps) > MAX_PPS:
        raise ValueError(f"{len(vps)} VPS, {len(sps)} SPS and {len(pps)} PPS are more than a stream has")
    if any(len(x) > 0xFFFF for x in (*vps, *sps, *pps)):
        raise ValueError("a parameter set is longer than 65535 bytes")
    info = parse_sps(sps[0])
    layers = max(info.max_sub_layers, vps_max_sub_layers(vps[0]))
    arrays = [
        dict(header=dict(completeness=True, nal_type=kind), nalus=list(sets))
        for kind, sets in ((NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps))
    ]
    return HEVC_DECODER_CONFIGURATION.build(  # type: ignore[no-any-return]
        dict(
            ptl=dict(
                profile_space=info.profile_space,
                tier=info.tier,
                profile_idc=info.profile_idc,
                compatibility=info.compatibility,
                constraints=info.constraints,
                level_idc=info.level_idc,
                # 0: no spatial segmentation promised (the VUI is not read), so no
                # parallelism type either (as FFmpeg's writer does without one)
                min_spatial_segmentation_idc=0,
                parallelism_type=0,
                chroma_format_idc=info.chroma_format_idc,
                bit_depth_luma_minus8=info.bit_depth_luma - 8,
                bit_depth_chroma_minus8=info.bit_depth_chroma - 8,
                avg_frame_rate=0,
                constant_frame_rate=0,
                num_temporal_layers=min(layers, 7),
                temporal_id_nested=info.temporal_id_nesting,
            ),
            arrays=arrays,
        )
    )
