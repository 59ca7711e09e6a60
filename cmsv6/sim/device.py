"""One simulated DVR's JT/T 808 behaviour, sans-IO.

A ``Device`` is driven by its owner with the current time:

* ``tick(now)`` when ``device.wake`` has come: reports positions, sends heartbeats,
  retransmits, uploads its backlog; returns an address when it wants a connection;
* ``connected(link, now)`` / ``connect_failed(now)`` / ``disconnected(now)`` as the
  connection comes and goes (``link`` has ``send(bytes)`` and ``close()``);
* ``received(message, now)`` for every decoded frame from the platform;
* ``stop(now)``: log out and close.

Reliability, per JT/T 808 §6.1: every uplink that expects a 0x8001 is kept, frame and all,
until its answer (matched by reply serial and reply id) arrives; without one it is sent
again T, 2T, 6T... seconds after each send (``timeout`` T, ``retries`` times; the rule is
``cmsv6.protocols.jt808.retransmit``, as the gateway's). A position counts as
acknowledged only on a 0x8001 with result 0 (or 4, "alarm confirmed"); anything else keeps
it: positions that were not acknowledged when a connection ended, that ran out of
retransmissions or that the platform refused go back to the backlog, which is uploaded as
blind-area batches (0x0704 type 1, with their original times) once authenticated again.
The backlog is bounded (``max_unacked``, oldest dropped and counted).

Positions are kept as their encoded 0x0200 bodies: about 85 bytes each in memory.
"""

from __future__ import annotations

import struct
from collections import deque
from datetime import datetime
from fractions import Fraction
from random import Random
from typing import Any, Callable, Protocol

import av
from attrs import define, field, frozen
from twisted.logger import Logger

from cmsv6.protocols.jt808.codec import Message, decode_body, encode_body, encode_packets
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.framing import build_frame
from cmsv6.protocols.jt808.header import MAX_BODY, Header
from cmsv6.protocols.jt808.messages.core import (
    RESULT_ALARM_CONFIRMED,
    RESULT_BAD_MESSAGE,
    RESULT_FAILED,
    RESULT_OK,
    RESULT_UNSUPPORTED,
    Authenticate,
    Heartbeat,
    Logout,
    PlatformResponse,
    Register,
    RegisterResponse,
    ResendRequest,
    TerminalResponse,
)
from cmsv6.protocols.jt808.messages.jt1078 import (
    AudioSampleRate,
    AvAttributes,
    AvCodec,
    AvTransmissionControl,
    ControlCommand,
    LiveStream,
    PlaybackControl,
    PlaybackMode,
    PlaybackRequest,
    PlaybackSpeed,
    PtzDirection,
    QueryResources,
    RealtimeAvRequest,
    RequestDataType,
    ResourceList,
)
from cmsv6.protocols.jt808.messages.location import (
    ALARM_EMERGENCY,
    ALARM_OVERSPEED,
    BATCH_BLIND_AREA,
    STATUS_ACC,
    STATUS_FIXED,
    Location,
    LocationQueryResponse,
    OverspeedAlarm,
)
from cmsv6.protocols.jt808.messages.multimedia import (
    EVENT_PLATFORM,
    FORMAT_JPEG,
    MEDIA_IMAGE,
    SHOOT_STOP,
    SHOOT_VIDEO,
    MultimediaData,
    MultimediaUploadResponse,
    TakePhoto,
    TakePhotoResponse,
)
from cmsv6.protocols.jt808.messages.params import (
    ParametersResponse,
    QuerySpecifiedParameters,
    SetParameters,
)
from cmsv6.protocols.jt808.retransmit import Retransmission
from cmsv6.sim import recordings
from cmsv6.sim.address import host_port, parse_server, tcp_endpoint
from cmsv6.sim.audio import CODECS, payload_type
from cmsv6.sim.route import Area, Vehicle

_log = Logger()

# Message ids the device sends and tracks.
REGISTER, AUTHENTICATE, HEARTBEAT, LOGOUT = 0x0100, 0x0102, 0x0002, 0x0003
LOCATION, BATCH, MEDIA_DATA = 0x0200, 0x0704, 0x0801
POSITION_IDS = (LOCATION, BATCH)

# Session states.
DISCONNECTED = "disconnected"
CONNECTING = "connecting"
REGISTERING = "registering"
AUTHENTICATING = "authenticating"
ONLINE = "online"
CLOSING = "closing"
STOPPED = "stopped"

#: 0x8100 results in words (JT/T 808 §8.5, 终端注册应答).
REGISTER_RESULTS = {
    0: "success",
    1: "vehicle already registered",
    2: "vehicle not in the database",
    3: "terminal already registered",
    4: "terminal not in the database",
}
#: 0x8001 results in words (JT/T 808 §8.1, 平台通用应答).
RESPONSE_RESULTS = {
    0: "success",
    1: "failed",
    2: "message error",
    3: "not supported",
    4: "alarm confirmed",
}


def refusal(what: str, result: int, words: dict[int, str]) -> str:
    """A platform's refusal in words, with its code: "registration refused: terminal not in
    the database (4)"."""
    return f"{what} refused: {words.get(result, 'a result the standard does not define')} ({result})"


_NEVER = float("inf")
_BATCH_HEAD = struct.Struct(">HB")
_WORD = struct.Struct(">H")
#: Recently sent sub-packaged messages kept for 0x8003 / 0x8800 re-requests.
MAX_MULTIPART = 4


