"""Every AMP command the servers exchange, with its declared errors.

The errors are the cluster's, raised as they are where they happen (the gateway, login's
directory) and passed on unchanged; callers catch these classes.
"""

from __future__ import annotations

from twisted.protocols import amp

from cmsv6.protocols.jt808.messages.jt1078 import AvCodec


class DeviceOffline(Exception):
    """The device is not online (on this gateway, or anywhere login knows of)."""


class CommandTimeout(Exception):
    """The device did not answer, after retransmissions."""


class BadRequest(Exception):
    """The request cannot be sent (an unknown message, a body that does not encode)."""


class Unavailable(Exception):
    """The server cannot do this now (database down, shutting down)."""


class DeviceRefused(Exception):
    """The device answered, and said no (a general response with a non-zero result)."""


class NotAuthenticated(Exception):
    """The link has not proven a cluster credential (or proved a wrong one): it is closed."""


COMMON_ERRORS = {
    DeviceOffline: b"DEVICE_OFFLINE",
    CommandTimeout: b"COMMAND_TIMEOUT",
    BadRequest: b"BAD_REQUEST",
    Unavailable: b"UNAVAILABLE",
}


class SendMessage(amp.Command):
    """Send a platform→terminal message to an online device and return its reply.

    ``body`` is the encoded message body for a 2011/2013 device, ``body_2019`` for a 2019
    one (default: ``body``); the gateway picks by the version of the device's live session,
    frames it in that version, splits long bodies, retransmits (JT/T 808 §6.1) and matches
    the reply by serial. The reply comes back as its message id, the version it came in and
    its body bytes as received, for the caller to decode once (they may not decode: that is
    the caller's error to report, with the bytes).

    Only the ``DOWNLINKS`` are sent, ``timeout`` is at most ``MAX_COMMAND_TIMEOUT``; the
    gateway records every command in ``commands`` and ``audit``: ``by`` says who asked
    (a user, ``cmsv6 send``), ``command`` names the ``commands`` row the caller already
    recorded for it (login's Open API), which the gateway then marks sent instead of
    adding one.
    """

    arguments = [
        (b"phone", amp.Unicode()),
        (b"msg_id", amp.Integer()),
        (b"body", amp.String()),
        (b"timeout", amp.Float(optional=True)),
        (b"body_2019", amp.String(optional=True)),
        (b"by", amp.Unicode(optional=True)),
        (b"command", amp.Integer(optional=True)),
    ]
    response = [
        (b"msg_id", amp.Integer()),
        (b"version", amp.Integer()),
        (b"body", amp.String()),
    ]
    errors = COMMON_ERRORS


#: The platform messages the cluster sends to devices: the Open API's commands
#: (``cmsv6.web.commands``: 0x8103–0x8106, 0x8108, 0x8201, 0x8300, 0x8801) and JT/T 1078's
#: video signalling (attributes, live, playback, recordings, uploads, PTZ). Anything else is
#: refused.
DOWNLINKS = frozenset(
    {0x8103, 0x8104, 0x8105, 0x8106, 0x8108, 0x8201, 0x8300, 0x8801}
    | {0x9003, 0x9101, 0x9102, 0x9201, 0x9202, 0x9205, 0x9206, 0x9207}
    | set(range(0x9301, 0x9307))
)
#: Seconds a device is given to answer one send of a command at most.
MAX_COMMAND_TIMEOUT = 60.0


# -- every link's first two commands: the HMAC challenge (cmsv6.rpc.link) ------------------


class Hello(amp.Command):
    """The connecting side: the identity it proves (its role and id,
    ``cmsv6.rpc.keys.identity``: a gateway's id, "media " + a media server's) and its
    nonce. The answer: the listening side's nonce and its proof, HMAC(key of identity,
    "server" | identity | both nonces)."""

    commandName = b"cmsv6-hello"
    arguments = [(b"id", amp.Unicode()), (b"nonce", amp.String())]
    response = [(b"nonce", amp.String()), (b"proof", amp.String())]
    errors = {NotAuthenticated: b"UNAUTHENTICATED"}
    fatalErrors = {NotAuthenticated: b"UNAUTHENTICATED"}


