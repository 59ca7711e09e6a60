"""``cmsv6 send``: a platform message to an online device, through a gateway's AMP endpoint.

The link proves the gateway's id with ``--key`` (the gateway's key file, or the master
key with ``--id``) like any cluster link; the gateway records the command in
``commands`` and ``audit`` as sent by ``cmsv6 send`` (with the local user's name).

A ``--json`` body is encoded for both protocol versions, and the gateway sends the one of
the device's live session; fields that fit one version only (a 2019 0x8300 needs its
``text_type``) give that version's body, sent whatever the device speaks, with a warning.
A ``--hex`` body is sent as it is. The reply is decoded here, once; a reply that does not
decode is printed with its bytes (``{"hex", "error"}``) and the exit status is 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from twisted.internet import defer, endpoints, task

from cmsv6.protocols.jt808.codec import decode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.jsonable import jsonable
from cmsv6.protocols.jt808.model import MESSAGES
from cmsv6.rpc import keys
from cmsv6.rpc.commands import SendMessage
from cmsv6.rpc.link import ClusterLink


def body_bytes(msg_id: int, json_text: str | None, hex_text: str | None, version: int) -> bytes:
    if hex_text is not None:
        return bytes.fromhex(hex_text)
    cls = MESSAGES.get(msg_id)
    if cls is None:
        raise ValueError(f"0x{msg_id:04x} has no format: give the body with --hex")
    fields = json.loads(json_text) if json_text else {}
    return cls.CODEC.build(fields, version=version)  # type: ignore[attr-defined,no-any-return]


def bodies(msg_id: int, json_text: str | None, hex_text: str | None) -> dict[str, bytes]:
    """The ``SendMessage`` body arguments: ``body`` (2013) and ``body_2019``, or one ``body``
    for every version when only one encodes (or the body is given as hex)."""
    if hex_text is not None:
        return {"body": body_bytes(msg_id, None, hex_text, 2013)}
    built: dict[int, bytes] = {}
    errors: dict[int, Exception] = {}
    for version in (2013, 2019):
        try:
            built[version] = body_bytes(msg_id, json_text, None, version)
        except (CodecError, TypeError, KeyError) as e:
            errors[version] = e
    if not built:
        raise errors[2013]
    if len(built) == 1:
        ((version, body),) = built.items()
        other = 2019 if version == 2013 else 2013
        print(f"cmsv6: the body does not encode for {other} ({errors[other]}); the {version}"
              " body is sent whatever the device's version", file=sys.stderr)
        return {"body": body}
    return {"body": built[2013], "body_2019": built[2019]}


def decoded_reply(reply: dict[str, Any]) -> tuple[Any, bool]:
    """The reply's body as JSON, and whether it decoded."""
    try:
        return jsonable(decode_body(reply["msg_id"], reply["body"], reply["version"])), True
    except CodecError as e:
        return {"hex": reply["body"].hex(), "error": str(e)}, False


def send(args: argparse.Namespace) -> int:
    try:
        msg_id = int(args.msg_id, 0)
        arguments = bodies(msg_id, args.json, args.hex)
    except (ValueError, CodecError, TypeError, KeyError) as e:
        print(f"cmsv6: {e}", file=sys.stderr)
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