@frozen
class DeviceConfig:
    """Settings shared by every device of a fleet (``interval``, ``heartbeat``, ``timeout``,
    ``retries`` and ``speed_limit`` are starting values a 0x8103 may change per device)."""

    interval: float = 10.0
    heartbeat: float = 30.0
    #: T of JT/T 808 §6.1: seconds before the first retransmission.
    timeout: float = 10.0
    retries: int = 3
    speed_limit: int = 75
    #: Chance per report that an emergency alarm is raised (cleared by its 0x8001).
    alarm_probability: float = 0.001
    #: Chance per report that coverage is lost for about ``gap_seconds`` (0.5x-1.5x).
    gap_probability: float = 0.0
    gap_seconds: float = 60.0
    #: Positions kept unacknowledged at most; the oldest are dropped beyond it.
    max_unacked: int = 10_000
    #: Positions per 0x0704 batch at most (fewer when they would not fit one frame).
    batch_size: int = 10
    #: Unanswered 0x0200 at most; later positions wait in the backlog.
    live_window: int = 32
    #: Unanswered 0x0704 batches at most.
    batch_window: int = 4
    reconnect_initial: float = 1.0
    reconnect_factor: float = 2.0
    reconnect_max: float = 60.0
    #: Consecutive failures at one address before trying the other (main ⇄ backup).
    fallback_after: int = 3
    area: Area = Area()
    province: int = 44
    city: int = 300
    manufacturer: str = "CMSV6"
    model: str = "SIM-DVR"
    plate_color: int = 2
    software_version: str = "cmsv6-sim"
    photo_size: tuple[int, int] = (2048, 6144)
    #: Camera channels (1..channels); 0: no cameras (0x9003, 0x9101, 0x9102 unsupported).
    channels: int = 4
    #: The cameras' audio codec (``cmsv6.sim.audio.CODECS``): 0x1003 says it, the audio
    #: sent up (live, playback, talk-back) is in it, and talk-back is decoded from it.
    audio_codec: str = "g711a"
    #: Whether the unit has a loudspeaker (0x1003): without, talk-back and broadcast are
    #: refused.
    audio_output: bool = True
    #: Channels that stream H.265 (the others H.264).
    h265_channels: frozenset[int] = frozenset()
    #: Days of recordings on the unit's storage (0x9205).
    recording_days: int = 3
    #: Tests: packet N (from 1) of every sub-packaged reply is left out of its first send,
    #: so the platform must ask for it again (0x8003); 0 sends everything.
    lose_packet: int = 0

    def __attrs_post_init__(self) -> None:
        if self.audio_codec not in CODECS:
            raise ValueError(f"audio codec {self.audio_codec!r} is not one of {sorted(CODECS)}")


@define
class Counters:
    """Fleet-wide counters (``connected`` and ``authenticated`` are gauges)."""

    devices: int = 0
    connected: int = 0
    authenticated: int = 0
    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    registrations: int = 0
    register_failures: int = 0
    authentications: int = 0
    auth_failures: int = 0
    positions: int = 0
    sent: int = 0
    acknowledged: int = 0
    refused: int = 0
    retransmissions: int = 0
    timeouts: int = 0
    dropped: int = 0
    batches: int = 0
    heartbeats: int = 0
    alarms_raised: int = 0
    alarms_cleared: int = 0
    gaps: int = 0
    redirects: int = 0
    fallbacks: int = 0
    commands: int = 0
    photos: int = 0
    resent_packets: int = 0
    errors: int = 0
    logouts: int = 0
    #: Live streams (cmsv6.sim.video): connected now, opened, ended by themselves, and
    #: bytes of 1078 packets sent (all, and video ones).
    streams_open: int = 0
    streams_opened: int = 0
    stream_failures: int = 0
    stream_bytes: int = 0
    video_bytes: int = 0


class Link(Protocol):
    """The device's side of a connection."""

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class DeviceEvents:
    """What a device tells its owner besides frames; the defaults do nothing."""

    def acknowledged(self, device: Device, body: bytes, serial: int) -> None:
        """A position (its 0x0200 body) was acknowledged by the 0x8001 to ``serial``."""

    def registered(self, device: Device) -> None:
        """The device has a new authentication code."""

    def refused(self, device: Device) -> None:
        """The platform refused the device for another reason than the last time
        (``device.refusal`` says it)."""

    def stream_requested(self, device: Device, request: RealtimeAvRequest) -> None:
        """A 0x9101 the device accepted (and answered): stream that channel."""

    def stream_control(self, device: Device, control: AvTransmissionControl) -> None:
        """A 0x9102 the device accepted (and answered): close, pause, resume or switch."""

    def playback_requested(self, device: Device, request: PlaybackRequest) -> None:
        """A 0x9201 the device accepted (and answered): play that recording back."""

    def playback_control(self, device: Device, control: PlaybackControl) -> bool:
        """A 0x9202 for a channel the device has: act on it; False when the channel has no
        playback (or the control cannot be followed), and the device answers 1 (failed)."""
        return False


def beijing(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds), BEIJING)


def batch_body(kind: int, bodies: list[bytes] | tuple[bytes, ...]) -> bytes:
    """The 0x0704 body for encoded 0x0200 bodies (equal to encoding a ``LocationBatch`` of
    their ``Location``s, as tests/sim prove, without decoding them again)."""
    parts = [_BATCH_HEAD.pack(len(bodies), kind)]
    for body in bodies:
        parts.append(_WORD.pack(len(body)))
        parts.append(body)
    return b"".join(parts)


def position_of(body: bytes) -> Location:
    """The ``Location`` of an encoded 0x0200 body."""
    return decode_body(LOCATION, body)  # type: ignore[no-any-return]


#: The simulated cameras' photos: QCIF, a gradient tinted at random.
PHOTO_SIZE = (176, 144)


def photo_jpeg(rng: Random, size: int) -> bytes:
    """A JPEG a browser shows (a gradient in a random tint, encoded by FFmpeg), padded with
    comment segments to about ``size`` bytes (units' photos are tens of kilobytes: the
    padding makes the upload as long, for its sub-packages)."""
    width, height = PHOTO_SIZE
    tint = rng.randrange(256)
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    pad = bytes(plane.line_size - 3 * width)
    plane.update(b"".join(
        bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, tint)) + pad
        for y in range(height)
    ))  # fmt: skip
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.open()
    picture = frame.reformat(format="yuvj420p")
    data = b"".join(bytes(p) for p in [*encoder.encode(picture), *encoder.encode(None)])
    padding = b""
    missing = size - len(data)
    while missing > 4:
        n = min(missing - 4, 0xFFFF - 2)
        padding += b"\xff\xfe" + (n + 2).to_bytes(2, "big") + rng.randbytes(n)
        missing -= n + 4
    return data[:2] + padding + data[2:]


