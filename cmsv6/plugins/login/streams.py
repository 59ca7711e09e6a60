"""Live streams for the media servers: login asks the device, through its gateway, to open
(0x9101) or close (0x9102) its JT/T 1078 stream to a media server.

This is the seed's multimedia flow from login's side: media → login (``OpenStream``: where
is the device?) → its gateway (``SendMessage``, the path the Open API's commands take,
recorded in ``commands`` as the media server's) → 0x9101 → the device's 0x0001 back. Every
failure is one of the cluster's declared errors, worded to say which device and which
step, so the media server can tell its viewers.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from cmsv6.address import split_address
from cmsv6.phone import canonical_phone, valid_phone
from cmsv6.plugins.login.directory import Directory, MediaEntry
from cmsv6.protocols.jt808.codec import decode_body, encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import (
    AvTransmissionControl,
    CloseType,
    ControlCommand,
    RealtimeAvRequest,
    RequestDataType,
)
from cmsv6.rpc.commands import (
    MAX_COMMAND_TIMEOUT,
    STREAMS,
    BadRequest,
    CommandTimeout,
    DeviceOffline,
    DeviceRefused,
    Unavailable,
)

#: Seconds a device has to answer one send of 0x9101/0x9102 when the media server does
#: not say (the gateway retransmits).
DEFAULT_TIMEOUT = 10.0

_RESULTS = {1: "failure", 2: "message error", 3: "not supported"}


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
                address: str, timeout: float | None = None) -> defer.Deferred[None]:  # fmt: skip
    """0x9101 to ``phone``: open ``stream`` of ``channel`` (audio and video) to ``address``
    (the media server's ``host:port``, TCP; UDP port 0). Fires once the device accepted."""
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
    what = f"0x9101 (open channel {channel} {stream} stream to {address})"
    d = _send(directory, media, phone, 0x9101, body, timeout, what)
    return d.addCallback(lambda _: directory.stream_opened(media, phone, channel, stream))


def close_stream(directory: Directory, media: MediaEntry, phone: str, channel: int, stream: str,
                 timeout: float | None = None) -> defer.Deferred[None]:  # fmt: skip
    """0x9102 to ``phone``: close the audio and video of ``channel``."""
    phone, timeout = _checked(phone, channel, stream, timeout)
    directory.stream_closed(media, phone, channel, stream)
    control = AvTransmissionControl(channel, ControlCommand.CLOSE, CloseType.AUDIO_AND_VIDEO,
                                    STREAMS[stream])  # fmt: skip
    what = f"0x9102 (close channel {channel})"
    return _send(directory, media, phone, 0x9102, encode_body(control), timeout, what)


def _send(directory: Directory, media: MediaEntry, phone: str, msg_id: int, body: bytes,
          timeout: float, what: str) -> defer.Deferred[None]:  # fmt: skip
    d = directory.send_to_device(phone, msg_id, body, timeout, by=f"media server {media.id}")
    return d.addCallbacks(_accepted, _failed, callbackArgs=(phone, msg_id, what),
                          errbackArgs=(phone, what))  # fmt: skip


def _accepted(reply: dict[str, Any], phone: str, msg_id: int, what: str) -> None:
    """The device's general response: result 0, or DeviceRefused saying what it said."""
    if reply["msg_id"] != 0x0001:
        raise DeviceRefused(f"device {phone} answered {what} with 0x{reply['msg_id']:04x},"
                            " not a general response")  # fmt: skip
    try:
        answer = decode_body(0x0001, reply["body"], reply["version"])
    except CodecError as e:
        raise DeviceRefused(f"device {phone} answered {what} with a general response that does"
                            f" not decode ({e}): {reply['body'][:64].hex()}") from None  # fmt: skip
    if not isinstance(answer, TerminalResponse) or answer.result != 0:
        result = getattr(answer, "result", None)
        meaning = _RESULTS.get(result, "unknown result")  # type: ignore[arg-type]
        raise DeviceRefused(f"device {phone} refused {what}: result {result} ({meaning})")


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
