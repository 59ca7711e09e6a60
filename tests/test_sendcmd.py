"""``cmsv6 send``'s own logic: the bodies it asks the gateway to choose from, and a reply
decoded once, its bytes kept when it does not decode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.jsonable import FieldError
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.sendcmd import bodies, decoded_reply

CMSV6 = str(Path(sys.executable).with_name("cmsv6"))


def test_json_body_for_both_versions() -> None:
    """A body that encodes in both versions goes as ``body`` (2013) and ``body_2019``."""
    out = bodies(0x8300, '{"flag": 8, "text": "hi", "text_type": 2}', None)
    assert decode_body(0x8300, out["body"], 2013).text == "hi"
    assert decode_body(0x8300, out["body_2019"], 2019).text_type == 2


def test_json_body_for_one_version_and_hex() -> None:
    """A body that fits one version only, or hex, is one body for every version."""
    assert set(bodies(0x8300, '{"flag": 8, "text": "hi"}', None)) == {"body"}
    assert bodies(0x8300, None, "0801") == {"body": b"\x08\x01"}


def test_a_field_only_one_version_has_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """A body missing a field that only 2019 has says so in words, not in construct's."""
    bodies(0x8300, '{"flag": 8, "text": "hi"}', None)
    err = capsys.readouterr().err
    assert "0x8300 in 2019 also needs text_type" in err
    assert "struct" not in err


def test_reply_decoded_or_kept() -> None:
    """A reply is decoded from its bytes; one that does not decode keeps them, as an error."""
    body = encode_body(TerminalResponse(3, 0x8300, 0))
    decoded, ok = decoded_reply({"msg_id": 0x0001, "version": 2013, "body": body})
    assert ok and decoded == {"reply_serial": 3, "reply_id": "0x8300", "result": 0}
    decoded, ok = decoded_reply({"msg_id": 0x0001, "version": 2013, "body": b"\x00"})
    assert not ok and decoded["hex"] == "00" and decoded["error"]


def test_parameter_table_as_pairs_or_object() -> None:
    """0x8103 params as [id, value] pairs (ids as numbers or "0x" strings) or as an object
    encode to the same table, in both versions."""
    for text in ('{"params": [[1, 30], ["0x0013", "h:1"]]}', '{"params": {"0x0001": 30, "19": "h:1"}}'):
        out = bodies(0x8103, text, None)
        for body, version in ((out["body"], 2013), (out["body_2019"], 2019)):
            assert decode_body(0x8103, body, version).params == ((1, 30), (0x13, "h:1")), text


@pytest.mark.parametrize(
    ("msg_id", "text", "words"),
    [
        (0x8300, '{"flag": 8}', "0x8300 needs text (a string)"),
        (0x8300, '{"flag": 8, "text": "hi", "colour": 1}', "0x8300 has no field 'colour'"),
        (0x8300, '{"flag": 300, "text": "hi"}', "0x8300 flag is a BYTE: 0..255, got 300"),
        (0x8300, '{"flag": "eight", "text": "hi"}', "0x8300 flag must be an integer"),
        (0x8103, '{"params": [[1, "abc"]]}',
         'parameter 0x0001 (heartbeat interval) is a DWORD: 0..4294967295, got "abc"'),
        (0x8103, '{"params": {"0x0001": 1099511627776}}',
         "parameter 0x0001 (heartbeat interval) is a DWORD: 0..4294967295, got 1099511627776"),
        (0x8103, '{"params": {"0x0013": 5}}', "parameter 0x0013 (main server address) is a string"),
        (0x8103, '{"params": {"0xF001": 5}}', "parameter 0xf001 has no known type"),
        (0x8103, '{"params": [[1]]}', "[id, value] pairs"),
        (0x8103, '{"params": {"0x0075": {"osd": 1}}}',
         "parameter 0x0075 (audio/video parameters) needs live_encode_mode"),
        (0x8300, "[1, 2]", "0x8300 must be an object of its fields (flag, text, text_type)"),
        (0x8300, '{"flag": 8', "--json is not JSON"),
        (0x1234, "{}", "0x1234 has no format here"),
    ],
)
def test_bad_json_said_in_words(msg_id: int, text: str, words: str) -> None:
    """JSON that is not the message's fields is a FieldError naming what is missing or
    wrong (never a KeyError or a construct error)."""
    with pytest.raises(FieldError) as e:
        bodies(msg_id, text, None)
    assert words in str(e.value)


def _send(*argv: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The real ``cmsv6 send`` to a gateway that is not there, with a key file that is not
    there: what it says before it would connect."""
    return subprocess.run(
        [CMSV6, "send", "13800000001", *argv, "--key", str(tmp_path / "no.key"),
         "--gateway", "tcp:127.0.0.1:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_send_refuses_bad_json_in_one_line(tmp_path: Path) -> None:
    """``cmsv6 send`` with the fields of the issue: a 0x8300 without its text, and a
    0x8103 parameter of the wrong type, exit 2 with one line naming the field (no
    traceback); the issue's 0x8103 pairs are accepted (it goes on to read the key)."""
    missing = _send("0x8300", "--json", '{"flag": 8}', tmp_path=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == "cmsv6: 0x8300 needs text (a string)\n"
    wrong = _send("0x8103", "--json", '{"params": [[1, "abc"]]}', tmp_path=tmp_path)
    assert wrong.returncode == 2
    assert wrong.stderr.startswith("cmsv6: parameter 0x0001 (heartbeat interval) is a DWORD")
    assert wrong.stderr.count("\n") == 1
    pairs = _send("0x8103", "--json", '{"params": [[1, 30]]}', tmp_path=tmp_path)
    assert pairs.returncode == 2 and "Traceback" not in pairs.stderr
    assert pairs.stderr.startswith("cmsv6: cannot read the cluster key"), pairs.stderr