class _Outstanding:
    """An uplink waiting for its answer: its frame, the positions it carries, retries."""

    __slots__ = ("msg_id", "serial", "frame", "positions", "retransmission", "deadline")

    def __init__(
        self, msg_id: int, serial: int, frame: bytes, positions: tuple[bytes, ...],
        retransmission: Retransmission, deadline: float,
    ) -> None:
        self.msg_id = msg_id
        self.serial = serial
        self.frame = frame
        self.positions = positions
        self.retransmission = retransmission
        self.deadline = deadline


@define
class _Multipart:
    """A sub-packaged uplink (a photo), kept so its packets can be sent again."""

    media_id: int
    first_serial: int
    frames: list[bytes] = field(factory=list)


class Device:
    """One terminal. See the module docstring for how it is driven."""

    __slots__ = (
        "phone",
        "version",
        "plate",
        "config",
        "counters",
        "events",
        "auth_code",
        "state",
        "wake",
        "interval",
        "heartbeat",
        "timeout",
        "retries",
        "speed_limit",
        "main",
        "backup_host",
        "backup_port",
        "using_backup",
        "vehicle",
        "_rng",
        "_link",
        "_serial",
        "_outstanding",
        "_inflight",
        "_backlog",
        "_reporting",
        "_next_report",
        "_next_heartbeat",
        "_connect_at",
        "_gap_until",
        "_hold_until",
        "_emergency",
        "_overspeed",
        "_failures",
        "_retry",
        "_sessions",
        "_redirect",
        "_multipart",
        "_media_id",
        "_extra_params",
        "_session_authenticated",
        "_connected_to",
        "ptz",
        "index",
        "refusal",
    )

    def __init__(
        self,
        phone: str,
        *,
        server: str,
        config: DeviceConfig,
        rng: Random,
        counters: Counters,
        version: int = 2013,
        plate: str = "",
        auth_code: str | None = None,
        events: DeviceEvents | None = None,
        start_at: float = 0.0,
        now: float = 0.0,
    ) -> None:
        self.phone = phone
        self.version = version
        self.plate = plate
        self.config = config
        self.counters = counters
        self.events = events or DeviceEvents()
        self.auth_code = auth_code
        self.state = DISCONNECTED
        #: When ``tick`` must next run.
        self.wake = start_at
        self.interval = config.interval
        self.heartbeat = config.heartbeat
        self.timeout = config.timeout
        self.retries = config.retries
        self.speed_limit = config.speed_limit
        #: The main server's client endpoint string; the backup's host and port (None: the
        #: main server's port), as 0x0017 and 0x0018 give them.
        self.main = server
        self.backup_host: str | None = None
        self.backup_port: int | None = None
        self.using_backup = False
        self.vehicle = Vehicle.spawn(config.area, rng, now)
        self._rng = rng
        self._link: Link | None = None
        self._serial = 0
        #: Uplinks waiting for an answer, by ``serial << 16 | msg_id``.
        self._outstanding: dict[int, _Outstanding] = {}
        #: Outstanding 0x0200 and 0x0704 messages and the positions they carry.
        self._inflight = [0, 0, 0]
        #: Positions (0x0200 bodies) not yet sent, or sent and not acknowledged in time.
        self._backlog: deque[bytes] = deque()
        self._reporting = False
        self._next_report = _NEVER
        self._next_heartbeat = _NEVER
        self._connect_at = start_at
        self._gap_until = 0.0
        self._hold_until = 0.0
        self._emergency = False
        self._overspeed = False
        self._failures = 0
        self._retry = 0
        self._sessions = 0
        self._redirect = False
        self._multipart: list[_Multipart] | None = None
        self._media_id = 0
        self._extra_params: dict[int, Any] | None = None
        self._session_authenticated = False
        self._connected_to = server
        #: Each camera's pan/tilt/zoom state, by channel, as 0x9301-0x9306 left it.
        self.ptz: dict[int, Ptz] = {}
        #: The owner's number for this device.
        self.index = 0
        #: Why the platform last refused the device, in words; None once it gets in.
        self.refusal: str | None = None

    # -- what the owner reads -------------------------------------------------------------

    @property
    def address(self) -> str:
        """The endpoint string of the server the device (re)connects to."""
        if self.using_backup and self.backup_host is not None:
            port = self.backup_port
            if port is None:
                main = host_port(self.main)
                port = main[1] if main else None
            if port is not None:
                return tcp_endpoint(self.backup_host, port)
        return self.main

    @property
    def unacknowledged(self) -> int:
        """Positions kept until acknowledged: in the backlog and in flight."""
        return len(self._backlog) + self._inflight[2]

    @property
    def online(self) -> bool:
        return self.state == ONLINE

    def in_gap(self, now: float) -> bool:
        """Whether the device is out of coverage (no connection until the gap ends)."""
        return now < self._gap_until

    # -- inputs ---------------------------------------------------------------------------

    def tick(self, now: float) -> str | None:
        """Do what is due; the address to connect to when a connection is wanted now."""
        if self.state == STOPPED:
            self.wake = _NEVER
            return None
        if self._reporting and now >= self._next_report:
            self._next_report = max(self._next_report + self.interval, now + self.interval / 2)
            self._report(now)
        online = self.state == ONLINE
        if online and now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat
            if not self._waiting_for(HEARTBEAT):
                self.counters.heartbeats += 1
                self._send_tracked(HEARTBEAT, encode_body(Heartbeat(), self.version), now)
        if self._outstanding and self._link is not None:
            self._retransmit(now)
        if self.state == ONLINE:
            self._flush(now)
        wake = self._next_report if self._reporting else _NEVER
        connect: str | None = None
        if self.state == DISCONNECTED:
            if now >= self._connect_at:
                self.state = CONNECTING
                connect = self._connected_to = self.address
            else:
                wake = min(wake, self._connect_at)
        elif self.state == ONLINE:
            wake = min(wake, self._next_heartbeat)
            if self._backlog and now < self._hold_until:
                wake = min(wake, self._hold_until)
        if self._link is not None:
            for entry in self._outstanding.values():
                if entry.deadline < wake:
                    wake = entry.deadline
        self.wake = wake
        return connect

    def connected(self, link: Link, now: float) -> None:
        """A connection to ``address`` is up: register, or authenticate with the code kept."""
        c = self.counters
        c.connected += 1
        c.connects += 1
        if self._sessions:
            c.reconnects += 1
        self._sessions += 1
        self._session_authenticated = False
        if self.state == STOPPED:
            link.close()
            return
        self._link = link
        self._start_login(now)

    def connect_failed(self, now: float) -> None:
        self.counters.connect_failures += 1
        if self.state == STOPPED:
            return
        self._failed(now)

    def disconnected(self, now: float) -> None:
        """The connection is gone (whoever closed it)."""
        c = self.counters
        c.connected -= 1
        c.disconnects += 1
        was_authenticated, self._session_authenticated = self._session_authenticated, False
        if was_authenticated:
            c.authenticated -= 1
        self._link = None
        self._next_heartbeat = _NEVER
        requeue = [e.positions for e in self._outstanding.values() if e.positions]
        self._outstanding.clear()
        self._inflight = [0, 0, 0]
        self._multipart = None
        self._requeue(requeue)
        if self.state == STOPPED:
            return
        self.state = DISCONNECTED
        if self._redirect:
            self._redirect = False
            self._connect_at = now
        elif now < self._gap_until:
            self._connect_at = self._gap_until
        elif not was_authenticated:
            self._failed(now)
            return
        else:
            self._connect_at = now + self._backoff()
        self._wake_at(self._connect_at)

    def received(self, message: Message, now: float) -> None:
        """A frame from the platform."""
        if self._link is None:
            return
        h = message.header
        command = _is_command(h.msg_id)
        if not message.checksum_ok:
            self.counters.errors += 1
            if command:
                self._respond(h, RESULT_BAD_MESSAGE)
            return
        if command:
            self.counters.commands += 1
        handler = _HANDLERS.get(h.msg_id)
        if handler is None:
            if command:
                self._respond(h, RESULT_UNSUPPORTED)
            return
        handler(self, h, message.body, now)

    def bad_frame(self, header: Header | None) -> None:
        """A frame that could not be decoded: counted, and refused when its header is known."""
        self.counters.errors += 1
        if header is not None and self._link is not None and _is_command(header.msg_id):
            self._respond(header, RESULT_BAD_MESSAGE)

    def unsupported(self, header: Header) -> None:
        """A platform message the device does not take (a sub-packaged downlink)."""
        if self._link is not None and _is_command(header.msg_id):
            self.counters.commands += 1
            self._respond(header, RESULT_UNSUPPORTED)

    def stop(self, now: float) -> bool:
        """Log out (when authenticated) and close; True while a connection is still open."""
        if self.state == STOPPED:
            return self._link is not None
        link = self._link
        if link is not None:
            if self.state == ONLINE:
                self.counters.logouts += 1
                self._send(LOGOUT, encode_body(Logout(), self.version))
            link.close()
            self._link = None
        self.state = STOPPED
        self._reporting = False
        self.wake = _NEVER
        return link is not None

    # -- the session ----------------------------------------------------------------------

    def _start_login(self, now: float) -> None:
        if self.auth_code is None:
            self.state = REGISTERING
            register = Register(
                province=self.config.province,
                city=self.config.city,
                manufacturer=self.config.manufacturer,
                model=self.config.model,
                terminal_id=self.phone[-7:],
                plate_color=self.config.plate_color,
                plate=self.plate,
            )
            self._send_tracked(REGISTER, encode_body(register, self.version), now)
        else:
            self.state = AUTHENTICATING
            if self.version == 2019:
                imei = self.phone[-15:].rjust(15, "0")
                auth = Authenticate(self.auth_code, imei, self.config.software_version)
            else:
                auth = Authenticate(self.auth_code)
            self._send_tracked(AUTHENTICATE, encode_body(auth, self.version), now)

    def _on_register_response(self, h: Header, body: RegisterResponse, now: float) -> None:
        entry = self._outstanding.pop(body.reply_serial << 16 | REGISTER, None)
        if entry is None or self.state != REGISTERING:
            return
        if body.result != 0 or not body.auth_code:
            self.counters.register_failures += 1
            if body.result == 0:
                self._refused("registration refused: success without an auth code (0)")
            else:
                self._refused(refusal("registration", body.result, REGISTER_RESULTS))
            self._close()
            return
        self.counters.registrations += 1
        self.auth_code = body.auth_code
        self.events.registered(self)
        self._start_login(now)

    def _authenticated(self, result: int, now: float) -> None:
        if self.state != AUTHENTICATING:
            return
        if result != RESULT_OK:
            # The platform no longer knows the code: register again.
            self.counters.auth_failures += 1
            self._refused(refusal("authentication", result, RESPONSE_RESULTS))
            self.auth_code = None
            self.events.registered(self)
            self._start_login(now)
            return
        self.counters.authentications += 1
        self.counters.authenticated += 1
        self.refusal = None
        self._session_authenticated = True
        self.state = ONLINE
        self._failures = 0
        self._retry = 0
        self._next_heartbeat = now + self.heartbeat
        self._wake_at(self._next_heartbeat)
        if not self._reporting:
            # The first report comes at a random point of the first interval, so a fleet
            # started at once does not report in lockstep.
            self._reporting = True
            self._next_report = now + self._rng.random() * self.interval
            self._wake_at(self._next_report)
        self._flush(now)

    def _refused(self, why: str) -> None:
        if why != self.refusal:
            self.refusal = why
            self.events.refused(self)

    def _failed(self, now: float) -> None:
        """A connection attempt, or a session that never authenticated, failed."""
        self.state = DISCONNECTED
        self._failures += 1
        if self._failures >= self.config.fallback_after and self.backup_host is not None:
            self._failures = 0
            self.using_backup = not self.using_backup
            self.counters.fallbacks += 1
        self._connect_at = now + self._backoff()
        self._wake_at(self._connect_at)

    def _backoff(self) -> float:
        c = self.config
        delay = min(c.reconnect_max, c.reconnect_initial * c.reconnect_factor**self._retry)
        if delay < c.reconnect_max:
            self._retry += 1
        return delay * (0.5 + self._rng.random())

    def _close(self) -> None:
        """Close the link; nothing more is sent or read until ``disconnected``."""
        if self._link is not None:
            link, self._link, self.state = self._link, None, CLOSING
            link.close()

    # -- positions ------------------------------------------------------------------------

    def location(self, now: float, basic: bool = False) -> Location:
        """Where the vehicle is now, as a 0x0200 body (``basic``: without additional items)."""
        v = self.vehicle
        v.advance(now, self.config.area, self._rng)
        speed = round(v.speed, 1)
        overspeed = speed > self.speed_limit
        if overspeed != self._overspeed:
            self._overspeed = overspeed
            if overspeed:
                self.counters.alarms_raised += 1
            else:
                self.counters.alarms_cleared += 1
        alarm = (ALARM_EMERGENCY if self._emergency else 0) | (ALARM_OVERSPEED if overspeed else 0)
        extras: dict[int, Any] = {}
        if not basic:
            gap = now < self._gap_until
            extras = {
                0x01: int(v.odometer_m / 100),
                0x30: 0 if gap else 18 + int(v.odometer_m) % 13,
                0x31: 6 + int(v.odometer_m / 7) % 12,
            }
            if overspeed:
                extras[0x11] = OverspeedAlarm(0)
        return Location(
            alarm=alarm,
            status=STATUS_ACC | STATUS_FIXED,
            latitude=round(v.latitude, 6),
            longitude=round(v.longitude, 6),
            altitude=int(v.altitude),
            speed=speed,
            direction=int(v.heading) % 360,
            time=beijing(now),
            extras=extras,
        )

    def _report(self, now: float) -> None:
        c = self.config
        if not self._emergency and c.alarm_probability and self._rng.random() < c.alarm_probability:
            self._emergency = True
            self.counters.alarms_raised += 1
        body = encode_body(self.location(now), self.version)
        self.counters.positions += 1
        if (
            self.state == ONLINE
            and self._inflight[0] < c.live_window
            and not self._backlog
        ):
            self.counters.sent += 1
            self._send_tracked(LOCATION, body, now, (body,))
        else:
            self._keep(body)
        if (
            self.state == ONLINE
            and c.gap_probability
            and self._rng.random() < c.gap_probability
        ):
            # Out of coverage: the link drops and the device cannot reconnect until the gap
            # ends; positions meanwhile go to the backlog.
            self._gap_until = now + c.gap_seconds * (0.5 + self._rng.random())
            self.counters.gaps += 1
            self._close()

    def _keep(self, body: bytes) -> None:
        self._backlog.append(body)
        excess = len(self._backlog) + self._inflight[2] - self.config.max_unacked
        for _ in range(max(0, excess)):
            if not self._backlog:
                break
            self._backlog.popleft()
            self.counters.dropped += 1

    def _requeue(self, groups: list[tuple[bytes, ...]]) -> None:
        """Positions that were sent and not acknowledged go back in front of the backlog."""
        for group in reversed(groups):
            self._backlog.extendleft(reversed(group))
        excess = len(self._backlog) + self._inflight[2] - self.config.max_unacked
        for _ in range(max(0, excess)):
            self._backlog.popleft()
            self.counters.dropped += 1

    def _flush(self, now: float) -> None:
        """Upload the backlog as blind-area batches, a few batches in flight at a time."""
        c = self.config
        backlog = self._backlog
        while (
            backlog
            and self.state == ONLINE
            and self._inflight[1] < c.batch_window
            and now >= self._hold_until
        ):
            bodies: list[bytes] = []
            size = _BATCH_HEAD.size
            while backlog and len(bodies) < c.batch_size:
                n = len(backlog[0]) + 2
                if bodies and size + n > MAX_BODY:
                    break
                size += n
                bodies.append(backlog.popleft())
            self.counters.batches += 1
            self.counters.sent += len(bodies)
            self._send_tracked(BATCH, batch_body(BATCH_BLIND_AREA, bodies), now, tuple(bodies))
            if self._link is None:
                return

    def _positions_answered(self, entry: _Outstanding, result: int, now: float) -> None:
        if result in (RESULT_OK, RESULT_ALARM_CONFIRMED):
            c = self.counters
            c.acknowledged += len(entry.positions)
            events = self.events
            for body in entry.positions:
                if body[3] & ALARM_EMERGENCY and self._emergency:
                    self._emergency = False
                    c.alarms_cleared += 1
                events.acknowledged(self, body, entry.serial)
            self._flush(now)
        else:
            # Refused (the platform could not store it, or does not take positions): keep
            # the positions and wait a while before offering them again.
            self.counters.refused += len(entry.positions)
            self._requeue([entry.positions])
            self._hold_until = now + self.timeout
            self._wake_at(self._hold_until)

    # -- sending --------------------------------------------------------------------------

    def _header(self, msg_id: int, serial: int) -> Header:
        if self.version == 2019:
            return Header(msg_id, self.phone, serial, 2019, 1)
        return Header(msg_id, self.phone, serial)

    def _take_serial(self, count: int = 1) -> int:
        serial = self._serial
        self._serial = (serial + count) & 0xFFFF
        return serial

    def _send(self, msg_id: int, body: bytes) -> int:
        serial = self._take_serial()
        if self._link is not None:
            self._link.send(build_frame(self._header(msg_id, serial), body))
        return serial

    def _send_tracked(
        self, msg_id: int, body: bytes, now: float, positions: tuple[bytes, ...] = ()
    ) -> None:
        serial = self._take_serial()
        frame = build_frame(self._header(msg_id, serial), body)
        self._track(msg_id, serial, frame, now, positions)
        if self._link is not None:
            self._link.send(frame)

    def _track(
        self, msg_id: int, serial: int, frame: bytes, now: float, positions: tuple[bytes, ...] = ()
    ) -> None:
        retransmission = Retransmission(self.timeout, self.retries)
        deadline = now + retransmission.wait
        key = serial << 16 | msg_id
        if key in self._outstanding:  # the serial wrapped around: keep what the old one had
            old = self._untrack(key)
            if old is not None and old.positions:
                self._requeue([old.positions])
        self._outstanding[key] = _Outstanding(msg_id, serial, frame, positions, retransmission,
                                              deadline)
        if msg_id in POSITION_IDS:
            self._inflight[msg_id == BATCH] += 1
            self._inflight[2] += len(positions)
        self._wake_at(deadline)

    def _untrack(self, key: int) -> _Outstanding | None:
        entry = self._outstanding.pop(key, None)
        if entry is not None and entry.msg_id in POSITION_IDS:
            self._inflight[entry.msg_id == BATCH] -= 1
            self._inflight[2] -= len(entry.positions)
        return entry

    def _waiting_for(self, msg_id: int) -> bool:
        return any(e.msg_id == msg_id for e in self._outstanding.values())

    def _retransmit(self, now: float) -> None:
        """Send again what is overdue (JT/T 808 §6.1: T, 2T, 6T... seconds after each send);
        give up after ``retries`` retransmissions."""
        due = [k for k, e in self._outstanding.items() if e.deadline <= now]
        for key in due:
            entry = self._outstanding.get(key)
            if entry is None or self._link is None:
                return
            if entry.retransmission.again():
                entry.deadline = now + entry.retransmission.wait
                self.counters.retransmissions += 1
                self._link.send(entry.frame)
                continue
            self._untrack(key)
            self.counters.timeouts += 1
            if entry.positions:
                self._requeue([entry.positions])
            elif entry.msg_id in (REGISTER, AUTHENTICATE, HEARTBEAT):
                # No answer to the session's own messages: the link is dead.
                self._close()
                return

    def _respond(self, h: Header, result: int = RESULT_OK) -> None:
        self._send(0x0001, encode_body(TerminalResponse(h.serial, h.msg_id, result), self.version))

    def _reply(self, msg_id: int, body: Any) -> None:
        """An untracked reply, sub-packaged if it does not fit one frame (then kept for
        0x8003 re-requests; ``lose_packet`` leaves one packet out of this first send)."""
        first = self._serial
        frames = encode_packets(self._header(msg_id, first), body)
        self._take_serial(len(frames))
        lose = 0
        if len(frames) > 1:
            if self._multipart is None:
                self._multipart = []
            self._multipart.append(_Multipart(-1, first, frames))
            del self._multipart[:-MAX_MULTIPART]
            lose = self.config.lose_packet
        if self._link is not None:
            for i, frame in enumerate(frames, 1):
                if i != lose:
                    self._link.send(frame)

    def _wake_at(self, when: float) -> None:
        if when < self.wake:
            self.wake = when

    # -- platform messages ----------------------------------------------------------------

    def _on_platform_response(self, h: Header, body: PlatformResponse, now: float) -> None:
        entry = self._untrack(body.reply_serial << 16 | body.reply_id)
        if entry is None:
            return  # late, duplicate, or for something we never sent
        if entry.msg_id == AUTHENTICATE:
            self._authenticated(body.result, now)
        elif entry.positions:
            self._positions_answered(entry, body.result, now)

    def _on_set_parameters(self, h: Header, body: SetParameters, now: float) -> None:
        params = body.as_dict()
        self._respond(h)
        for pid, attr, kind in _SETTABLE:
            value = params.pop(pid, None)
            if isinstance(value, int) and value > 0:
                setattr(self, attr, kind(value))
        main_hp = host_port(self.main)
        port = params.pop(0x0018, None)
        if not isinstance(port, int) or not 0 < port < 65536:
            port = main_hp[1] if main_hp else None
        host = main_hp[0] if main_hp else None
        server = params.pop(0x0013, None)
        if isinstance(server, str):
            parsed = parse_server(server, port)
            if parsed is not None:
                host, port = parsed
        backup = params.pop(0x0017, None)
        if isinstance(backup, str):
            # A backup without a port (2013 has one port for both) is taken to be on the
            # port of the server that sent it: the login server that redirects devices
            # names itself as the backup.
            here = host_port(self._connected_to)
            parsed = parse_server(backup, here[1] if here else None)
            self.backup_host, self.backup_port = parsed if parsed else (None, None)
        if params:
            if self._extra_params is None:
                self._extra_params = {}
            self._extra_params.update(params)
        back_to_main = isinstance(server, str) and self.using_backup
        if host is not None and port is not None and ((host, port) != main_hp or back_to_main):
            # The login server points us at a gateway (or a gateway elsewhere), or names the
            # main server while we are on the backup (login): go there now. A device that
            # stayed would come back to login after every session it closes, in a loop.
            self.main = tcp_endpoint(host, port)
            self.using_backup = False
            self._failures = 0
            self._redirect = True
            self.counters.redirects += 1
            self._close()

    def parameters(self) -> dict[int, Any]:
        """The parameter table 0x0104 reports."""
        main = host_port(self.main)
        table: dict[int, Any] = {
            0x0001: max(1, round(self.heartbeat)),
            0x0002: max(1, round(self.timeout)),
            0x0003: self.retries,
            0x0013: main[0] if main else self.main,
            0x0017: self.backup_host or "",
            0x0018: main[1] if main else 0,
            0x0029: max(1, round(self.interval)),
            0x0055: self.speed_limit,
            0x0080: int(self.vehicle.odometer_m / 100),
            0x0081: self.config.province,
            0x0082: self.config.city,
            0x0083: self.plate,
            0x0084: self.config.plate_color,
        }
        if self._extra_params:
            table.update(self._extra_params)
        return table

    def _on_query_parameters(self, h: Header, body: Any, now: float) -> None:
        table = self.parameters()
        if isinstance(body, QuerySpecifiedParameters):
            items = [(i, table[i]) for i in body.ids if i in table]
        else:
            items = sorted(table.items())
        self._reply(0x0104, ParametersResponse(h.serial, items))

    def _on_query_location(self, h: Header, body: Any, now: float) -> None:
        self._reply(0x0201, LocationQueryResponse(h.serial, self.location(now)))

    def _on_acknowledge_only(self, h: Header, body: Any, now: float) -> None:
        self._respond(h)

    def _on_take_photo(self, h: Header, body: TakePhoto, now: float) -> None:
        if body.command in (SHOOT_STOP, SHOOT_VIDEO):
            result = RESULT_UNSUPPORTED if body.command == SHOOT_VIDEO else RESULT_OK
            self._reply(0x0805, TakePhotoResponse(h.serial, result))
            return
        count = min(body.command, 3)
        ids = []
        for _ in range(count):
            self._media_id = (self._media_id + 1) & 0xFFFFFFFF
            ids.append(self._media_id)
        self._reply(0x0805, TakePhotoResponse(h.serial, RESULT_OK, ids))
        low, high = self.config.photo_size
        where = self.location(now, basic=True)
        for media_id in ids:
            self.counters.photos += 1
            data = MultimediaData(
                media_id, MEDIA_IMAGE, FORMAT_JPEG, EVENT_PLATFORM, body.channel, where,
                photo_jpeg(self._rng, self._rng.randint(low, high)),
            )
            self._send_multipart(MEDIA_DATA, data, media_id, now)

    def _send_multipart(self, msg_id: int, body: Any, media_id: int, now: float) -> None:
        first = self._serial
        frames = encode_packets(self._header(msg_id, first), body)
        self._take_serial(len(frames))
        if self._multipart is None:
            self._multipart = []
        self._multipart.append(_Multipart(media_id, first, frames))
        del self._multipart[:-MAX_MULTIPART]
        for i, frame in enumerate(frames):
            self._track(msg_id, (first + i) & 0xFFFF, frame, now)
            if self._link is not None:
                self._link.send(frame)

    def _resend_packets(self, part: _Multipart, indexes: tuple[int, ...]) -> None:
        for index in indexes or range(1, len(part.frames) + 1):
            if 1 <= index <= len(part.frames) and self._link is not None:
                self.counters.resent_packets += 1
                self._link.send(part.frames[index - 1])

    def _on_resend_request(self, h: Header, body: ResendRequest, now: float) -> None:
        for part in self._multipart or ():
            if part.first_serial == body.first_serial:
                self._resend_packets(part, body.indexes)
                return
        self._respond(h, RESULT_FAILED)

    def _on_media_response(self, h: Header, body: MultimediaUploadResponse, now: float) -> None:
        for part in self._multipart or ():
            if part.media_id == body.media_id:
                if body.retransmit_ids:
                    self._resend_packets(part, body.retransmit_ids)
                    return
                # Everything arrived: stop waiting for the packets' own answers.
                for i in range(len(part.frames)):
                    self._untrack(((part.first_serial + i) & 0xFFFF) << 16 | MEDIA_DATA)
                assert self._multipart is not None
                self._multipart.remove(part)
                return

    # -- cameras (JT/T 1078); the streams themselves are the owner's (cmsv6.sim.video) ----

    def video_codec(self, channel: int) -> int:
        """The table 12 code of what a channel's camera encodes (H.264 or H.265)."""
        return AvCodec.H265 if channel in self.config.h265_channels else AvCodec.H264

    def attributes(self) -> AvAttributes:
        """The 0x1003 of the simulated cameras: the configured audio codec at 8 kHz mono
        16-bit in 40 ms frames (320 samples), a loudspeaker unless ``audio_output`` is off;
        H.265 when any channel sends it, else H.264."""
        channels = self.config.channels
        h265 = any(1 <= c <= channels for c in self.config.h265_channels)
        return AvAttributes(
            audio_codec=payload_type(self.config.audio_codec),
            audio_channels=1,
            audio_sample_rate=AudioSampleRate.HZ_8000,
            audio_sample_bits=1,  # 16 bits
            audio_frame_length=320,
            audio_output=1 if self.config.audio_output else 0,
            video_codec=AvCodec.H265 if h265 else AvCodec.H264,
            max_audio_channels=channels,
            max_video_channels=channels,
        )

    def _has_channel(self, channel: int) -> bool:
        return 1 <= channel <= self.config.channels

    def _on_query_av(self, h: Header, body: Any, now: float) -> None:
        if not self.config.channels:
            self._respond(h, RESULT_UNSUPPORTED)
            return
        self._reply(0x1003, self.attributes())

    def _on_realtime_av(self, h: Header, body: RealtimeAvRequest, now: float) -> None:
        if not self.config.channels:
            self._respond(h, RESULT_UNSUPPORTED)
            return
        talk = body.data_type in (RequestDataType.TALK, RequestDataType.BROADCAST)
        if not (body.data_type in _SERVED or (talk and self.config.audio_output)):
            # pass-through; talk-back and broadcast without a loudspeaker
            self._respond(h, RESULT_UNSUPPORTED)
            return
        if (
            not self._has_channel(body.channel)
            or (not talk and body.stream_type not in (LiveStream.MAIN, LiveStream.SUB))
            or not body.server_ip
            or not body.tcp_port
        ):
            self._respond(h, RESULT_FAILED)
            return
        self._respond(h)
        self.events.stream_requested(self, body)

    def _on_av_control(self, h: Header, body: AvTransmissionControl, now: float) -> None:
        if not self.config.channels:
            self._respond(h, RESULT_UNSUPPORTED)
            return
        if not self._has_channel(body.channel) or body.command > ControlCommand.CLOSE_TALK:
            self._respond(h, RESULT_FAILED)
            return
        self._respond(h)
        self.events.stream_control(self, body)

    # -- recordings (JT/T 1078 5.6) -------------------------------------------------------

    def recordings(self, query: QueryResources, now: float) -> list[Any]:
        """The 0x1205 items answering a 0x9205 (``cmsv6.sim.recordings``)."""
        c = self.config
        return recordings.query(self.phone, c.channels, c.recording_days, query, now)

    def _on_query_recordings(self, h: Header, body: QueryResources, now: float) -> None:
        if not self.config.channels:
            self._respond(h, RESULT_UNSUPPORTED)
            return
        self._reply(0x1205, ResourceList(h.serial, self.recordings(body, now)))

    def _on_playback(self, h: Header, body: PlaybackRequest, now: float) -> None:
        if not self.config.channels:
            self._respond(h, RESULT_UNSUPPORTED)
            return
        if (
            not self._has_channel(body.channel)
            or not body.server_ip
            or not body.tcp_port
            or body.start is None
            or (body.end is not None and body.end <= body.start)
            or body.mode > PlaybackMode.SINGLE_FRAME
            or body.speed > PlaybackSpeed.X16
        ):
            self._respond(h, RESULT_FAILED)
            return
        self._respond(h)
        self.events.playback_requested(self, body)

    def _on_playback_control(self, h: Header, body: PlaybackControl, now: float) -> None:
        if not self.config.channels:
            self._respond(h, RESULT_UNSUPPORTED)
            return
        ok = self._has_channel(body.channel) and self.events.playback_control(self, body)
        self._respond(h, RESULT_OK if ok else RESULT_FAILED)

    # -- pan/tilt/zoom (JT/T 1078 5.7) ----------------------------------------------------

    def _on_ptz(self, h: Header, body: Any, now: float) -> None:
        if not self.config.channels:
            self._respond(h, RESULT_UNSUPPORTED)
            return
        if not self._has_channel(body.channel):
            self._respond(h, RESULT_FAILED)
            return
        state = self.ptz.setdefault(body.channel, Ptz())
        what = state.apply(h.msg_id, body)
        _log.info("{phone} channel {channel}: {what}", phone=self.phone, channel=body.channel,
                  what=what)
        self._respond(h)


