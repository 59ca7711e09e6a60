"""The conformance corpus (tests/conformance/, copied from the project's shared corpus).

Records were mined from public peers' test suites; each keeps its ``source`` and
``commit``. See tests/conformance/README.md for the schema.

Below the readers are the checks the message groups' corpus tests share. Two styles of
``expect`` mapping are in use:

* by source (``check_record``): ``{(msg_id, owner): {flat key: accessor}}``, documented
  differences being strict xfails (``corpus_params``); tests/protocols/jt808/test_info.py,
  test_areas.py and test_recorder.py;
* by class (``check_corpus_record``): ``{class: {key segment: getter}}``, walked along
  each dotted key, documented differences asserted to still differ;
  tests/protocols/jt808/test_multimedia.py and test_safety.py.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest

from cmsv6.protocols.jt808.codec import decode, decode_body, encode, encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import build_frame, parse_frame
from cmsv6.protocols.jt808.model import MESSAGES, RawBody

HERE = Path(__file__).parent.parent / "conformance"
FILES = ("jt808_frames.jsonl", "encoder_cases.jsonl", "jt1078_packets.jsonl")


@lru_cache(maxsize=None)
def records(name: str | None = None) -> tuple[dict[str, Any], ...]:
    names = FILES if name is None else (name,)
    out = []
    for n in names:
        with open(HERE / n, encoding="utf-8") as f:
            out.extend(json.loads(line) for line in f if line.strip())
    return tuple(out)


def jt808(kinds: tuple[str, ...] = ("frame", "frame_unflagged")) -> Iterator[dict[str, Any]]:
    """JT/T 808 frame records (all files), de-duplicated by hex."""
    seen = set()
    for r in records():
        if r["kind"] in kinds and r["hex"] not in seen:
            seen.add(r["hex"])
            yield r


def frame_bytes(r: dict[str, Any]) -> bytes:
    return bytes.fromhex(r["hex"])


def body_version(r: dict[str, Any]) -> int:
    return 2019 if str(r.get("version")) == "2019" else 2013


# -- the records of some messages, decoded ------------------------------------------------


def msg_id_of(r: dict[str, Any]) -> int | None:
    try:
        return int(r.get("msg_id") or "", 16)
    except ValueError:
        return None


def corpus_records(ids: Iterable[int]) -> list[dict[str, Any]]:
    """The corpus frames and bodies of these message ids (every record, duplicates too,
    so that each source's assertions are checked)."""
    wanted = set(ids)
    kinds = ("frame", "frame_unflagged", "body")
    return [r for r in records() if r["kind"] in kinds and msg_id_of(r) in wanted]


def owner_of(r: dict[str, Any]) -> str:
    """The source project's owner (SmallChi, yezhihao, hylexus...), whose keys ``expect`` uses."""
    return str(r["source"].split("/")[0])


def frame_data(r: dict[str, Any]) -> bytes:
    """A frame record's bytes with their 0x7e flags (``frame_unflagged`` records have none)."""
    data = frame_bytes(r)
    return data if data.startswith(b"\x7e") else b"\x7e" + data + b"\x7e"


def record_body(r: dict[str, Any]) -> Any:
    """The decoded body of a frame or body record."""
    if r["kind"] == "body":
        return decode_body(msg_id_of(r), frame_bytes(r), body_version(r))  # type: ignore[arg-type]
    return decode(frame_data(r)).body


def decode_record(r: dict[str, Any]) -> tuple[Any, bytes, bytes]:
    """(body, the source bytes, our re-encoding of them) for a frame or body record."""
    if r["kind"] == "body":
        data = frame_bytes(r)
        version = body_version(r)
        body = decode_body(msg_id_of(r), data, version)  # type: ignore[arg-type]
        return body, data, encode_body(body, version)
    data = frame_data(r)
    message = decode(data)
    return message.body, data, encode(message.header, message.body)


def when(t: datetime | None) -> str | None:
    """A time as the sources write it (their ``T`` separator is normalised away)."""
    return None if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def is_literal(value: Any) -> bool:
    """False for the corpus's non-literal expressions (``cs:...``, ``java:...``, ``go:...``,
    and Go string concatenations mined as one string)."""
    if not isinstance(value, str):
        return True
    return value.split(":")[0] not in ("cs", "java", "go") and '" + "' not in value


# -- expect mapped by source: {(msg_id, owner): {key: accessor}} --------------------------

Expect = dict[tuple[int, str], dict[str, Callable[[Any], Any]]]


def check_record(r: dict[str, Any], expect: Expect) -> None:
    """Decode ``r``, re-encode it to its exact bytes and compare the values we map."""
    body, source, ours = decode_record(r)
    where = f"{r['id']} ({r['source']})"
    assert type(body) is MESSAGES[msg_id_of(r)], where  # type: ignore[index]
    assert ours.hex() == source.hex(), where
    for key, accessor in expect.get((msg_id_of(r), owner_of(r)), {}).items():  # type: ignore[arg-type]
        if key in r.get("expect", {}) and is_literal(r["expect"][key]):
            ours_ = accessor(body)
            if ours_ is None and r.get("mode") == "encode":
                # An encode case's expect is its input object, which may hold a value the
                # wire format leaves out (a time the area properties do not ask for).
                continue
            assert ours_ == r["expect"][key], f"{where}: {key}"


def unused_expect_keys(corpus: list[dict[str, Any]], expect: Expect) -> list[tuple[str, str, str]]:
    """The mapped keys no record asserts (a typo there would silently check nothing)."""
    used = {
        (msg_id_of(r), owner_of(r), key)
        for r in corpus
        for key, value in r.get("expect", {}).items()
        if is_literal(value)
    }
    return [
        (hex(m), owner, key)
        for (m, owner), keys in expect.items()
        for key in keys
        if (m, owner, key) not in used
    ]


def corpus_params(corpus: list[dict[str, Any]], known: dict[str, str]) -> list[Any]:
    """One pytest param per record, named by its id; a documented difference is a strict
    xfail, so it fails the day the record starts to pass (and the entry must go)."""
    return [
        pytest.param(
            r,
            id=r["id"],
            marks=[pytest.mark.xfail(reason=known[r["id"]], strict=True, raises=(AssertionError, CodecError))]
            if r["id"] in known
            else [],
        )
        for r in corpus
    ]


# -- expect mapped by class: {class: {key segment: getter}} -------------------------------

#: Source key (or key segment) → our value; None: known, not comparable.
Keys = dict[str, Callable[[Any], Any] | None]

#: Keys (path segments) of ``expect`` that are not about the body, or are the source's own
#: interpretation: the header (tests/protocols/jt808/test_conformance.py checks it), SmallChi's
#: sub-package arithmetic, traccar's position attributes, and a SmallChi test's own
#: pass-through content type.
IGNORED_KEYS = {
    "Header", "messageId", "properties", "protocolVersion", "clientId", "serialNo",
    "verified", "remainder", "quotient", "driverUniqueId", "fuelUsed", "dtcs", "tag1Mac",
    "deviceTemp", "JT808_0X8900_BodyBase", "jT808_0X8900_Test_BodiesImpl",
    "AlarmSignDetails", "StatusSignDetails", "ActiveSafetyType",
}  # fmt: skip

_DATE = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")
_SKIP = object()
_PART = re.compile(r"(.+?)(?:\[(\d+)\])?")


def same(getter: Callable[[Any], Any], *names: str) -> Keys:
    """One getter under each of the names the sources give the same value."""
    return dict.fromkeys(names, getter)


def flatten(expect: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts (and lists of dicts) of ``expect`` as dotted keys."""
    out: dict[str, Any] = {}
    for key, value in expect.items():
        path = prefix + key
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):
                out.update(flatten(v, f"{path}[{i}]."))
        else:
            out[path] = value
    return out


def resolve(body: Any, key: str, keys: dict[type, Keys]) -> Any:
    """Our value for a source's ``expect`` key, or _SKIP for keys that are not about the body.

    A key about the body that we cannot map fails the test, so a new record cannot go
    unchecked silently.
    """
    obj = body
    parts = key.split(".")
    if parts[0] == "Bodies":
        parts = parts[1:]
    i = 0
    while i < len(parts):
        m = _PART.fullmatch(parts[i])
        assert m, key
        name, index = m[1], m[2]
        if name in IGNORED_KEYS:
            return _SKIP
        if isinstance(obj, tuple) and name in ("first", "last"):
            obj = obj[0 if name == "first" else -1]
            i += 1
            continue
        table = keys.get(type(obj), {})
        dotted = ".".join(parts[i:])
        if dotted in table:  # a key whose own name has a dot
            name, i = dotted, len(parts) - 1
        assert name in table, f"{key}: no mapping for {name!r} of {type(obj).__name__}"
        getter = table[name]
        if getter is None:
            return _SKIP
        obj = getter(obj)
        if index is not None:
            obj = obj[int(index)]
        i += 1
    return obj


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def check_expect(r: dict[str, Any], body: Any, keys: dict[type, Keys]) -> int:
    """Compare the record's literal ``expect`` values with ours; return how many were."""
    checked = 0
    for key, want in flatten(r.get("expect") or {}).items():
        if not is_literal(want) or want is None:
            continue
        got = resolve(body, key, keys)
        if got is _SKIP:
            continue
        if isinstance(want, str) and _DATE.fullmatch(want):
            want = want.replace("T", " ")
        assert _plain(got) == want, f"{r['id']} {key}: {r['source']}"
        checked += 1
    return checked


def check_corpus_record(
    r: dict[str, Any],
    keys: dict[type, Keys],
    known_differences: dict[str, str],
    body_errors: dict[str, str],
) -> None:
    """The record decodes (a bad check code reported, not raised), re-encodes to its own
    bytes unless a known difference says why not, and agrees with what its source asserts."""
    where = f"{r['id']} ({r['source']})"
    if r["kind"] == "body":
        data = frame_bytes(r)
        version = body_version(r)
        msg_id = int(r["msg_id"], 16)
        if r["id"] in body_errors:
            with pytest.raises(CodecError):
                decode_body(msg_id, data, version)
            return
        body = decode_body(msg_id, data, version)
        assert isinstance(body, MESSAGES[msg_id]), where
        again = encode_body(body, version)
    else:
        flagged = frame_data(r)
        frame = parse_frame(flagged)
        check = r.get("check") or {}
        if r["id"] in body_errors:
            with pytest.raises(CodecError):
                decode(flagged)
            return
        message = decode(flagged)
        # A unit that does not escape sends a frame that is consistent as it came.
        unescaped = "no_escaping_by_device" in r.get("flags", ())
        assert message.checksum_ok == (unescaped or check.get("checksum_ok", True)), where
        body = message.body
        if message.header.packet is not None and message.header.packet.total > 1:
            # A sub-package piece: kept raw until the message is reassembled.
            assert body == RawBody(frame.body), where
            return
        assert isinstance(body, MESSAGES[message.header.msg_id]), where
        data = frame.body
        again = encode_body(body, message.header.version)
        if message.checksum_ok and r["id"] not in known_differences:
            assert encode(message.header, body) == build_frame(frame.header, frame.body), where
    if r["id"] in known_differences:
        assert again != data, f"{where}: no longer differs, drop it from KNOWN_DIFFERENCES"
    else:
        assert again == data, where
    check_expect(r, body, keys)
