"""The gateway's AMP responders (``cluster`` endpoint, and its link to login): commands to
devices, from authenticated cluster links only (``cmsv6.rpc.link``).

Only the cluster's downlinks are sent (``DOWNLINKS``), with a bounded timeout, and each is
recorded in ``commands`` and ``audit`` before it goes (``cmsv6.db.cluster``): a command
that cannot be recorded is not sent.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from cmsv6.db import cluster as cluster_store
from cmsv6.plugins.gateway import gateway as gw
from cmsv6.rpc.commands import (
    COMMON_ERRORS,
    DOWNLINKS,
    MAX_COMMAND_TIMEOUT,
    BadRequest,
    CommandTimeout,
    DeviceOffline,
    SendMessage,
    Unavailable,
)
from cmsv6.rpc.link import ClusterLink

_log = Logger()

#: Seconds a device has to answer when the caller does not say.
DEFAULT_TIMEOUT = 10.0


class GatewayLocator(amp.CommandLocator):
    def __init__(self, gateway: gw.Gateway, link: ClusterLink | None = None) -> None:
        self.gateway = gateway
        self.link = link

    @SendMessage.responder
    def send_message(self, phone: str, msg_id: int, body: bytes, timeout: float | None = None,
                     body_2019: bytes | None = None, by: str | None = None,
                     command: int | None = None) -> Any:  # fmt: skip
        if msg_id not in DOWNLINKS:
            raise BadRequest(f"0x{msg_id:04x} is not a command the cluster sends")
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        if not 0 < timeout <= MAX_COMMAND_TIMEOUT:
            raise BadRequest(f"a timeout is more than 0 and at most {MAX_COMMAND_TIMEOUT:g} s")
        peer = self.link.peer_id if self.link is not None else None
        who = f"{peer or '?'}: {by}" if by else (peer or "?")
        d = self._record(phone, msg_id, body, who, command)

        def send(recorded: tuple[int, bool] | None) -> Any:
            sent = defer.maybeDeferred(self.gateway.send_command, phone, msg_id, body,
                                       timeout=timeout, body_2019=body_2019)  # fmt: skip
            if recorded is not None and recorded[1]:
                sent.addBoth(self._finish, recorded[0])
            return sent

        return d.addCallback(send).addErrback(_declared, phone, msg_id)

    def _record(self, phone: str, msg_id: int, body: bytes, by: str, command: int | None) -> Any:
        db = getattr(self.gateway, "db", None)
        if db is None:  # a gateway without a database (unit tests' fakes)
            return defer.succeed(None)
        d = cluster_store.record_sent(db, self.gateway.id, phone, msg_id, body, by, command,
                                      self.gateway.now())  # fmt: skip

        def unrecorded(failure: Failure) -> Failure:
            _log.warn("0x{msg_id:04x} to {phone} not sent: it could not be recorded ({e})",
                      msg_id=msg_id, phone=phone, e=failure.getErrorMessage())  # fmt: skip
            return Failure(Unavailable("the command could not be recorded"))

        return d.addErrback(unrecorded)

    def _finish(self, result: Any, command_id: int) -> Any:
        if isinstance(result, Failure):
            status = ("timeout" if result.check(CommandTimeout)
                      else "offline" if result.check(DeviceOffline) else "failed")  # fmt: skip
            reply = {"error": result.getErrorMessage()}
        else:
            status, reply = "replied", {"msg_id": f"0x{result['msg_id']:04x}", "hex": result["body"].hex()}
        cluster_store.finish_sent(self.gateway.db, command_id, status, reply, self.gateway.now()).addErrback(
            lambda f: _log.warn("command {id} outcome not recorded: {e}", id=command_id, e=f.getErrorMessage())
        )
        return result


def _declared(failure: Failure, phone: str, msg_id: int) -> Failure:
    """The gateway fails with the declared errors; anything else is a bug, logged, and
    answered as Unavailable (an undeclared error would drop the link)."""
    if failure.check(*COMMON_ERRORS):
        return failure
    _log.failure("0x{msg_id:04x} to {phone} failed", failure, msg_id=msg_id, phone=phone)
    return Failure(Unavailable(failure.getErrorMessage()))


class ClusterFactory(protocol.Factory):
    """The ``cluster`` endpoint: links that prove this gateway's own id (login holding the
    master key, ``cmsv6 send`` holding this gateway's key) and then send commands."""

    noisy = False

    def __init__(self, gateway: gw.Gateway, key_for: Callable[[str], bytes | None],
                 clock: IReactorTime | None = None) -> None:  # fmt: skip
        self.gateway = gateway
        self.key_for = key_for
        self.clock = clock
        #: Links refused, by reason.
        self.refused: Counter[str] = Counter()

    def buildProtocol(self, addr: object) -> ClusterLink:  # noqa: N802
        link = ClusterLink(key_for=self.key_for, clock=self.clock, counters=self.refused)
        link.locator.inner = GatewayLocator(self.gateway, link)
        return link