_DIRECTIONS = {0: "stop", 1: "up", 2: "down", 3: "left", 4: "right"}


@define
class Ptz:
    """A camera's pan/tilt/zoom state: what turns now and how often each knob was moved
    (``focus``, ``iris`` and ``zoom`` count steps: +1 up/in, -1 down/out)."""

    direction: int = PtzDirection.STOP
    speed: int = 0
    focus: int = 0
    iris: int = 0
    zoom: int = 0
    wiper: bool = False
    infrared: bool = False
    #: The last command, in words.
    last: str = ""

    def apply(self, msg_id: int, body: Any) -> str:
        """Take a 0x9301-0x9306 body; what it did, in words."""
        if msg_id == 0x9301:
            self.direction, self.speed = body.direction, body.speed
            way = _DIRECTIONS.get(body.direction, f"direction {body.direction}")
            what = "rotation stopped" if way == "stop" else f"rotate {way} at speed {body.speed}"
        elif msg_id in (0x9302, 0x9303, 0x9306):
            name = {0x9302: "focus", 0x9303: "iris", 0x9306: "zoom"}[msg_id]
            step = 1 if body.adjust == 0 else -1
            setattr(self, name, getattr(self, name) + step)
            words = {"focus": ("focus far", "focus near"), "iris": ("iris open", "iris close"),
                     "zoom": ("zoom in", "zoom out")}[name]
            what = words[0] if step > 0 else words[1]
        else:
            name = "wiper" if msg_id == 0x9304 else "infrared"
            on = body.action == 1
            setattr(self, name, on)
            label = "wiper" if name == "wiper" else "infrared light"
            what = f"{label} {'on' if on else 'off'}"
        self.last = what
        return what


