"""H.264 (ISO/IEC 14496-10) as far as FLV needs it: NAL units out of an Annex B byte
stream, and the AVC decoder configuration record (ISO/IEC 14496-15, 5.2.4.1) from SPS/PPS.
"""

from __future__ import annotations

from collections.abc import Sequence

from construct import (
    Array,
    BitsInteger,
    BitStruct,
    Const,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Prefixed,
    PrefixedArray,
    Rebuild,
    Struct,
    this,
)

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9
#: NAL unit types that carry a picture (coded slices).
VCL = range(1, 6)
#: The most parameter sets of each kind the record can hold (5 bits for SPS).
MAX_SPS = 31
MAX_PPS = 255


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B stream (start codes ``00 00 01`` / ``00 00 00 01``),
    without their start codes and the zero bytes before the next one. Bytes before the
    first start code are not a NAL unit and are left out; so are empty units."""
    out: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        # trailing_zero_8bits belong to no NAL unit (a unit's last byte is never 0)
        nal = (data[begin:] if nxt < 0 else data[begin:nxt]).rstrip(b"\x00")
        if nal:
            out.append(nal)
        start = nxt
    return out


#: AVCDecoderConfigurationRecord, the body of FLV's AVC sequence header (4-byte NAL
#: lengths). Build with ``dict(profile=.., compatibility=.., level=.., sps=[..], pps=[..])``.
AVC_DECODER_CONFIGURATION = Struct(
    "version" / Const(1, Int8ub),
    "profile" / Int8ub,
    "compatibility" / Int8ub,
    "level" / Int8ub,
    "lengths"
    / BitStruct("reserved" / Const(0x3F, BitsInteger(6)), "size_minus_one" / Const(3, BitsInteger(2))),
    "sps_header"
    / BitStruct(
        "reserved" / Const(0x7, BitsInteger(3)),
        "count" / Rebuild(BitsInteger(5), lambda ctx: len(ctx._.sps)),
    ),
    "sps" / Array(this.sps_header.count, Prefixed(Int16ub, GreedyBytes)),
    "pps" / PrefixedArray(Int8ub, Prefixed(Int16ub, GreedyBytes)),
)


def avc_decoder_configuration(sps: Sequence[bytes], pps: Sequence[bytes]) -> bytes:
    """The configuration record for these parameter sets (profile and level from the
    first SPS). Raises ValueError for a set that cannot be described."""
    if not sps or not pps:
        raise ValueError("an AVC configuration needs at least one SPS and one PPS")
    if len(sps) > MAX_SPS or len(pps) > MAX_PPS:
        raise ValueError(f"{len(sps)} SPS and {len(pps)} PPS are more than a record holds")
    if len(sps[0]) < 4:
        raise ValueError(f"SPS of {len(sps[0])} bytes has no profile and level")
    if any(len(x) > 0xFFFF for x in (*sps, *pps)):
        raise ValueError("a parameter set is longer than 65535 bytes")
    return AVC_DECODER_CONFIGURATION.build(  # type: ignore[no-any-return]
        dict(
            profile=sps[0][1],
            compatibility=sps[0][2],
            level=sps[0][3],
            lengths={},
            sps_header={},
            sps=list(sps),
            pps=list(pps),
        )
    )


def to_avcc(nals: Sequence[bytes]) -> bytes:
    """NAL units with 4-byte big-endian length prefixes (FLV's NALU tag body)."""
    return b"".join(len(n).to_bytes(4, "big") + n for n in nals)
