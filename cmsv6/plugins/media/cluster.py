"""The media server's link to login: announce, report load, and ask for devices' streams.

The link (failover between the active and standby login servers, proving the media
server's id with its cluster key, announcing again on every reconnection, periodic
reports) is ``cmsv6.rpc.client.LoginConnection``, the gateways' too. The media server
announces its id, where browsers reach it (``public_web``, which login puts in video URLs)
and where devices reach it (``public_jt1078``), with its streams and viewers; login picks
the least loaded one for new viewers.

``LoginOpener`` is the media server's ``StreamOpener`` in a cluster: ``OpenStream`` asks
login, which finds the device's gateway and has it send 0x9101 with our
``public_jt1078``, and answers with the codecs the device's 0x1003 says (``Opened``);
``CloseStream`` sends 0x9102. Failures come back as ``OpenFailed`` saying which device
and which step.

Login calls the media server back on the same link (``MediaLocator``): ``ControlPlayback``
controls a playback session of ``cmsv6.plugins.media.playback`` by its id, for the Open
API.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.application import service
from twisted.internet import defer, error
from twisted.protocols import amp
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.plugins.media.opener import NoOpener, Opened, OpenFailed, StreamOpener
from cmsv6.plugins.media.playback import BadControl, ControlFailed, ControlTimeout, playbacks_of
from cmsv6.rpc import keys
from cmsv6.rpc.client import LoginConnection, LoginLinkClient
from cmsv6.rpc.commands import (
    MAX_COMMAND_TIMEOUT,
    AnnounceMedia,
    BadRequest,
    CloseStream,
    CommandTimeout,
    ControlPlayback,
    DeviceOffline,
    DeviceRefused,
    NoSuchPlayback,
    OpenStream,
    ReportMediaLoad,
    SendForMedia,
    Unavailable,
)

_log = Logger()

#: What the media server reports: ``{"streams": n, "viewers": n}``.
Load = Callable[[], Mapping[str, int]]


class MediaLocator(amp.CommandLocator):
    """What login may ask of the media server ``media``: controlling its playbacks."""

    def __init__(self, media: Any) -> None:
        super().__init__()
        self.media = media

    @ControlPlayback.responder
    def control_playback(self, session: str, action: str, speed: int | None = None,
                         time: str | None = None) -> defer.Deferred[Any]:  # fmt: skip
        try:
            d = playbacks_of(self.media).control(session, action, speed, time)
        except Exception as e:  # noqa: BLE001 - mapped to a declared error below
            d = defer.fail(e)
        return d.addCallbacks(lambda _: {}, _control_error, errbackArgs=(session, action))


def _control_error(failure: Failure, session: str, action: str) -> Failure:
    """ControlPlayback's declared errors, in the playback's words."""
    words = str(failure.value) or failure.getErrorMessage()
    if failure.check(NoSuchPlayback, DeviceRefused):
        return failure
    if failure.check(BadControl):
        return Failure(BadRequest(words))
    if failure.check(ControlTimeout):
        return Failure(CommandTimeout(words))
    if failure.check(OpenFailed):
        return Failure(Unavailable(words))
    if not failure.check(ControlFailed):
        _log.failure("playback {session}: {action} for login", failure, session=session[:8],
                     action=action)  # fmt: skip
    return Failure(Unavailable(words))


class MediaLoginClient(LoginConnection):
    """The media server's link to login (see the module docstring); ``load()`` gives its
    current streams and viewers; ``media`` (the ``MediaServer``) answers login's
    ``ControlPlayback``."""

    def __init__(self, media_id: str, key: bytes, logins: list[str], reactor: Any,
                 public_web: str, public_jt1078: str, load: Load,
                 report_every: float = 2.0, retry_max: float = 1.0,
                 media: Any = None) -> None:  # fmt: skip
        self.public_web = public_web
        self.public_jt1078 = public_jt1078
        self.load = load
        self.media = media
        super().__init__(media_id, key, logins, reactor, report_every, retry_max,
                         what=f"media server {media_id}", role=keys.MEDIA)  # fmt: skip

    def locator_for(self, link: LoginLinkClient) -> Any:
        return MediaLocator(self.media) if self.media is not None else None

    def _load(self) -> tuple[int, int]:
        load = self.load()
        return int(load.get("streams", 0)), int(load.get("viewers", 0))

    def announce(self, link: LoginLinkClient) -> defer.Deferred[Any]:
        streams, viewers = self._load()
        d = link.callRemote(AnnounceMedia, id=self.server_id, public_web=self.public_web,
                            public_jt1078=self.public_jt1078, streams=streams, viewers=viewers)  # fmt: skip
        return d.addCallback(lambda answer: answer["login"])

    def report(self, link: LoginLinkClient) -> None:
        streams, viewers = self._load()
        link.callRemote(ReportMediaLoad, streams=streams, viewers=viewers).addErrback(
            self.call_failed, "load report"
        )


class LoginOpener:
    """``StreamOpener`` through login (see the module docstring). Login's answer is awaited
    ``bound`` seconds; the device has a third of that to answer one send, so the gateway's
    first retransmission (twice the wait) fits in it."""

    def __init__(self, client: MediaLoginClient, bound: float = 10.0) -> None:
        self.client = client
        self.bound = bound
        self.timeout = min(bound / 3, MAX_COMMAND_TIMEOUT)

    def open(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        """Fires with an ``Opened``: the device's codecs, those login knows."""
        d = self._call(OpenStream, "open", phone, channel, stream,
                       address=self.client.public_jt1078)  # fmt: skip
        return d.addCallback(lambda answer: Opened(answer.get("video_codec"), answer.get("audio_codec")))

    def close(self, phone: str, channel: int, stream: str) -> defer.Deferred[Any]:
        return self._call(CloseStream, "close", phone, channel, stream).addCallback(lambda _: None)

    def send(self, phone: str, msg_id: int, body: bytes) -> defer.Deferred[Any]:
        """``SendForMedia``: fires with the device's reply ``{"msg_id", "version", "body"}``."""
        return self._remote(SendForMedia, f"device {phone}", f"send 0x{msg_id:04x}",
                            phone=phone, msg_id=msg_id, body=body)  # fmt: skip

    def _call(self, command: Any, verb: str, phone: str, channel: int, stream: str,
              **extra: Any) -> defer.Deferred[Any]:  # fmt: skip
        what = f"device {phone} channel {channel} ({stream} stream)"
        return self._remote(command, what, f"{verb} the stream", phone=phone, channel=channel,
                            stream=stream, **extra)  # fmt: skip

    def _remote(self, command: Any, what: str, verb: str, **arguments: Any) -> defer.Deferred[Any]:
        link = self.client.link
        if link is None:
            return defer.fail(OpenFailed(
                f"{what}: cannot {verb}: no login server reachable"
                f" (tried {', '.join(self.client.endpoint.names)})"
            ))  # fmt: skip
        d = link.callRemote(command, timeout=self.timeout, **arguments)
        d.addTimeout(self.bound, self.client.clock)
        return d.addErrback(_worded, what, verb)


