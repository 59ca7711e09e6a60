"""``cmsv6 send``'s own logic: the bodies it asks the gateway to choose from, and a reply
decoded once, its bytes kept when it does not decode."""

from __future__ import annotations

from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.sendcmd import bodies, decoded_reply


def test_json_body_for_both_versions() -> None:
    """A body that encodes in both versions goes as ``body`` (2013) and ``body_2019``."""
    out = bodies(0x8300, '{"flag": 8, "text": "hi", "text_type": 2}', None)
    assert decode_body(0x8300, out["body"], 2013).text == "hi"
    assert decode_body(0x8300, out["body_2019"], 2019).text_type == 2


def test_json_body_for_one_version_and_hex() -> None:
    """A body that fits one version only, or hex, is one body for every version."""
    assert set(bodies(0x8300, '{"flag": 8, "text": "hi"}', None)) == {"body"}
    assert bodies(0x8300, None, "0801") == {"body": b"\x08\x01"}


def test_reply_decoded_or_kept() -> None:
    """A reply is decoded from its bytes; one that does not decode keeps them, as an error."""
    body = encode_body(TerminalResponse(3, 0x8300, 0))
    decoded, ok = decoded_reply({"msg_id": 0x0001, "version": 2013, "body": body})
    assert ok and decoded == {"reply_serial": 3, "reply_id": 0x8300, "result": 0}
    decoded, ok = decoded_reply({"msg_id": 0x0001, "version": 2013, "body": b"\x00"})
    assert not ok and decoded["hex"] == "00" and decoded["error"]