class Prove(amp.Command):
    """The connecting side's proof, HMAC(key of id, "client" | id | both nonces); once it
    checks, the link is authenticated as ``id`` in both directions."""

    commandName = b"cmsv6-prove"
    arguments = [(b"proof", amp.String())]
    response: list = []
    errors = {NotAuthenticated: b"UNAUTHENTICATED"}
    fatalErrors = {NotAuthenticated: b"UNAUTHENTICATED"}


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


# -- media servers → login ------------------------------------------------------------------


class AnnounceMedia(amp.Command):
    """A media server (re)connecting to login: who it is, where browsers and devices reach
    it, and its load. Only under the id its link proved, and not an id that is a live
    gateway's (nor on a link that announced a gateway). A new announcement under an id
    login has replaces the old one. A standby login server does not listen, so an answer
    means login is active.

    ``public_web`` is the base URL of its WS-FLV/HTTP-FLV endpoint (``http://`` or
    ``https://``, what login puts in video URLs); ``public_jt1078`` the ``host:port`` given
    to devices in 0x9101; ``streams`` the device streams it receives, ``viewers`` the
    browsers and players it serves.
    """

    arguments = [
        (b"id", amp.Unicode()),
        (b"public_web", amp.Unicode()),
        (b"public_jt1078", amp.Unicode()),
        (b"streams", amp.Integer()),
        (b"viewers", amp.Integer()),
    ]
    response = [(b"login", amp.Unicode())]
    errors = COMMON_ERRORS


class ReportMediaLoad(amp.Command):
    """Every few seconds: the media server's device streams and viewers."""

    arguments = [(b"streams", amp.Integer()), (b"viewers", amp.Integer())]
    response: list = []
    errors = COMMON_ERRORS


class OpenStream(amp.Command):
    """Ask a device to open its live JT/T 1078 stream (0x9101) to the media server asking.

    Login finds the device's gateway, which sends 0x9101 with ``address`` (the media
    server's ``public_jt1078``: its host, the TCP port, UDP port 0), ``channel``, data type
    audio and video, and ``stream`` ("main" or "sub"); the answer comes once the device
    accepted (0x0001 result 0). Errors say which device and which step: DeviceOffline (no
    gateway has it), Unavailable (its gateway cannot be reached), CommandTimeout (no
    answer), DeviceRefused (it answered no), BadRequest (the request itself). ``timeout``
    is the device's time to answer one send (the gateway retransmits).

    The answer says the codecs the device's 0x1003 attributes announce (login asks 0x9003
    first when it does not know them, and remembers the answer): ``video_codec`` one of
    ``VIDEO_CODECS``' names, ``audio_codec`` one of ``AUDIO_CODECS``' (another table 12
    code: "code N"), each absent when not known: many devices do not answer 0x9003, and
    that is no error.
    """

    arguments = [
        (b"phone", amp.Unicode()),
        (b"channel", amp.Integer()),
        (b"stream", amp.Unicode()),
        (b"address", amp.Unicode()),
        (b"timeout", amp.Float(optional=True)),
    ]
    response = [
        (b"video_codec", amp.Unicode(optional=True)),
        (b"audio_codec", amp.Unicode(optional=True)),
    ]
    errors = {**COMMON_ERRORS, DeviceRefused: b"DEVICE_REFUSED"}


#: OpenStream's codec names, by table 12 code (the packets' payload type).
VIDEO_CODECS = {AvCodec.H264: "h264", AvCodec.H265: "h265"}
AUDIO_CODECS = {
    AvCodec.G711A: "g711a",
    AvCodec.G711U: "g711u",
    AvCodec.G726: "g726",
    AvCodec.ADPCMA: "adpcm",
    AvCodec.AAC: "aac",
    AvCodec.AACLC: "aac-lc",
    AvCodec.HEAAC: "he-aac",
}


def codec_label(code: int, names: dict[AvCodec, str]) -> str:
    """The name of table 12 code ``code`` in ``names``, or "code N"."""
    return names.get(code, f"code {code}")  # type: ignore[call-overload]