def _worded(failure: Failure, what: str, verb: str) -> Failure:
    """OpenFailed naming the device and the step; login's errors already say the step."""
    if failure.check(DeviceOffline, DeviceRefused, CommandTimeout, BadRequest, Unavailable):
        return Failure(OpenFailed(f"{what}: {failure.getErrorMessage()}"))
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return Failure(OpenFailed(f"{what}: login did not answer the request to {verb}"))
    if failure.check(error.ConnectionLost, error.ConnectionDone):
        return Failure(OpenFailed(f"{what}: the link to login closed before it answered the"
                                  f" request to {verb}"))  # fmt: skip
    _log.failure("{verb} {what} through login", failure, verb=verb, what=what)
    return Failure(OpenFailed(f"{what}: asking login to {verb} failed:"
                              f" {failure.getErrorMessage()}"))  # fmt: skip


def login_service(conf: Any, server: Any, reactor: Any) -> tuple[service.IService, StreamOpener]:
    """The media server's link to login (``conf.login``: active and standby), proving
    ``conf.id`` with the key in ``conf.cluster_key``, and the ``StreamOpener`` that asks
    through it. ``server.load()`` gives ``{"streams": n, "viewers": n}``. Without
    ``conf.login`` (standalone): an empty service and ``NoOpener``."""
    if not conf.login:
        return service.MultiService(), NoOpener()
    from cmsv6.plugins.media.tap import media_key  # the tap's check of the key file

    key = media_key(conf.cluster_key, conf.id)
    client = MediaLoginClient(conf.id, key, list(conf.login), reactor, conf.public_web,
                              conf.public_jt1078, server.load, media=server)  # fmt: skip
    return client, LoginOpener(client, bound=conf.open_timeout)
