"""``cmsv6 send``: a platform message to an online device, through a gateway's AMP endpoint.

The link proves the gateway's id with ``--key`` (the gateway's key file, or the master
key with ``--id``) like any cluster link; the gateway records the command in
``commands`` and ``audit`` as sent by ``cmsv6 send`` (with the local user's name).

A ``--json`` body is encoded for both protocol versions, and the gateway sends the one of
the device's live session; fields that fit one version only (a 2019 0x8300 needs its
``text_type``) give that version's body, sent whatever the device speaks, with a warning.
The JSON is checked against the message's fields first: a missing field, one the message
does not have, or a value of the wrong type (a parameter's value that does not fit its
type) is a one-line error naming it, exit status 2, and nothing is sent. A ``--hex`` body
is sent as it is. The reply is decoded here, once; a reply that does not
decode is printed with its bytes (``{"hex", "error"}``) and the exit status is 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from typing import Any

from twisted.internet import defer, endpoints, task

from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.jsonable import FieldError, body_from_json, int_from_json, jsonable
from cmsv6.rpc import keys
from cmsv6.rpc.commands import SendMessage
from cmsv6.rpc.link import ClusterLink
from cmsv6.web.routing import loads_bounded


def body_bytes(msg_id: int, json_text: str | None, hex_text: str | None, version: int) -> bytes:
    """The body from ``--hex``, or from ``--json`` checked against the message's fields
    (``FieldError`` says what is missing or wrong, in words) and encoded for ``version``
    (``CodecError`` if it does not encode in it)."""
    if hex_text is not None:
        try:
            return bytes.fromhex(hex_text)
        except ValueError:
            raise FieldError("--hex must be hex digits (two per byte)") from None
    return encode_body(body_from_json(msg_id, fields_json(json_text)), version)


def fields_json(json_text: str | None) -> Any:
    """The JSON of ``--json`` (no body: no fields)."""
    if not json_text:
        return {}
    try:
        return loads_bounded(json_text.encode("utf-8", "surrogateescape"))
    except ValueError as e:
        raise FieldError(f"--json is not JSON: {e}") from None


def bodies(msg_id: int, json_text: str | None, hex_text: str | None) -> dict[str, bytes]:
    """The ``SendMessage`` body arguments: ``body`` (2013) and ``body_2019``, or one ``body``
    for every version when only one encodes (or the body is given as hex). FieldError if
    the JSON is not the message's fields; CodecError if they encode in neither version."""
    if hex_text is not None:
        return {"body": body_bytes(msg_id, None, hex_text, 2013)}
    body = body_from_json(msg_id, fields_json(json_text))
    built: dict[int, bytes] = {}
    errors: dict[int, CodecError] = {}
    for version in (2013, 2019):
        try:
            built[version] = encode_body(body, version)
        except CodecError as e:
            errors[version] = e
    if not built:
        raise errors[2013]
    if len(built) == 1:
        ((version, data),) = built.items()
        other = 2019 if version == 2013 else 2013
        print(f"cmsv6: {_why_not(msg_id, other, errors[other])}; the {version} body is sent"
              f" whatever the device's version", file=sys.stderr)
        return {"body": data}
    return {"body": built[2013], "body_2019": built[2019]}


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


#: construct's words for a field the layout needs and the JSON did not give.
_MISSING = re.compile(r"(\w+) struct '[^']*' error during building, given value None")


def _why_not(msg_id: int, version: int, error: CodecError) -> str:
    """Why the body does not encode for ``version``, in words: a field only that version
    has (0x8300's ``text_type`` in 2019) is named, anything else said as the codec says it."""
    text = _one_line(error)
    missing = _MISSING.search(text)
    if missing:
        return f"0x{msg_id:04x} in {version} also needs {missing.group(1)} (give it in --json)"
    return f"the body does not encode for {version} ({text})"


def decoded_reply(reply: dict[str, Any]) -> tuple[Any, bool]:
    """The reply's body as JSON, and whether it decoded."""
    try:
        return jsonable(decode_body(reply["msg_id"], reply["body"], reply["version"])), True
    except CodecError as e:
        return {"hex": reply["body"].hex(), "error": str(e)}, False


def send(args: argparse.Namespace) -> int:
    try:
        msg_id = int_from_json(args.msg_id, "the message id", 0, 0xFFFF)
        if args.json is not None and args.hex is not None:
            raise FieldError("give the body as --json or as --hex, not both")
        arguments = bodies(msg_id, args.json, args.hex)
    except (FieldError, CodecError) as e:
        print(f"cmsv6: {_one_line(e)}", file=sys.stderr)
        return 2
    try:
        credential = keys.load(args.key)
    except keys.KeyFileError as e:
        print(f"cmsv6: {e}", file=sys.stderr)
        return 2
    gateway_id = args.id or credential.server_id
    key = credential.key_for(gateway_id) if gateway_id else None
    if key is None:
        print("cmsv6: give the gateway's id (--id) with the master key, or the gateway's own"
              " key file", file=sys.stderr)  # fmt: skip
        return 2
    try:
        by = f"cmsv6 send ({getpass.getuser()})"
    except (OSError, KeyError):  # no name for this uid
        by = "cmsv6 send"

    @defer.inlineCallbacks
    def run(reactor: Any) -> Any:
        endpoint = endpoints.clientFromString(reactor, args.gateway)
        proto = yield endpoints.connectProtocol(endpoint, ClusterLink(clock=reactor))
        try:
            yield proto.authenticate(gateway_id, key)
            reply = yield proto.callRemote(
                SendMessage, phone=args.phone, msg_id=msg_id, timeout=args.timeout, by=by,
                **arguments,
            )
        finally:
            if proto.transport is not None:
                proto.transport.loseConnection()
        decoded, ok = decoded_reply(reply)
        print(json.dumps({"msg_id": f"0x{reply['msg_id']:04x}", "body": decoded}, ensure_ascii=False))
        if not ok:
            raise SystemExit(1)

    def failed(failure: Any) -> None:
        if failure.check(SystemExit):
            raise failure.value
        print(f"cmsv6: {failure.getErrorMessage()}", file=sys.stderr)
        raise SystemExit(1)

    def main(reactor: Any) -> Any:
        return run(reactor).addErrback(failed)

    task.react(main)  # exits the process with main's outcome
    return 0
