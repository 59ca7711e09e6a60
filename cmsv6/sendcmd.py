"""``cmsv6 send``: a platform message to an online device, through a gateway's AMP endpoint."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from twisted.internet import defer, endpoints, task
from twisted.protocols import amp

from cmsv6.protocols.jt808.codec import decode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.jsonable import jsonable
from cmsv6.protocols.jt808.model import MESSAGES
from cmsv6.rpc.commands import SendMessage


def body_bytes(msg_id: int, json_text: str | None, hex_text: str | None, version: int) -> bytes:
    if hex_text is not None:
        return bytes.fromhex(hex_text)
    cls = MESSAGES.get(msg_id)
    if cls is None:
        raise ValueError(f"0x{msg_id:04x} has no format: give the body with --hex")
    fields = json.loads(json_text) if json_text else {}
    return cls.CODEC.build(fields, version=version)  # type: ignore[attr-defined,no-any-return]


def send(args: argparse.Namespace) -> int:
    try:
        msg_id = int(args.msg_id, 0)
        body = body_bytes(msg_id, args.json, args.hex, args.version)
    except (ValueError, CodecError, TypeError, KeyError) as e:
        print(f"cmsv6: {e}", file=sys.stderr)
        return 2

    @defer.inlineCallbacks
    def run(reactor: Any) -> Any:
        endpoint = endpoints.clientFromString(reactor, args.gateway)
        proto = yield endpoints.connectProtocol(endpoint, amp.AMP())
        try:
            reply = yield proto.callRemote(
                SendMessage, phone=args.phone, msg_id=msg_id, body=body, timeout=args.timeout
            )
        finally:
            proto.transport.loseConnection()
        try:
            decoded = jsonable(decode_body(reply["msg_id"], reply["body"], reply["version"]))
        except CodecError:
            decoded = reply["body"].hex()
        print(json.dumps({"msg_id": f"0x{reply['msg_id']:04x}", "body": decoded}, ensure_ascii=False))

    def failed(failure: Any) -> None:
        print(f"cmsv6: {failure.getErrorMessage()}", file=sys.stderr)
        raise SystemExit(1)

    def main(reactor: Any) -> Any:
        return run(reactor).addErrback(failed)

    task.react(main)  # exits the process with main's outcome
    return 0
