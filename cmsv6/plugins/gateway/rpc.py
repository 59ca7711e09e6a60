"""The gateway's AMP responders (``cluster`` endpoint): commands to devices."""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.logger import Logger
from twisted.protocols import amp

from cmsv6.plugins.gateway import gateway as gw
from cmsv6.protocols.jt808.codec import encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.rpc.commands import (
    BadRequest,
    CommandTimeout,
    DeviceOffline,
    OnlineDevices,
    SendMessage,
    Unavailable,
)

_log = Logger()


class GatewayLocator(amp.CommandLocator):
    def __init__(self, gateway: gw.Gateway) -> None:
        self.gateway = gateway

    @SendMessage.responder
    def send_message(self, phone: str, msg_id: int, body: bytes, timeout: float | None = None) -> Any:
        if not 0x8000 <= msg_id <= 0xFFFF:
            raise BadRequest(f"0x{msg_id:04x} is not a platform message")
        d = self.gateway.send_command(phone, msg_id, body, timeout=timeout or 10.0)

        def reply(message: Any) -> dict[str, Any]:
            try:
                data = encode_body(message.body, message.header.version)
            except CodecError:
                data = b""
            return {"msg_id": message.header.msg_id, "version": message.header.version,
                    "body": data}

        def translate(failure: Any) -> Any:
            if failure.check(gw.DeviceOffline):
                raise DeviceOffline(failure.getErrorMessage())
            if failure.check(gw.CommandTimeout):
                raise CommandTimeout(failure.getErrorMessage())
            _log.failure("send_message failed", failure)
            raise Unavailable(failure.getErrorMessage())

        return d.addCallbacks(reply, translate)

    @OnlineDevices.responder
    def online_devices(self) -> dict[str, Any]:
        return {"phones": sorted(self.gateway.sessions)}


class ClusterFactory(protocol.Factory):
    def __init__(self, gateway: gw.Gateway) -> None:
        self.gateway = gateway

    def buildProtocol(self, addr: object) -> amp.AMP:  # noqa: N802
        return amp.AMP(locator=GatewayLocator(self.gateway))
