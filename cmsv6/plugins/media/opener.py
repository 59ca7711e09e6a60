"""How the media server gets a device to stream: the ``StreamOpener`` it calls.

The media server knows no device's gateway; in a cluster, login does (``OpenStream`` and
``CloseStream`` AMP commands, ``cmsv6.plugins.media.cluster``). Standalone there is
nobody to ask: ``NoOpener`` says so, and only streams devices push on their own are
served.
"""

from __future__ import annotations

from typing import Any, Protocol

from attrs import frozen
from twisted.internet import defer

from cmsv6.protocols.jt1078.audio import AUDIO_CODECS as SERVED_AUDIO
from cmsv6.rpc.commands import AUDIO_CODECS, VIDEO_CODECS, codec_code


class OpenFailed(Exception):
    """A stream that could not be opened; ``str()`` says which device and which step."""


@frozen
class Opened:
    """What an opener knows of the stream it opened: the codecs the device's 0x1003
    announces (OpenStream's names: "h264", "g711a"...), None when not known."""

    video_codec: str | None = None
    audio_codec: str | None = None

    @property
    def video_type(self) -> int | None:
        """The payload type video packets should carry (table 12), if known."""
        return codec_code(self.video_codec, VIDEO_CODECS) if self.video_codec else None

    @property
    def audio_type(self) -> int | None:
        """The payload type audio packets should carry (table 12), if known."""
        return codec_code(self.audio_codec, AUDIO_CODECS) if self.audio_codec else None

    @property
    def audio(self) -> bool | None:
        """Whether audio will come that browsers can be given (as AAC): None when the
        device's codecs are not known."""
        if self.audio_codec is None:
            return None
        return self.audio_type in SERVED_AUDIO


class StreamOpener(Protocol):
    """Asks a device to start or stop one live stream to this media server."""

    def open(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        """Ask the device (0x9101 with our ``public_jt1078``); fires once the device has
        accepted, or errbacks with an exception whose ``str()`` says which device and which
        step failed. The result may be None, or an ``Opened``: ``audio`` (True/False:
        whether the device's 0x1003 attributes say it sends audio browsers can get)
        decides the FLV audio track before the first frames arrive, and the packets'
        payload types are checked against its codecs."""
        ...

    def close(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        """Ask the device to stop the stream (0x9102)."""
        ...

    def send(self, phone: str, msg_id: int, body: bytes) -> defer.Deferred[Any]:
        """Send message ``msg_id`` (one of ``cmsv6.rpc.commands.MEDIA_DOWNLINKS``: the
        media server encodes 0x9201, 0x9202, a talk-back 0x9101... itself) to the device;
        fires with its reply ``{"msg_id", "version", "body"}`` (read it with
        ``cmsv6.rpc.replies.accepted``), or errbacks with an ``OpenFailed`` whose ``str()``
        says which device and which step failed."""
        ...


class NoOpener:
    """Standalone (no ``[media] login``): no device can be asked to stream."""

    def open(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        return defer.fail(OpenFailed(
            f"device {phone} channel {channel}: no login server configured ([media] login),"
            " so the device cannot be asked to stream"
        ))  # fmt: skip

    def close(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        return defer.succeed(None)

    def send(self, phone: str, msg_id: int, body: bytes) -> defer.Deferred[Any]:
        return defer.fail(OpenFailed(
            f"device {phone}: no login server configured ([media] login), so 0x{msg_id:04x}"
            " cannot be sent to it"
        ))  # fmt: skip
