"""Talk-back on the media server: a browser's microphone to the unit, the unit's audio back.

``GET /talk/{phone}/{channel}?token=T`` is a WebSocket (a plain GET is answered 400). The
token is a viewing token for stream "talk" with params ``{"id": SESSION, "broadcast":
bool}`` (login's Open API signs it). A session:

1. asks the unit's audio attributes (0x9003 through ``media.opener.send``). A 0x1003 that
   says the unit has no audio output ends the session at once, in words (close 4502). A
   unit that does not answer is talked to anyway, in the codec of its own audio packets;
2. asks the unit to open talk-back (0x9101: our ``public_jt1078``, the channel, data type
   2, or 4 for a broadcast, main stream) and waits ``open_timeout`` seconds for its
   JT/T 1078 connection, which it takes before live streams do (``media.claimants``);
3. waits up to ``FIRST_AUDIO_WAIT`` seconds for the unit's first audio packet (its codec,
   frame length and HiSilicon header are what the unit takes back), then tells the
   browser ``{"type": "ready", "codec": "g711a"|"g711u"|"g726"|"adpcm", "frame_samples":
   N}``. The codec is the 0x1003's if we can encode it, else the packets', else G.711A;
   the frame length the 0x1003's, else the packets', else 320 (40 ms);
4. then the browser's binary messages (PCM s16le mono 8 kHz, at most ``MAX_MESSAGE``
   bytes) go through ``cmsv6.media.talk.TalkEncoder`` into JT/T 1078 audio packets (the
   unit's SIM as its packets carry it, the channel, our own sequence numbers and ms
   timestamps) down the unit's connection, one frame every frame length: PCM that would
   make more than ``MAX_QUEUED`` samples (2 s) wait is dropped and counted. The unit's
   audio comes back through ``cmsv6.media.audio.AudioTranscoder`` as AAC, in an
   audio-only FLV stream of binary messages (PCM sent before "ready" is dropped too);
5. ends when either side goes: 0x9102 command 4 (close talk-back) is sent and the unit's
   connection released. An error is said to the browser as ``{"type": "error", "error":
   words}`` then a close frame with a code of ``cmsv6.plugins.media.fanout``'s.

One session per unit channel at a time: a second is refused in words (4029).
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource as web_resource
from twisted.web import server

from cmsv6.address import split_address
from cmsv6.media.audio import AudioTranscoder, TranscodeError
from cmsv6.media.talk import (
    DEFAULT_FRAME_SAMPLES,
    DEFAULT_G726_BITS,
    MAX_FRAME_SAMPLES,
    RATE,
    TalkEncoder,
    TalkError,
    codec_of,
)
from cmsv6.phone import canonical_phone
from cmsv6.plugins.media.fanout import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_TOO_MANY,
    CLOSE_UNSUPPORTED,
    DeviceStream,
    StreamKey,
    ViewerError,
    bad_request,
    device_error,
)
from cmsv6.web.bounded import bounded_socket
from cmsv6.protocols.flv.tags import TagType, file_header, script_tag, tag
from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.messages.jt1078 import (
    AvAttributes,
    AvTransmissionControl,
    ControlCommand,
    LiveStream,
    RealtimeAvRequest,
    RequestDataType,
    codec_name,
)
from cmsv6.protocols.jt1078.audio import IMA_STATE_SIZE, strip_hisilicon
from cmsv6.protocols.jt1078.frames import Frame, Track
from cmsv6.protocols.jt1078.packet import (
    DataType,
    Packet,
    PacketError,
    build_packet,
    split_frame,
)
from cmsv6.protocols.jt1078.sim import SimIdentity
from cmsv6.rpc.replies import accepted

_log = Logger()

#: Bytes of one WebSocket message either way: 4096 bytes of PCM are 256 ms.
MAX_MESSAGE = 4096
#: Samples of the browser's audio that may wait to go down (2 s); more is dropped.
MAX_QUEUED = 2 * RATE
#: Seconds the unit's 0x1003 is waited for (it is asked before talk-back is opened).
ATTRIBUTES_TIMEOUT = 5.0
#: Seconds after the unit's connection comes that its first audio packet is waited for.
FIRST_AUDIO_WAIT = 1.0
#: Seconds between two log lines about one session's dropped audio.
LOG_EVERY = 30.0
_PATH = re.compile(r"^/talk/([^/]{1,40})/([0-9]{1,3})$")
#: A token that grants something else (``MediaServer.grant``).
_REFUSAL = ("the token grants device {view.phone} channel {view.channel} ({view.stream}), not"
            " talk-back with device {phone} channel {channel}")
_AAC_CONFIG = b"\xaf\x00"  # AAC, 44 kHz / 16-bit / stereo as FLV requires for AAC; config
_AAC_FRAME = b"\xaf\x01"


def authorize(media: Any, path: str, params: dict[str, list[str]]) -> tuple[str, int, str, bool]:
    """(phone, channel, session id, broadcast) of a talk-back URL whose token grants it;
    ViewerError in words otherwise."""
    m = _PATH.match(path)
    if m is None:
        raise bad_request(f"{path[:80]!r} is not /talk/PHONE/CHANNEL")
    token = (params.get("token") or [""])[0]
    phone, number, view = media.grant(m.group(1), m.group(2), "talk", token, _REFUSAL)
    extra = view.params or {}
    session, broadcast = extra.get("id"), extra.get("broadcast", False)
    if not isinstance(session, str) or not isinstance(broadcast, bool):
        raise bad_request('a talk-back token has params {"id": text, "broadcast": true or false}')
    return phone, number, session, broadcast


def flv_start(config: bytes) -> bytes:
    """An audio-only FLV's header, onMetaData and the AAC sequence header."""
    meta = {"duration": 0, "hasAudio": True, "hasVideo": False, "audiocodecid": 10,
            "audiosamplerate": RATE, "stereo": False}  # fmt: skip
    return (file_header(audio=True, video=False) + script_tag("onMetaData", meta)
            + tag(TagType.AUDIO, 0, _AAC_CONFIG + config))  # fmt: skip


