"""Live streams for the media servers: login asks the device, through its gateway, to open
(0x9101) or close (0x9102) its JT/T 1078 stream to a media server.

This is the seed's multimedia flow from login's side: media → login (``OpenStream``: where
is the device?) → its gateway (``SendMessage``, the path the Open API's commands take,
recorded in ``commands`` as the media server's) → 0x9101 → the device's 0x0001 back. Every
failure is one of the cluster's declared errors, worded to say which device and which
step, so the media server can tell its viewers.

The answer says the device's codecs, from its 0x1003 audio/video attributes: when login
does not remember them, it asks 0x9003 just before the 0x9101 (the device answers in
order, so the 0x1003 is in before the 0x9101's answer) and waits ``ATTRIBUTES_GRACE``
seconds more for it at most. Many devices do not answer 0x9003, or refuse it: their codecs
are unknown, which is no error, and they are not asked again for a while
(``Directory.AV_UNKNOWN_FOR``); a late answer is remembered for the next stream.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.address import split_address
from cmsv6.phone import canonical_phone, valid_phone
from cmsv6.plugins.login.directory import Directory, MediaEntry
from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.messages.jt1078 import (
    AvAttributes,
    AvTransmissionControl,
    CloseType,
    ControlCommand,
    RealtimeAvRequest,
    RequestDataType,
)
from cmsv6.rpc.commands import (
    AUDIO_CODECS,
    MAX_COMMAND_TIMEOUT,
    MEDIA_DOWNLINKS,
    STREAMS,
    VIDEO_CODECS,
    BadRequest,
    CommandTimeout,
    DeviceOffline,
    DeviceRefused,
    Unavailable,
    codec_label,
)
from cmsv6.rpc.replies import accepted

_log = Logger()

#: Seconds a device has to answer one send of 0x9101/0x9102 when the media server does
#: not say (the gateway retransmits).
DEFAULT_TIMEOUT = 10.0

#: Seconds a device has to answer one send of 0x9003 (the gateway retransmits).
ATTRIBUTES_TIMEOUT = 3.0
#: Seconds an accepted 0x9101 waits more for the 0x1003 at most.
ATTRIBUTES_GRACE = 1.0


def _checked(phone: str, channel: int, stream: str, timeout: float | None) -> tuple[str, float]:
    """The canonical phone and the timeout; BadRequest in words for what is not valid."""
    if not valid_phone(phone):
        raise BadRequest(f"{phone[:40]!r} is not a device's phone")
    if not 1 <= channel <= 255:
        raise BadRequest(f"channel {channel} is not a logical channel (1 to 255)")
    if stream not in STREAMS:
        raise BadRequest(f'stream {stream[:20]!r} is not "main" or "sub"')
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if not 0 < timeout <= MAX_COMMAND_TIMEOUT:
        raise BadRequest(f"a timeout is more than 0 and at most {MAX_COMMAND_TIMEOUT:g} s")
    return canonical_phone(phone), timeout


def open_stream(directory: Directory, media: MediaEntry, phone: str, channel: int, stream: str,
                address: str, timeout: float | None = None) -> defer.Deferred[dict[str, str]]:  # fmt: skip
    """0x9101 to ``phone``: open ``stream`` of ``channel`` (audio and video) to ``address``
    (the media server's ``host:port``, TCP; UDP port 0). Fires once the device accepted,
    with OpenStream's answer: the codecs its 0x1003 says, those known."""
    phone, timeout = _checked(phone, channel, stream, timeout)
    try:
        host, port = split_address(address)
    except ValueError as e:
        raise BadRequest(f"the media server's address: {e}") from None
    request = RealtimeAvRequest(host, port, 0, channel, RequestDataType.AUDIO_VIDEO, STREAMS[stream])
    try:
        body = encode_body(request)
    except CodecError as e:  # a host name longer than 255 bytes
        raise BadRequest(f"0x9101 for {address!r} does not encode: {e}") from None
    attributes = attributes_of(directory, media, phone)
    what = f"0x9101 (open channel {channel} {stream} stream to {address})"
    d = _send(directory, media, phone, 0x9101, body, timeout, what)
    d.addCallback(lambda _: directory.stream_opened(media, phone, channel, stream))
    d.addCallback(lambda _: _at_most(attributes, ATTRIBUTES_GRACE, directory))
    return d.addCallback(codecs)


def codecs(attributes: AvAttributes | None) -> dict[str, str]:
    """OpenStream's answer for ``attributes``: the codecs' names, none when not known."""
    if attributes is None:
        return {}
    return {"video_codec": codec_label(attributes.video_codec, VIDEO_CODECS),
            "audio_codec": codec_label(attributes.audio_codec, AUDIO_CODECS)}  # fmt: skip


def _at_most(d: defer.Deferred[Any], seconds: float, directory: Directory) -> defer.Deferred[Any]:
    """What ``d`` fires with, or None after ``seconds``."""
    if d.called:
        return d
    out: defer.Deferred[Any] = defer.Deferred()
    timer = directory.clock.callLater(seconds, out.callback, None)

    def fired(result: Any) -> None:
        if timer.active():
            timer.cancel()
            out.callback(result)

    d.addCallback(fired)
    return out


def attributes_of(directory: Directory, media: MediaEntry, phone: str) -> defer.Deferred[AvAttributes | None]:
    """The device's 0x1003 attributes: remembered, or asked (0x9003, once at a time per
    device); fires with None when it does not answer, never fails."""
    memory = directory.av_memory(phone)
    if memory is not None:
        return defer.succeed(memory.attributes)
    asking = directory.av_asking.get(phone)
    if asking is None:
        asking = directory.av_asking[phone] = _ask_attributes(directory, media, phone)
    mine: defer.Deferred[AvAttributes | None] = defer.Deferred()
    asking.addCallback(lambda attributes: (mine.callback(attributes), attributes)[1])
    return mine


def _ask_attributes(directory: Directory, media: MediaEntry, phone: str) -> defer.Deferred[AvAttributes | None]:
    what = "0x9003 (audio/video attributes)"
    d = directory.send_to_device(phone, 0x9003, b"", ATTRIBUTES_TIMEOUT, by=f"media server {media.id}")

    def answered(reply: dict[str, Any]) -> AvAttributes | None:
        if reply["msg_id"] == 0x0001:
            accepted(reply, phone, 0x9003, what)  # raises DeviceRefused unless result 0
            raise DeviceRefused(f"device {phone} answered {what} with a general response, not 0x1003")
        if reply["msg_id"] != 0x1003:
            raise DeviceRefused(f"device {phone} answered {what} with 0x{reply['msg_id']:04x}")
        try:
            attributes = decode_body(0x1003, reply["body"], reply["version"])
        except CodecError as e:
            raise DeviceRefused(f"device {phone}'s 0x1003 does not decode ({e}):"
                                f" {reply['body'][:64].hex()}") from None  # fmt: skip
        assert isinstance(attributes, AvAttributes)
        _log.info("device {phone}: video {video}, audio {audio} (its 0x1003)", phone=phone,
                  video=codec_label(attributes.video_codec, VIDEO_CODECS),
                  audio=codec_label(attributes.audio_codec, AUDIO_CODECS))  # fmt: skip
        directory.remember_av(phone, attributes)
        return attributes

    def unanswered(failure: Failure) -> None:
        if failure.check(DeviceRefused, CommandTimeout):
            # Many units do not do 0x9003: their codecs are unknown, and that is all.
            _log.info("device {phone}: codecs unknown: {why}", phone=phone,
                      why=failure.getErrorMessage())  # fmt: skip
            directory.remember_av(phone, None)
        else:  # offline, its gateway unreachable: ask again next time
            _log.info("device {phone}: {what} not answered: {why}", phone=phone, what=what,
                      why=failure.getErrorMessage())  # fmt: skip

    def done(result: Any) -> Any:
        directory.av_asking.pop(phone, None)
        return result

    return d.addCallbacks(answered).addErrback(unanswered).addBoth(done)


def close_stream(directory: Directory, media: MediaEntry, phone: str, channel: int, stream: str,
                 timeout: float | None = None) -> defer.Deferred[None]:  # fmt: skip
    """0x9102 to ``phone``: close the audio and video of ``channel``."""
    phone, timeout = _checked(phone, channel, stream, timeout)
    directory.stream_closed(media, phone, channel, stream)
    control = AvTransmissionControl(channel, ControlCommand.CLOSE, CloseType.AUDIO_AND_VIDEO,
                                    STREAMS[stream])  # fmt: skip
    what = f"0x9102 (close channel {channel})"
    return _send(directory, media, phone, 0x9102, encode_body(control), timeout, what)


def send_for_media(directory: Directory, media: MediaEntry, phone: str, msg_id: int, body: bytes,
                   timeout: float | None = None) -> defer.Deferred[dict[str, Any]]:  # fmt: skip
    """``SendForMedia``: ``body`` as message ``msg_id`` to ``phone`` for ``media``; fires
    with the device's reply (``{"msg_id", "version", "body"}``) for the media server to
    read. Only ``MEDIA_DOWNLINKS`` are sent."""
    if msg_id not in MEDIA_DOWNLINKS:
        allowed = ", ".join(f"0x{m:04x}" for m in sorted(MEDIA_DOWNLINKS))
        raise BadRequest(f"a media server sends only {allowed}, not 0x{msg_id & 0xFFFF:04x}")
    if not valid_phone(phone):
        raise BadRequest(f"{phone[:40]!r} is not a device's phone")
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    if not 0 < timeout <= MAX_COMMAND_TIMEOUT:
        raise BadRequest(f"a timeout is more than 0 and at most {MAX_COMMAND_TIMEOUT:g} s")
    phone = canonical_phone(phone)
    what = f"0x{msg_id:04x} (from media server {media.id})"
    d = directory.send_to_device(phone, msg_id, body, timeout, by=f"media server {media.id}")
    return d.addErrback(_failed, phone, what)


def _send(directory: Directory, media: MediaEntry, phone: str, msg_id: int, body: bytes,
          timeout: float, what: str) -> defer.Deferred[None]:  # fmt: skip
    d = directory.send_to_device(phone, msg_id, body, timeout, by=f"media server {media.id}")
    return d.addCallbacks(accepted, _failed, callbackArgs=(phone, msg_id, what),
                          errbackArgs=(phone, what))  # fmt: skip


def _failed(failure: Failure, phone: str, what: str) -> Failure:
    """The cluster's errors, reworded to name the device and the step."""
    reason = failure.getErrorMessage()
    if failure.check(DeviceOffline):
        return Failure(DeviceOffline(f"device {phone} is offline: no gateway has it ({what} not sent)"))
    if failure.check(CommandTimeout):
        return Failure(CommandTimeout(f"device {phone} did not answer {what}: {reason}"))
    if failure.check(BadRequest):
        return Failure(BadRequest(f"the gateway of device {phone} refused to send {what}: {reason}"))
    if failure.check(Unavailable):
        return Failure(Unavailable(f"the gateway of device {phone} is unreachable ({what} not"
                                   f" sent or not answered): {reason}"))  # fmt: skip
    return failure  # Directory.send_to_device gives only the declared errors
