"""What the web site needs from the cluster: where devices are, a way to reach them, and a
media server. The login server implements it over its AMP links
(``cmsv6.plugins.login.directory.Directory``); tests use a fake."""

from __future__ import annotations

from typing import Any, Protocol

from attrs import frozen
from twisted.internet.defer import Deferred

from cmsv6.protocols.jt808.messages.jt1078 import AvAttributes


@frozen
class LiveView:
    """Where to watch a live stream: media server ``media`` at ``public_web`` (its base
    URL), with a viewing ``token`` (``cmsv6.media.viewing``) good until ``expires`` (Unix
    seconds)."""

    media: str
    public_web: str
    token: str
    expires: int


class Cluster(Protocol):
    def device_gateway(self, phone: str) -> str | None:
        """The id of the gateway the device is online on; None if it is offline."""

    def send_to_device(
        self, phone: str, msg_id: int, body: bytes, timeout: float = 10.0,
        body_2019: bytes | None = None, by: str | None = None, command: int | None = None,
    ) -> Deferred[dict]:  # type: ignore[type-arg]
        """Send ``body`` (``body_2019`` to a device whose live session is 2019), for user
        ``by``, as the ``commands`` row ``command`` (which the gateway marks sent); fires with
        the device's reply ``{"msg_id": int, "version": int, "body": bytes}``, the body as
        the device sent it; errbacks with ``cmsv6.rpc.commands.DeviceOffline`` /
        ``CommandTimeout`` / ``Unavailable`` / ``BadRequest``."""

    def media_server(self) -> str | None:
        """The least-loaded media server's public web URL, or None if there is none."""

    def live_view(self, phone: str, channel: int, stream: str) -> LiveView | None:
        """The media server to watch ``stream`` ("main" or "sub") of ``channel`` of device
        ``phone`` on (the one that stream goes to already, else the least loaded) and a
        viewing token for exactly that, signed for that server; None if there is no media
        server. The caller has checked that the user may see the device."""

    def live_codecs(self, phone: str) -> tuple[str | None, str | None]:
        """(video, audio) of device ``phone`` as the Open API says them ("h264"/"h265",
        "aac"), from what the cluster remembers of the device's 0x1003; None where not
        known (the device has not said, or no stream of it was opened yet)."""

    def online(self) -> dict[str, str]:
        """phone → gateway id for every online device."""

    def media_view(self, phone: str, channel: int, stream: str,
                   params: dict[str, Any]) -> LiveView | None:  # fmt: skip
        """The least-loaded media server and a viewing token for ``stream`` ("playback" or
        "talk") of ``channel`` of ``phone`` carrying ``params`` (the session: see
        ``cmsv6.media.viewing``), signed for that server; None if there is no media
        server. The caller has checked that the user may see the device."""

    def control_playback(self, media: str, session: str, action: str, speed: int | None = None,
                         time: str | None = None) -> Deferred[None]:  # fmt: skip
        """``ControlPlayback`` on media server ``media`` (over its link): fires once the device
        accepted the 0x9202; errbacks with ``NoSuchPlayback``, ``DeviceRefused``,
        ``DeviceOffline``, ``CommandTimeout``, ``BadRequest``, or ``Unavailable`` (the media
        server is gone or does not answer)."""

    def av_attributes(self, phone: str) -> tuple[bool, AvAttributes | None]:
        """What the cluster remembers of the device's 0x1003: (False, None) nothing,
        (True, None) it did not answer 0x9003, (True, attributes) its answer."""

    def remember_av(self, phone: str, attributes: AvAttributes | None) -> None:
        """The device's 0x1003 as the Open API got it (``GET .../av-attributes``)."""