class TalkStream(DeviceStream):
    """What the unit's talk-back connection feeds: its frames go to the session."""

    def __init__(self, session: TalkSession) -> None:
        media = session.media
        super().__init__(session.key, media.config.viewer_queue, media.counters, media.now)
        self.session = session

    def push(self, frame: Frame) -> None:
        try:
            self.session.uplink(frame)
        except Exception:  # noqa: BLE001 - the unit's audio never breaks its connection
            _log.failure("{key}: the unit's audio", key=self.key)

    def source_lost(self, connection: Any, reason: str) -> None:
        self.session.device_lost(connection, reason)


class TalkSession:
    """One browser talking with one unit channel (see the module docstring). ``browser``
    has ``text(obj)``, ``binary(data)``, ``close(error)`` and ``full`` (its connection
    cannot take more now)."""

    def __init__(self, hub: TalkHub, browser: Any, phone: str, channel: int, session_id: str,
                 broadcast: bool) -> None:  # fmt: skip
        self.hub = hub
        self.media = hub.media
        self.reactor = hub.reactor
        self.browser = browser
        self.phone = phone
        self.channel = channel
        self.id = session_id
        self.broadcast = broadcast
        self.key = StreamKey(phone, channel, "talk")
        self.stream = TalkStream(self)
        #: "asking" (0x9003), "opening" (0x9101), "waiting" (the unit's connection),
        #: "claimed" (its first audio), "talking", "ended".
        self.state = "asking"
        self.attributes: AvAttributes | None = None
        self.connection: Any = None
        self.identity: SimIdentity | None = None
        self.first_audio: Frame | None = None
        self.encoder: TalkEncoder | None = None
        self.transcoder: AudioTranscoder | None = None
        self._transcoder_type: int | None = None
        self._up_started = False
        self._up_first: int | None = None
        self._up_last = 0
        #: The unit's frames waiting to go down, and the pacing of them.
        self.down: deque[bytes] = deque()
        self._pacer: IDelayedCall | None = None
        self._due: float | None = None
        self._timer: IDelayedCall | None = None
        self._t0 = 0
        self._sent_samples = 0
        self._sequence = 0
        #: 0x9101 was accepted (or not answered): 0x9102 closes it.
        self.opened = False
        #: Counts: frames sent down, PCM samples dropped, AAC frames sent up.
        self.frames_down = 0
        self.dropped = 0
        self.frames_up = 0
        self._logged = float("-inf")

    def __str__(self) -> str:
        what = "broadcast" if self.broadcast else "talk-back"
        return f"device {self.phone} channel {self.channel} ({what} {self.id[:32]})"

    # -- opening -------------------------------------------------------------------------------

    def start(self) -> None:
        self.media.counters["talks"] += 1
        _log.info("{s}: asking the unit's audio attributes (0x9003)", s=self)
        d = self._send(0x9003, b"", ATTRIBUTES_TIMEOUT)
        d.addCallbacks(self._attributes, self._no_attributes)
        d.addErrback(self._crashed)

    def _send(self, msg_id: int, body: bytes, timeout: float) -> defer.Deferred[Any]:
        try:
            d = defer.maybeDeferred(self.media.opener.send, self.phone, msg_id, body)
        except Exception as e:  # noqa: BLE001 - maybeDeferred catches; belt and braces
            d = defer.fail(e)
        return d.addTimeout(timeout, self.reactor)

    def _attributes(self, reply: dict[str, Any]) -> None:
        if self.state != "asking":
            return
        if reply.get("msg_id") != 0x1003:
            _log.info("{s}: 0x9003 answered with 0x{id:04x}, not 0x1003; going by its audio"
                      " packets", s=self, id=reply.get("msg_id", 0))  # fmt: skip
        else:
            try:
                self.attributes = decode_body(0x1003, reply["body"], reply.get("version", 2013))
            except CodecError as e:
                _log.warn("{s}: its 0x1003 does not decode ({e}); going by its audio packets",
                          s=self, e=e)  # fmt: skip
        attributes = self.attributes
        if attributes is not None and not attributes.audio_output:
            self.media.counters["talk_failures"] += 1
            self.end(device_error(f"device {self.phone} has no audio output (its 0x1003"
                                  " attributes say so): it cannot play talk-back"))  # fmt: skip
            return
        self._open()

    def _no_attributes(self, failure: Failure) -> None:
        if self.state != "asking":
            return
        why = "no answer" if failure.check(defer.TimeoutError) else failure.getErrorMessage()
        _log.info("{s}: no 0x1003 ({why}); going by its audio packets", s=self, why=why)
        self._open()

    def _open(self) -> None:
        self.state = "opening"
        host, port = split_address(self.media.config.public_jt1078)
        kind = RequestDataType.BROADCAST if self.broadcast else RequestDataType.TALK
        request = RealtimeAvRequest(host, port, 0, self.channel, kind, LiveStream.MAIN)
        what = f"0x9101 ({'broadcast' if self.broadcast else 'talk-back'} on channel {self.channel})"
        d = self._send(0x9101, encode_body(request), self.media.config.open_timeout)
        d.addCallback(accepted, self.phone, 0x9101, what)
        d.addCallbacks(self._opened, self._open_failed)
        d.addErrback(self._crashed)

    def _opened(self, _: Any) -> None:
        self.opened = True
        if self.state == "ended":
            self._ask_close()  # ended meanwhile
            return
        if self.state != "opening":
            return  # the unit's connection came before its answer did
        self.state = "waiting"
        self._timer = self.reactor.callLater(self.media.config.open_timeout, self._no_device)

    def _open_failed(self, failure: Failure) -> None:
        if failure.check(defer.TimeoutError):
            reason = (f"device {self.phone}: the request to open talk-back (0x9101) got no answer"
                      f" within {self.media.config.open_timeout:g} s")  # fmt: skip
            if self.state == "ended":
                self._ask_close()  # it may have opened meanwhile
            self.opened = True  # ... so end() tells it to stop
        else:
            reason = str(failure.value) or failure.getErrorMessage()
        if self.state != "opening":
            return
        self.media.counters["talk_failures"] += 1
        self.end(device_error(reason))

    def _no_device(self) -> None:
        self._timer = None
        if self.state != "waiting":
            return
        self.media.counters["talk_failures"] += 1
        self.end(device_error(f"device {self.phone} accepted talk-back (0x9101) but did not"
                              f" connect within {self.media.config.open_timeout:g} s"))  # fmt: skip

    def claim(self, connection: Any, identity: SimIdentity) -> TalkStream:
        """The unit's connection has come (``TalkHub.claim``)."""
        self._cancel_timer()
        self.state = "claimed"
        self.connection = connection
        self.identity = identity
        self.stream.source = connection
        if self.broadcast:
            # A unit listening to a broadcast may send nothing up: its connection is ended
            # by the browser's, not by the silence.
            connection.setTimeout(None)
        self._timer = self.reactor.callLater(FIRST_AUDIO_WAIT, self._ready)
        _log.info("{s}: the unit's connection from {peer}", s=self, peer=connection.peer)
        return self.stream

    def _ready(self) -> None:
        """The unit's codec is known (or will never be better known): talk."""
        self._timer = None
        if self.state != "claimed":
            return
        try:
            self.encoder = self._encoder()
        except TalkError as e:
            self.media.counters["talk_failures"] += 1
            self.end(ViewerError(CLOSE_UNSUPPORTED, 415, f"device {self.phone}: {e}"))
            return
        self.state = "talking"
        self._t0 = int(self.reactor.seconds() * 1000)
        encoder = self.encoder
        _log.info("{s}: talking in {codec}, {n}-sample frames{hisilicon}", s=self,
                  codec=encoder.codec, n=encoder.frame_samples,
                  hisilicon=" with the HiSilicon header" if encoder.hisilicon else "")  # fmt: skip
        self.browser.text({"type": "ready", "codec": encoder.codec,
                           "frame_samples": encoder.frame_samples})  # fmt: skip
        if self.first_audio is not None:
            self._up(self.first_audio)

    def _encoder(self) -> TalkEncoder:
        """The unit's codec: its 0x1003's, else its packets', else G.711A (see ``TalkError``
        for one we cannot encode)."""
        attributes, first = self.attributes, self.first_audio
        said = [c for c in (attributes and attributes.audio_codec, first and first.payload_type) if c]
        codec = next((codec_of(c) for c in said if codec_of(c) is not None), None)
        if codec is None and said:
            raise TalkError(f"its audio is {codec_name(said[0])}; talk-back speaks G.711A, G.711U,"
                            " G.726 and IMA-ADPCM")  # fmt: skip
        codec = codec or "g711a"
        payload, hisilicon = strip_hisilicon(first.payload) if first is not None else (b"", False)
        own = first is not None and codec_of(first.payload_type) == codec
        frame = None
        if attributes is not None and 0 < attributes.audio_frame_length <= MAX_FRAME_SAMPLES:
            frame = attributes.audio_frame_length
        elif own and codec in ("g711a", "g711u"):
            frame = len(payload)
        elif own and codec == "adpcm":
            frame = 2 * (len(payload) - IMA_STATE_SIZE)
        bits = DEFAULT_G726_BITS
        if own and codec == "g726" and frame:
            bits, rest = divmod(len(payload) * 8, frame)
            bits = bits if not rest and 2 <= bits <= 5 else DEFAULT_G726_BITS
        options: dict[str, Any] = {"g726_bits": bits, "hisilicon": hisilicon}
        for samples in (frame, DEFAULT_FRAME_SAMPLES):
            if samples is None or not 0 < samples <= MAX_FRAME_SAMPLES:
                continue
            try:
                return TalkEncoder(codec, samples, **options)
            except TalkError as e:
                _log.warn("{s}: {e}; trying {n}-sample frames", s=self, e=e,
                          n=DEFAULT_FRAME_SAMPLES)  # fmt: skip
        return TalkEncoder(codec, DEFAULT_FRAME_SAMPLES, g726_bits=bits)

    # -- the unit's audio up -------------------------------------------------------------------

    def uplink(self, frame: Frame) -> None:
        if frame.track is not Track.AUDIO or not frame.payload:
            return
        if self.state == "claimed":
            if self.first_audio is None:
                self.first_audio = frame
                self._cancel_timer()
                self._ready()
            return
        if self.state == "talking":
            self._up(frame)

    def _up(self, frame: Frame) -> None:
        pt = frame.payload_type
        if pt != self._transcoder_type:
            self._transcoder_type = pt
            self.transcoder = None
            try:
                self.transcoder = AudioTranscoder.for_payload_type(pt)
            except TranscodeError as e:
                _log.warn("{s}: the unit's audio is not sent to the browser: {e}", s=self, e=e)
        transcoder = self.transcoder
        if transcoder is None:
            self.media.counters["dropped:talk-back audio the browser cannot be given"] += 1
            return
        for aac in transcoder.feed(frame.payload, frame.timestamp or 0):
            if not self._up_started:
                self._up_started = True
                self._up_first = aac.timestamp
                self.browser.binary(flv_start(aac.config))
            if self.browser.full:
                self.media.counters["dropped:talk-back browser not keeping up"] += 1
                continue
            at = max(self._up_last, aac.timestamp - (self._up_first or 0))
            self._up_last = at
            self.frames_up += 1
            self.browser.binary(tag(TagType.AUDIO, at, _AAC_FRAME + aac.data))

    # -- the browser's audio down --------------------------------------------------------------

    def pcm(self, data: bytes) -> None:
        """A binary message from the browser."""
        encoder = self.encoder
        if self.state != "talking" or encoder is None:
            self._drop(len(data) // 2, "before the unit was ready")
            return
        queued = encoder.buffered + len(self.down) * encoder.frame_samples
        if queued + len(data) // 2 > MAX_QUEUED:
            self._drop(len(data) // 2, f"more than {MAX_QUEUED // RATE} s waiting")
            return
        self.down.extend(encoder.feed(data))
        self._pace()

    def _drop(self, samples: int, why: str) -> None:
        self.dropped += samples
        self.media.counters[f"dropped:talk-back audio {why}"] += 1
        now = self.reactor.seconds()
        if now - self._logged >= LOG_EVERY:
            self._logged = now
            _log.info("{s}: browser audio dropped ({n} samples so far): {why}", s=self,
                      n=self.dropped, why=why)  # fmt: skip

    def _pace(self) -> None:
        """One frame down now, the next when it is due: the unit plays them in real time."""
        if self._pacer is not None or not self.down or self.encoder is None:
            return
        now = self.reactor.seconds()
        step = self.encoder.frame_samples / RATE
        if self._due is None or self._due < now - step:
            self._due = now  # idle: start again from now, not with a burst
        self._write(self.down.popleft())
        self._due += step
        self._pacer = self.reactor.callLater(max(0.0, self._due - now), self._tick)

    def _tick(self) -> None:
        self._pacer = None
        if self.state == "talking":
            self._pace()

    def _write(self, payload: bytes) -> None:
        connection, identity, encoder = self.connection, self.identity, self.encoder
        if connection is None or identity is None or encoder is None:
            return
        timestamp = self._t0 + self._sent_samples * 1000 // RATE
        template = Packet(sim=identity.seen, channel=self.channel, data_type=DataType.AUDIO,
                          timestamp=timestamp, payload_type=encoder.payload_type,
                          sequence=self._sequence)  # fmt: skip
        try:
            packets = split_frame(template, payload)
            data = b"".join(build_packet(p) for p in packets)
        except PacketError as e:  # a SIM the unit sent that we cannot send back
            self.end(ViewerError(CLOSE_INTERNAL, 500, f"{self}: audio packets: {e}"))
            return
        self._sequence = (self._sequence + len(packets)) & 0xFFFF
        self._sent_samples += encoder.frame_samples
        self.frames_down += 1
        self.media.counters["talk_frames_down"] += 1
        connection.transport.write(data)

    # -- ending --------------------------------------------------------------------------------

    def device_lost(self, connection: Any, reason: str) -> None:
        if connection is not self.connection:
            return
        self.connection = None
        self.stream.source = None
        self.end(device_error(f"device {self.phone} closed its talk-back connection (channel"
                              f" {self.channel}): {reason}"))  # fmt: skip

    def browser_gone(self) -> None:
        self.end(None)

    def end(self, error: ViewerError | None) -> None:
        """The session is over: the unit told (0x9102) and its connection released; the
        browser told why (``error``) unless it left."""
        if self.state == "ended":
            return
        self.state = "ended"
        self._cancel_timer()
        if self._pacer is not None and self._pacer.active():
            self._pacer.cancel()
        self._pacer = None
        self.down.clear()
        self.hub.forget(self)
        if error is not None:
            _log.info("{s}: ended: {e}", s=self, e=error)
        else:
            _log.info("{s}: ended by the browser ({n} frames sent down, {m} up)", s=self,
                      n=self.frames_down, m=self.frames_up)  # fmt: skip
        if self.opened:
            self._ask_close()
        connection, self.connection = self.connection, None
        self.stream.source = None
        if connection is not None:
            connection.release(self.stream)
        try:
            self.browser.close(error)
        except Exception:  # noqa: BLE001 - a connection already gone
            _log.failure("{s}: closing the browser's connection", s=self)

    def _ask_close(self) -> None:
        body = encode_body(AvTransmissionControl(self.channel, ControlCommand.CLOSE_TALK))
        d = self._send(0x9102, body, self.media.config.open_timeout)
        d.addCallback(accepted, self.phone, 0x9102, f"0x9102 (close talk-back on channel {self.channel})")
        d.addErrback(lambda f: _log.warn("{s}: talk-back not closed on the unit: {e}", s=self,
                                         e=str(f.value) or f.getErrorMessage()))  # fmt: skip

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _crashed(self, failure: Failure) -> None:
        _log.failure("{s}: internal error", failure, s=self)
        self.end(ViewerError(CLOSE_INTERNAL, 500, "internal error of the media server"))


class TalkHub:
    """A media server's talk-back sessions, one per unit channel; registered with its
    hooks (claimants, stop, load)."""

    def __init__(self, media: Any, reactor: Any) -> None:
        self.media = media
        self.reactor = reactor
        self.sessions: dict[tuple[str, int], TalkSession] = {}
        media.claimants.append(self.claim)
        media.on_stop.append(self.stop)
        media.loads.append(self.load)

    def begin(self, browser: Any, phone: str, channel: int, session_id: str,
              broadcast: bool) -> TalkSession:  # fmt: skip
        """A new session, or ViewerError (in words) when it may not be."""
        media = self.media
        if media.stopping:
            raise ViewerError(CLOSE_GOING_AWAY, 503, "the media server is stopping")
        other = self.sessions.get((phone, channel))
        if other is not None:
            media.counters["refused:talk-back busy"] += 1
            raise ViewerError(CLOSE_TOO_MANY, 503,
                              f"device {phone} channel {channel} is in a talk-back session"
                              " already; one at a time per channel")  # fmt: skip
        if len(media.viewers) + len(self.sessions) >= media.config.max_viewers:
            media.counters["refused:too many viewers"] += 1
            raise ViewerError(CLOSE_TOO_MANY, 503,
                              f"this media server serves {media.config.max_viewers} viewers"
                              " already; try again later")  # fmt: skip
        session = TalkSession(self, browser, phone, channel, session_id, broadcast)
        self.sessions[(phone, channel)] = session
        session.start()
        return session

    def forget(self, session: TalkSession) -> None:
        if self.sessions.get((session.phone, session.channel)) is session:
            del self.sessions[(session.phone, session.channel)]

    def claim(self, connection: Any, identity: SimIdentity, channel: int) -> DeviceStream | None:
        """``MediaServer.claimants``: the session waiting for this unit's channel, if any."""
        for candidate in identity.candidates():
            session = self.sessions.get((canonical_phone(candidate), channel))
            # Its answer to 0x9101 may come after its connection (through login).
            if session is not None and session.state in ("opening", "waiting"):
                return session.claim(connection, identity)
        return None

    def stop(self) -> None:
        for session in list(self.sessions.values()):
            session.end(ViewerError(CLOSE_GOING_AWAY, 503, "the media server is stopping"))

    def load(self) -> dict[str, int]:
        live = sum(1 for s in self.sessions.values() if s.connection is not None)
        return {"streams": live, "viewers": len(self.sessions)}


# -- the browser's WebSocket ---------------------------------------------------------------------


class TalkSocket(WebSocketServerProtocol):
    """A browser's talk-back WebSocket: PCM in, FLV and JSON out (module docstring)."""

    factory: TalkSocketFactory
    refused: ViewerError | None = None
    session: TalkSession | None = None
    paused = False
    closing = False

    def onConnect(self, request: ConnectionRequest) -> None:
        media = self.factory.hub.media
        try:
            self.grant = authorize(media, request.path, request.params)
        except ViewerError as e:
            media.counters[f"refused:{e.status}"] += 1
            _log.info("talk-back {peer} refused: {e}", peer=self.peer, e=e)
            self.refused = e  # said with a close frame once open: a browser sees no status

    def onOpen(self) -> None:
        if self.refused is None:
            # The HTTP channel that served the upgrade is the transport's producer: the
            # socket takes its place to learn when the browser's connection is full.
            try:
                self.transport.unregisterProducer()
                self.transport.registerProducer(self, True)
            except Exception:  # noqa: BLE001 - a transport without producers: no flow control
                _log.warn("talk-back {peer} without flow control", peer=self.peer)
            try:
                self.session = self.factory.hub.begin(self, *self.grant)
            except ViewerError as e:
                _log.info("talk-back {peer} refused: {e}", peer=self.peer, e=e)
                self.refused = e
        if self.refused is not None:
            self.close(self.refused)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is None:
            return
        if not isBinary:
            session.end(bad_request("talk-back takes binary messages of PCM (16-bit little-endian,"
                                    " mono, 8000 Hz), no text"))  # fmt: skip
            return
        try:
            session.pcm(payload)
        except Exception:  # noqa: BLE001 - one message's trouble is not the reactor's
            _log.failure("talk-back {peer}: a message", peer=self.peer)
            session.end(ViewerError(CLOSE_INTERNAL, 500, "internal error of the media server"))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closing = True
        if self.session is not None:
            self.session.browser_gone()

    # -- what the session uses ---------------------------------------------------------------

    @property
    def full(self) -> bool:
        return self.paused

    def text(self, message: dict[str, Any]) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps(message).encode("utf-8"), isBinary=False)

    def binary(self, data: bytes) -> None:
        if self.state != self.STATE_OPEN:
            return
        for at in range(0, len(data), MAX_MESSAGE):
            self.sendMessage(data[at : at + MAX_MESSAGE], isBinary=True)

    def close(self, error: ViewerError | None) -> None:
        if self.closing or self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
            return
        self.closing = True
        if error is None:
            self.sendClose(1000)
            return
        self.text({"type": "error", "error": error.reason})
        self.sendClose(error.code, error.reason[:120])

    # -- IPushProducer: the transport says when the browser's connection is full -------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = True


class TalkSocketFactory(WebSocketServerFactory):
    protocol = TalkSocket

    def __init__(self, hub: TalkHub, reactor: Any) -> None:
        super().__init__(reactor=reactor)
        self.hub = hub
        bounded_socket(self, MAX_MESSAGE)


class TalkResource(web_resource.Resource):
    """``/talk/...``: the WebSocket; anything else a 400 saying so."""

    isLeaf = True

    def __init__(self, ws: WebSocketResource) -> None:
        super().__init__()
        self.ws = ws

    def render(self, request: server.Request) -> Any:
        if (request.getHeader(b"upgrade") or b"").lower() == b"websocket":
            return self.ws.render(request)
        request.setResponseCode(400)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(b"connection", b"close")
        channel = request.channel
        request.write(b"talk-back is a WebSocket: connect to ws(s)://HOST/talk/PHONE/CHANNEL?token=..."
                      b" (the Open API's POST /api/v1/devices/PHONE/talk gives the URL)\n")
        request.finish()
        if channel is not None:
            channel.loseConnection()  # after what was written: one request, one answer
        return server.NOT_DONE_YET


def resource(media: Any, reactor: Any) -> web_resource.Resource:
    """``/talk``, mounted by ``cmsv6.plugins.media.web.make_site``; registers the sessions'
    hooks with ``media``."""
    hub = TalkHub(media, reactor)
    return TalkResource(WebSocketResource(TalkSocketFactory(hub, reactor)))
