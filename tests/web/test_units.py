"""The pieces without sockets: the login limiter on a fake clock, password hashes, command
encoding, time arguments."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import datetime, timezone

import pytest
from twisted.internet import task

from cmsv6.passwords import N, hash_password, needs_rehash, verify_password
from cmsv6.protocols.jt808.codec import decode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.jsonable import FieldError, body_from_json, jsonable
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.params import ParametersResponse
from cmsv6.protocols.jt808.model import RawBody
from cmsv6.web.api import parse_time
from cmsv6.web.auth import LoginLimiter, hash_token
from cmsv6.web.commands import BadCommand, encode_command
from cmsv6.web.routing import ApiError, Route
from tests.support.corpus import decode_record, jt808


def test_limiter_pair_backs_off_then_unlocks() -> None:
    """Five failures of a name from one address make the next attempt from there wait 1 s,
    then 2, 4... up to the lockout; the name from another address need not wait."""
    clock = task.Clock()
    limiter = LoginLimiter(clock, max_failures=5, window=300, lockout=60)
    for _ in range(4):
        limiter.failed("a", "10.0.0.1")
    assert limiter.retry_after("a", "10.0.0.1") == 0
    limiter.failed("a", "10.0.0.1")
    assert limiter.retry_after("a", "10.0.0.1") == 1
    assert limiter.retry_after("a", "10.0.0.2") == 0
    assert limiter.retry_after("b", "10.0.0.1") == 0
    waits = []
    for _ in range(8):
        clock.advance(limiter.retry_after("a", "10.0.0.1"))
        limiter.failed("a", "10.0.0.1")
        waits.append(limiter.retry_after("a", "10.0.0.1"))
    assert waits == [2, 4, 8, 16, 32, 60, 60, 60]
    clock.advance(60)
    assert limiter.retry_after("a", "10.0.0.1") == 0


def test_limiter_failures_expire_with_window() -> None:
    """A pair's failures are forgotten a window after its last one."""
    clock = task.Clock()
    limiter = LoginLimiter(clock, max_failures=3, window=10, lockout=60)
    limiter.failed("a", "x")
    limiter.failed("a", "x")
    clock.advance(11)
    limiter.failed("a", "x")
    assert limiter.retry_after("a", "x") == 0


def test_limiter_name_cap_per_hour() -> None:
    """100 failures of a name in an hour, from any addresses, refuse the name everywhere
    for the rest of that hour; a success in between does not reset the count."""
    clock = task.Clock()
    limiter = LoginLimiter(clock, max_failures=5, name_failures=100)
    for i in range(99):
        limiter.failed("a", f"10.0.{i // 5}.{i % 5}")
        clock.advance(1)
    limiter.succeeded("a", "10.9.9.9")
    assert limiter.retry_after("a", "10.9.9.9") == 0 and not limiter.name_refused("a")
    limiter.failed("a", "10.9.9.8")
    assert limiter.name_refused("a")
    assert limiter.retry_after("a", "10.9.9.9") == 3600 - 99
    assert limiter.retry_after("b", "10.9.9.9") == 0
    clock.advance(3600 - 99)
    assert limiter.retry_after("a", "10.9.9.9") == 0 and not limiter.name_refused("a")


def test_limiter_success_clears_and_memory_is_bounded() -> None:
    """A success ends a pair's back-off; at most max_entries pairs and names are kept
    (the oldest go)."""
    clock = task.Clock()
    limiter = LoginLimiter(clock, max_failures=2, max_entries=100)
    limiter.failed("a", "x")
    limiter.succeeded("a", "x")
    limiter.failed("a", "x")
    assert limiter.retry_after("a", "x") == 0
    for i in range(1000):
        limiter.failed(f"n{i}", f"addr{i}")
    assert len(limiter) == 200
    limiter.failed("n999", "addr999")
    assert limiter.retry_after("n999", "addr999") > 0