def codec_code(label: str, names: dict[AvCodec, str]) -> int | None:
    """The table 12 code ``codec_label`` named ``label``; None for one it does not know."""
    for code, name in names.items():
        if name == label:
            return int(code)
    number = label.removeprefix("code ")
    return int(number) if number != label and number.isdigit() and int(number) < 128 else None


class CloseStream(amp.Command):
    """Ask a device to close a live stream (0x9102: close, audio and video); errors as
    ``OpenStream``'s."""

    arguments = [
        (b"phone", amp.Unicode()),
        (b"channel", amp.Integer()),
        (b"stream", amp.Unicode()),
        (b"timeout", amp.Float(optional=True)),
    ]
    response: list = []
    errors = {**COMMON_ERRORS, DeviceRefused: b"DEVICE_REFUSED"}


class SendForMedia(amp.Command):
    """A media server's message to a device, through login and the device's gateway (the
    path ``SendMessage`` takes), answered with the device's reply as ``SendMessage``'s is.

    The media server encodes the body itself (0x9201 playback with its own
    ``public_jt1078``, 0x9202 playback control, 0x9101 talk-back, 0x9102, 0x9003); login
    sends only ``MEDIA_DOWNLINKS`` for a link that proved a media server's key, records
    it as the media server's, and errors as ``OpenStream``'s (without DeviceRefused: the
    media server reads the reply itself)."""

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


#: What a media server may send to devices (``SendForMedia``): attributes, live and
#: talk-back streams (0x9101, 0x9102), playback and its control (0x9201, 0x9202).
MEDIA_DOWNLINKS = frozenset({0x9003, 0x9101, 0x9102, 0x9201, 0x9202})


class NoSuchPlayback(Exception):
    """The media server holds no playback session of that id (never opened, or over)."""


class ControlPlayback(amp.Command):
    """Login → media server: control playback session ``session`` (the id login put in the
    playback's viewing token) for the Open API, as the viewer's own WebSocket controls do.

    ``action``: one of ``PLAYBACK_ACTIONS``; ``speed`` (1, 2, 4, 8, 16) for
    "fast_forward" and "rewind"; ``time`` (ISO 8601) for "seek". The answer comes once the
    device accepted the 0x9202."""

    arguments = [
        (b"session", amp.Unicode()),
        (b"action", amp.Unicode()),
        (b"speed", amp.Integer(optional=True)),
        (b"time", amp.Unicode(optional=True)),
    ]
    response: list = []
    errors = {**COMMON_ERRORS, DeviceRefused: b"DEVICE_REFUSED", NoSuchPlayback: b"NO_SUCH_PLAYBACK"}


#: Playback controls (0x9202 commands 0 to 6), by the names the Open API and the viewer's
#: WebSocket use: resume (0, also "play"), pause (1), stop (2), fast_forward (3),
#: rewind (4, keyframes backwards), seek (5, to ``time``), keyframes (6, keyframes only).
PLAYBACK_ACTIONS = {"resume": 0, "play": 0, "pause": 1, "stop": 2, "fast_forward": 3,
                    "rewind": 4, "seek": 5, "keyframes": 6}  # fmt: skip
#: Fast-forward and rewind multiples, as 0x9201/0x9202 codes (1=x1 ... 5=x16).
PLAYBACK_SPEEDS = {1: 1, 2: 2, 4: 3, 8: 4, 16: 5}
#: Playback modes (0x9201), by the names the Open API and the playback token's params use.
PLAYBACK_MODES = {"normal": 0, "fast_forward": 1, "rewind": 2, "keyframes": 3, "single_frame": 4}


#: Live streams: the names the Open API and the media server use, as 0x9101/0x9102 codes.
STREAMS = {"main": 0, "sub": 1}
#: The largest number a media server may announce of its streams or viewers.
MAX_MEDIA_LOAD = 10_000_000

#: The largest capacity a server may announce.
MAX_CAPACITY = 1_000_000

#: Phones per DevicesChanged call at most (20 digits + 2 length bytes each: < 64 KiB).
MAX_PHONES = 1000
