"""How the media server gets a device to stream: the ``StreamOpener`` it calls.

The media server knows no device's gateway; in a cluster, login does (``OpenStream`` and
``CloseStream`` AMP commands, ``cmsv6.plugins.media.cluster``). Standalone there is
nobody to ask: ``NoOpener`` says so, and only streams devices push on their own are
served.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet import defer


class OpenFailed(Exception):
    """A stream that could not be opened; ``str()`` says which device and which step."""


class StreamOpener(Protocol):
    """Asks a device to start or stop one live stream to this media server."""

    def open(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        """Ask the device (0x9101 with our ``public_jt1078``); fires once the device has
        accepted, or errbacks with an exception whose ``str()`` says which device and which
        step failed. The result may be None, or carry ``audio`` (True/False: whether the
        device's 0x1003 attributes say it sends audio) to decide the FLV audio track
        before the first frames arrive."""
        ...

    def close(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        """Ask the device to stop the stream (0x9102)."""
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
