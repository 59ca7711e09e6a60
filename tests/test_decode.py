"""``cmsv6 decode``'s contract, run as a user runs it (the console script): one JSON object
out for every line in, in the documented shape (README.rst, Decoding frames), over every
frame of the corpus; and every decoded body of the corpus has a JSON form."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cmsv6.decode import INNER_FLAG
from cmsv6.protocols.jt808.codec import decode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.jsonable import jsonable
from tests.support.corpus import records

CMSV6 = str(Path(sys.executable).with_name("cmsv6"))
FRAMES = [r for r in records() if r["kind"] in ("frame", "frame_unflagged")]
MESSAGE_KEYS = {"msg_id", "version", "phone", "serial", "checksum_ok", "subpackage", "body"}
#: Keys a message object may carry beyond the documented ones, each only when it says something.
EXTRA_KEYS = {"protocol_version", "encryption", "length_ok", "odd"}


def decode(lines: list[str]) -> tuple[int, list[str]]:
    r = subprocess.run([CMSV6, "decode"], input="".join(x + "\n" for x in lines),
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.stderr == "", r.stderr
    return r.returncode, r.stdout.splitlines()


def check_shape(obj: dict[str, Any]) -> None:
    """The documented shape: a message, or an error with the hex it is about."""
    if "error" in obj:
        assert isinstance(obj["error"], str) and obj["error"]
        assert isinstance(obj["hex"], str)
        for piece in obj.get("pieces", []):
            check_shape(piece)
        return
    assert MESSAGE_KEYS <= set(obj) <= MESSAGE_KEYS | EXTRA_KEYS, set(obj)
    assert obj["msg_id"].startswith("0x") and len(obj["msg_id"]) == 6
    assert obj["version"] in (2013, 2019)
    assert isinstance(obj["phone"], str) and isinstance(obj["serial"], int)
    assert isinstance(obj["checksum_ok"], bool)
    assert obj["subpackage"] is None or set(obj["subpackage"]) == {"total", "index"}
    assert isinstance(obj["body"], dict)


def test_every_corpus_frame_gives_one_line() -> None:
    """Every frame of the corpus, one per line, gives exactly one JSON object per line, in
    order (the header's id, phone and serial are the frame's), with the documented shape."""
    code, out = decode([r["hex"] for r in FRAMES])
    assert len(out) == len(FRAMES)
    errors = 0
    for r, line in zip(FRAMES, out):
        obj = json.loads(line)
        check_shape(obj)
        errors += "error" in obj
        check = r.get("check") or {}
        # (our structural analysis reads a unit that does not escape as it sent it)
        plain = not check.get("inner_7e") and "no_escaping_by_device" not in r.get("flags", ())
        if "msg_id" in obj and "msg_id" in check and plain:
            assert obj["msg_id"] == check["msg_id"].lower(), r["id"]
            assert obj["serial"] == check["serial"], r["id"]
    assert code == (1 if errors else 0)


def test_unescaped_flag_inside_a_frame_is_one_object() -> None:
    """A unit that leaves 0x7e unescaped inside its frame still gives one object per line:
    the whole frame, saying what was odd, when its check code and length then agree, else
    one error holding each piece."""
    odd = [r for r in FRAMES if (r.get("check") or {}).get("inner_7e")]
    assert odd
    code, out = decode([r["hex"] for r in odd])
    assert len(out) == len(odd)
    objs = [json.loads(line) for line in out]
    whole = [o for o in objs if INNER_FLAG in o.get("odd", [])]
    assert whole and all(o["checksum_ok"] and "error" not in o for o in whole)
    for o in objs:
        assert o in whole or len(o["pieces"]) > 1
    assert code == (0 if len(whole) == len(objs) else 1)


def test_bad_and_blank_lines() -> None:
    """Text that is not hex, a blank line and garbage each give one error object with the
    hex it is about, and the exit status is 1; the good line between them still decodes."""
    good = FRAMES[0]["hex"]
    code, out = decode(["zz-not-hex", "", good, "7e0102"])
    assert code == 1 and len(out) == 4
    objs = [json.loads(line) for line in out]
    assert "not hex" in objs[0]["error"]
    assert objs[1] == {"error": "empty line", "hex": ""}
    assert "error" not in objs[2]
    assert "error" in objs[3]


BODIES = [
    r for r in records()
    if r["kind"] == "body" and str(r.get("msg_id", "")).startswith("0x")
]  # fmt: skip


@pytest.mark.parametrize("r", BODIES, ids=[r["id"] for r in BODIES])
def test_every_decoded_body_has_a_json_form(r: dict[str, Any]) -> None:
    """Every body of the corpus that decodes serializes (dates, times, bytes, enums,
    nested items) without a fallback."""
    version = 2019 if r.get("version") == "2019" else 2013
    try:
        body = decode_body(int(r["msg_id"], 16), bytes.fromhex(r["hex"]), version)
    except CodecError:
        pytest.skip("the body does not decode (the conformance tests say why)")
    json.dumps(jsonable(body), allow_nan=False)
