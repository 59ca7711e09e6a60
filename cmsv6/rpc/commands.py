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


# -- gateways → login: the directory's "memory data" ---------------------------------------


class AnnounceGateway(amp.Command):
    """A gateway (re)connecting to login: who it is and where it is.

    ``public_jt808`` is the ``host:port`` login gives devices; ``cluster`` the client
    endpoint string where login reaches the gateway's AMP responders ("" = over this
    link); ``capacity`` the devices it takes at most. A new announcement under an id that
    login already has replaces the old one (the old link is dropped, its devices
    forgotten). The gateway follows with ``DevicesChanged`` for every device it has online.
    A standby login server does not listen, so an answer means login is active.
    """

    arguments = [
        (b"id", amp.Unicode()),
        (b"public_jt808", amp.Unicode()),
        (b"cluster", amp.Unicode()),
        (b"capacity", amp.Integer()),
    ]
    response = [(b"login", amp.Unicode())]
    errors = COMMON_ERRORS


class ReportLoad(amp.Command):
    """Every few seconds: the devices online and the connections open on the gateway."""

    arguments = [(b"online", amp.Integer()), (b"connections", amp.Integer())]
    response: list = []
    errors = COMMON_ERRORS


class DevicesChanged(amp.Command):
    """Devices that came online or went offline on the gateway, in order of the link.

    Phones are canonical (``cmsv6.phone.canonical_phone``); at most ``MAX_PHONES`` per
    call (an AMP value holds 64 KiB).
    """

    arguments = [
        (b"online", amp.ListOf(amp.Unicode())),
        (b"offline", amp.ListOf(amp.Unicode())),
    ]
    response: list = []
    errors = COMMON_ERRORS


#: Phones per DevicesChanged call at most (20 digits + 2 length bytes each: < 64 KiB).
MAX_PHONES = 1000
