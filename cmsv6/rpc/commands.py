"""Every AMP command the servers exchange, with its declared errors."""

from __future__ import annotations

from twisted.protocols import amp


class DeviceOffline(Exception):
    """The device is not online on this gateway."""


class CommandTimeout(Exception):
    """The device did not answer, after retransmissions."""


class BadRequest(Exception):
    """The request cannot be sent (an unknown message, a body that does not encode)."""


class Unavailable(Exception):
    """The server cannot do this now (database down, shutting down)."""


COMMON_ERRORS = {
    DeviceOffline: b"DEVICE_OFFLINE",
    CommandTimeout: b"COMMAND_TIMEOUT",
    BadRequest: b"BAD_REQUEST",
    Unavailable: b"UNAVAILABLE",
}


class SendMessage(amp.Command):
    """Send a platform→terminal message to an online device and return its reply.

    ``body`` is the encoded message body (the gateway adds the header in the device's
    protocol version, splits long bodies, retransmits and matches the reply by serial);
    the reply comes back as its message id, the device's protocol version and its body.
    """

    arguments = [
        (b"phone", amp.Unicode()),
        (b"msg_id", amp.Integer()),
        (b"body", amp.String()),
        (b"timeout", amp.Float(optional=True)),
    ]
    response = [
        (b"msg_id", amp.Integer()),
        (b"version", amp.Integer()),
        (b"body", amp.String()),
    ]
    errors = COMMON_ERRORS


class OnlineDevices(amp.Command):
    """The phones online on this gateway."""

    arguments: list = []
    response = [(b"phones", amp.ListOf(amp.Unicode()))]
    errors = COMMON_ERRORS