#: 0x9101 data types the cameras serve.
_SERVED = (RequestDataType.AUDIO_VIDEO, RequestDataType.VIDEO, RequestDataType.LISTEN)


def _is_command(msg_id: int) -> bool:
    return bool(msg_id & 0x8000) and msg_id not in _RESPONSES


def _on_ignore(device: Device, h: Header, body: Any, now: float) -> None:
    pass


#: Parameters applied from 0x8103: id, attribute, type.
_SETTABLE: tuple[tuple[int, str, Callable[[int], Any]], ...] = (
    (0x0001, "heartbeat", float),
    (0x0002, "timeout", float),
    (0x0003, "retries", int),
    (0x0029, "interval", float),
    (0x0055, "speed_limit", int),
)

#: Platform messages that answer the terminal (not commands to count or answer).
_RESPONSES = frozenset({0x8001, 0x8100, 0x8800, 0x8004})

_HANDLERS: dict[int, Callable[[Device, Header, Any, float], None]] = {
    0x8001: Device._on_platform_response,
    0x8100: Device._on_register_response,
    0x8103: Device._on_set_parameters,
    0x8104: Device._on_query_parameters,
    0x8106: Device._on_query_parameters,
    0x8105: Device._on_acknowledge_only,
    0x8201: Device._on_query_location,
    0x8300: Device._on_acknowledge_only,
    0x8801: Device._on_take_photo,
    0x8800: Device._on_media_response,
    0x8003: Device._on_resend_request,
    0x8004: _on_ignore,
    0x9003: Device._on_query_av,
    0x9101: Device._on_realtime_av,
    0x9102: Device._on_av_control,
    0x9205: Device._on_query_recordings,
    0x9201: Device._on_playback,
    0x9202: Device._on_playback_control,
    **{msg_id: Device._on_ptz for msg_id in range(0x9301, 0x9307)},
}
