"""The gateway's AMP responders (``cluster`` endpoint, and its link to login): commands to
devices."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from cmsv6.plugins.gateway import gateway as gw
from cmsv6.rpc.commands import COMMON_ERRORS, BadRequest, SendMessage, Unavailable

_log = Logger()


class GatewayLocator(amp.CommandLocator):
    def __init__(self, gateway: gw.Gateway) -> None:
        self.gateway = gateway

    @SendMessage.responder
    def send_message(self, phone: str, msg_id: int, body: bytes, timeout: float | None = None,
                     body_2019: bytes | None = None) -> Any:  # fmt: skip
        if not 0x8000 <= msg_id <= 0xFFFF:
            raise BadRequest(f"0x{msg_id:04x} is not a platform message")
        d = defer.maybeDeferred(self.gateway.send_command, phone, msg_id, body,
                                timeout=timeout or 10.0, body_2019=body_2019)
        return d.addErrback(_declared, phone, msg_id)


def _declared(failure: Failure, phone: str, msg_id: int) -> Failure:
    """The gateway fails with the declared errors; anything else is a bug, logged, and
    answered as Unavailable (an undeclared error would drop the link)."""
    if failure.check(*COMMON_ERRORS):
        return failure
    _log.failure("0x{msg_id:04x} to {phone} failed", failure, msg_id=msg_id, phone=phone)
    return Failure(Unavailable(failure.getErrorMessage()))


class ClusterFactory(protocol.Factory):
    def __init__(self, gateway: gw.Gateway) -> None:
        self.gateway = gateway

    def buildProtocol(self, addr: object) -> amp.AMP:  # noqa: N802
        return amp.AMP(locator=GatewayLocator(self.gateway))
