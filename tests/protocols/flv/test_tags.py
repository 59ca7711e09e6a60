"""The FLV container: header flags, tags (fast path == construct reference), AMF0 and the
AVC configuration record."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsv6.protocols.flv.h264 import (
    AVC_DECODER_CONFIGURATION,
    avc_decoder_configuration,
    split_annexb,
    to_avcc,
)
from cmsv6.protocols.flv.tags import (
    FLV_HEADER,
    MAX_TAG_BODY,
    amf0,
    file_header,
    script_tag,
    tag,
    tag_reference,
)


@pytest.mark.parametrize("audio,byte", [(False, 0x01), (True, 0x05)])
def test_file_header_flags(audio: bool, byte: int) -> None:
    """The audio bit is set only when asked; PreviousTagSize0 follows the 9 bytes."""
    data = file_header(audio=audio, video=True)
    assert data == b"FLV\x01" + bytes((byte,)) + b"\x00\x00\x00\x09" + b"\x00" * 4
    assert FLV_HEADER.parse(data[:9]).flags.audio is audio


@given(st.sampled_from([8, 9, 18]), st.integers(0, (1 << 40)), st.binary(max_size=300))
@settings(max_examples=300)
def test_fast_tag_equals_reference(kind: int, ts: int, body: bytes) -> None:
    """The hand-written tag writer writes the reference's bytes, 32-bit time included."""
    assert tag(kind, ts, body) == tag_reference(kind, ts, body)


def test_tag_layout() -> None:
    """Timestamp's high byte goes in the extension byte; the tag ends with its size."""
    assert tag(9, 0x12345678, b"ab").hex() == "09000002" "345678" "12" "000000" "6162" "0000000d"


def test_tag_body_is_bounded() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        tag(9, 0, bytes(MAX_TAG_BODY + 1))


def test_amf0_metadata() -> None:
    """onMetaData as an ECMA array of numbers, booleans and strings."""
    assert amf0(True) == b"\x01\x01"
    assert amf0(7) == b"\x00\x40\x1c" + bytes(6)
    assert amf0("ab") == b"\x02\x00\x02ab"
    assert amf0({"a": False}) == b"\x08\x00\x00\x00\x01" b"\x00\x01a" b"\x01\x00" b"\x00\x00\x09"
    data = script_tag("onMetaData", {"hasAudio": False})
    assert data[0] == 18 and b"onMetaData" in data
    with pytest.raises(TypeError):
        amf0([1])


def test_annexb_split() -> None:
    """3- and 4-byte start codes, trailing zeros and leading junk."""
    data = b"junk\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x00\x00\x00\x00\x01\x65\x88\x00"
    assert split_annexb(data) == [b"\x67\x42", b"\x68\xce", b"\x65\x88"]
    assert split_annexb(b"no start code") == []
    assert to_avcc([b"\x65\x88"]) == b"\x00\x00\x00\x02\x65\x88"


def test_avc_configuration_record() -> None:
    """Profile and level from the SPS; each set length-prefixed; parses back."""
    sps, pps = b"\x67\x64\x00\x1f\xac", b"\x68\xee\x3c\x80"
    data = avc_decoder_configuration([sps], [pps])
    assert data.hex() == "0164001f" "ff" "e1" "0005" + sps.hex() + "01" "0004" + pps.hex()
    parsed = AVC_DECODER_CONFIGURATION.parse(data)
    assert (parsed.profile, parsed.level, list(parsed.sps), list(parsed.pps)) == (100, 31, [sps], [pps])
    with pytest.raises(ValueError):
        avc_decoder_configuration([], [pps])
    with pytest.raises(ValueError):
        avc_decoder_configuration([b"\x67"], [pps])