def old_hash(password: str) -> str:
    """A hash made as before issue 9: scrypt with N=2^14."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    b64 = base64.b64encode
    return f"scrypt$16384$8$1${b64(salt).decode()}${b64(digest).decode()}"


def test_password_hashes_at_owasp_parameters_and_old_ones_verify() -> None:
    """New hashes use scrypt N=2^17, r=8, p=1 (OWASP); hashes made with N=2^14 still
    verify and are marked for rehashing."""
    new = hash_password("correct horse")
    assert new.startswith("scrypt$131072$8$1$") and N == 2**17
    assert verify_password("correct horse", new) and not needs_rehash(new)
    old = old_hash("correct horse")
    assert verify_password("correct horse", old) and not verify_password("wrong", old)
    assert needs_rehash(old)


def test_token_hash_is_sha256() -> None:
    """Tokens are stored as their 32-byte SHA-256."""
    assert hash_token("abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


@pytest.mark.parametrize(
    ("command", "msg_id"),
    [
        ({"type": "text", "text": "hi"}, 0x8300),
        ({"type": "query_parameters"}, 0x8104),
        ({"type": "query_parameters", "ids": [1]}, 0x8106),
        ({"type": "set_parameters", "params": {"1": 30}}, 0x8103),
        ({"type": "query_position"}, 0x8201),
        ({"type": "take_photo", "channel": 1}, 0x8801),
        ({"type": "terminal_control", "command": 4}, 0x8105),
    ],
)
def test_commands_encode_and_decode_back(command: dict, msg_id: int) -> None:  # type: ignore[type-arg]
    """Each command kind becomes its message, and the body decodes back to the fields."""
    encoded = encode_command(command, 2013)
    assert encoded.msg_id == msg_id
    body = decode_body(msg_id, encoded.body, 2013)
    for name, value in encoded.fields.items():
        got = getattr(body, name)
        if name == "params":
            assert tuple(map(tuple, value)) == got
        elif isinstance(value, list):
            assert tuple(value) == got
        else:
            assert got == value


def test_text_2019_carries_text_type() -> None:
    """A 2019 text message has a text type (1 unless given); 2013 has none."""
    assert decode_body(0x8300, encode_command({"type": "text", "text": "x"}, 2019).body,
                       2019).text_type == 1
    assert decode_body(0x8300, encode_command({"type": "text", "text": "x"}, 2013).body,
                       2013).text_type is None


@pytest.mark.parametrize(
    "command",
    [{"type": 5}, {"type": "text", "text": ""}, {"type": "query_parameters", "ids": []},
     {"type": "take_photo", "channel": True}, {"type": "set_parameters", "params": {"1": None}}],
)
def test_bad_commands_refused(command: dict) -> None:  # type: ignore[type-arg]
    """Commands that are not one of the kinds, or have bad fields, raise BadCommand."""
    with pytest.raises(BadCommand):
        encode_command(command, 2013)


def test_parse_time_forms() -> None:
    """Times with Z, an offset, an offset whose "+" became a space, or none (UTC) parse;
    other text is a 400."""
    want = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
    for text in ("2026-11-25T02:00:00Z", "2026-11-25T10:00:00+08:00",
                 "2026-11-25T10:00:00 08:00", "2026-11-25T02:00:00"):
        assert parse_time(text, "from") == want, text
    with pytest.raises(ApiError) as e:
        parse_time("now", "from")
    assert e.value.status == 400


def test_route_patterns() -> None:
    """Route templates match whole paths and capture their parameters."""
    pattern = Route("GET", "/api/v1/devices/{phone}/positions", lambda r: None).pattern  # type: ignore[arg-type,return-value]
    m = pattern.match("/api/v1/devices/0138/positions")
    assert m is not None and m.groupdict() == {"phone": "0138"}
    assert pattern.match("/api/v1/devices/a/b/positions") is None
    assert pattern.match("/api/v1/devices/0138/positions/x") is None


def test_fields_from_json_total_over_the_corpus() -> None:
    """Whatever JSON ``cmsv6 decode`` prints for a corpus body, reading it back as that
    message's fields gives a body of its class or a FieldError in words, never another
    exception (a traceback for ``cmsv6 send``, a 500 for the API)."""
    taken = 0
    for r in jt808():
        try:
            body, _, _ = decode_record(r)
        except CodecError:
            continue
        if isinstance(body, RawBody):
            continue
        fields = json.loads(json.dumps(jsonable(body)))
        try:
            back = body_from_json(type(body).MSG_ID, fields)
        except FieldError as e:
            assert str(e), r["source"]
            continue
        assert type(back) is type(body), r["source"]
        taken += 1 if back == body else 0
    assert taken > 0


def test_ids_are_hex_unless_asked_otherwise() -> None:
    """``jsonable`` (the Open API, ``cmsv6 decode`` and ``cmsv6 send``) writes message and
    parameter ids as "0x...." strings; ``ids=False`` keeps the numbers."""
    reply = TerminalResponse(1, 0x8103, 0)
    assert jsonable(reply)["reply_id"] == "0x8103"
    assert jsonable(reply, ids=False)["reply_id"] == 0x8103
    table = ParametersResponse(2, {0x0001: 30, 0x0013: "h"})
    assert jsonable(table)["params"] == [["0x0001", 30], ["0x0013", "h"]]
    assert jsonable(table, ids=False)["params"] == [[1, 30], [0x13, "h"]]
