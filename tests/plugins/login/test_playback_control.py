"""Login's side of playback and talk-back for the Open API, over twisted.test.iosim: the
grants ``media_view`` signs (with their params) for the least-loaded media server, and
``control_playback`` reaching the media server over the link it announced itself on, its
errors passed on as declared, a media server that is gone or silent as Unavailable."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.protocols import amp

from cmsv6.media.viewing import allows, verify_view, view_key
from cmsv6.plugins.login.directory import Directory
from cmsv6.plugins.media.cluster import MediaLoginClient
from cmsv6.rpc.commands import (
    CommandTimeout,
    ControlPlayback,
    DeviceRefused,
    NoSuchPlayback,
    Unavailable,
)
from tests.plugins.login.test_media import Media, media_key
from tests.support.cluster import MASTER


class FakePlaybacks(amp.CommandLocator):
    """The media server's answers to ControlPlayback: each call kept, ``error`` raised."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, int | None, str | None]] = []
        self.error: Exception | None = None

    @ControlPlayback.responder
    def control(self, session: str, action: str, speed: int | None = None,
                time: str | None = None) -> Any:  # fmt: skip
        self.calls.append((session, action, speed, time))
        if self.error is not None:
            raise self.error
        return {}


@pytest.fixture
def playbacks(monkeypatch: pytest.MonkeyPatch) -> FakePlaybacks:
    locator = FakePlaybacks()
    monkeypatch.setattr(MediaLoginClient, "locator_for", lambda self, link: locator)
    return locator


def test_control_reaches_the_media_server_over_its_link(playbacks: FakePlaybacks) -> None:
    """ControlPlayback goes to the named media server with the session, action, speed and
    time, and fires once it answers; its declared errors come back as they are."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    media = Media(directory, "media-1")
    other = Media(directory, "media-2")
    assert media.call(directory.control_playback("media-1", "S" * 22, "fast_forward", 8)) is None
    assert media.call(directory.control_playback("media-1", "S" * 22, "seek",
                                                 time="2026-11-24T09:30:00+08:00")) is None  # fmt: skip
    assert playbacks.calls == [("S" * 22, "fast_forward", 8, None),
                               ("S" * 22, "seek", None, "2026-11-24T09:30:00+08:00")]  # fmt: skip
    assert other.announced
    for error in (NoSuchPlayback("no playback"), DeviceRefused("result 1"),
                  CommandTimeout("no answer"), Unavailable("busy")):  # fmt: skip
        playbacks.error = error
        failure = media.call(directory.control_playback("media-1", "S" * 22, "pause"))
        assert failure.check(type(error)) and str(failure.value) == str(error), failure


def test_control_of_a_media_server_gone_or_silent_is_unavailable() -> None:
    """A media server login no longer knows, or one that does not answer within the bound,
    is Unavailable naming it."""
    clock = task.Clock()
    directory = Directory(clock, key_for=MASTER.key_for)
    results: list[Any] = []
    directory.control_playback("media-9", "S" * 22, "pause").addErrback(results.append)
    (failure,) = results
    assert failure.check(Unavailable) and "media server media-9 is gone" in str(failure.value)

    class Silent:
        def callRemote(self, command: Any, **kw: Any) -> defer.Deferred[Any]:  # noqa: N802
            return defer.Deferred()

    media = Media(directory, "media-1")
    directory.media["media-1"].link = Silent()  # type: ignore[assignment]
    results.clear()
    directory.control_playback("media-1", "S" * 22, "pause").addErrback(results.append)
    clock.advance(directory.CONTROL_BOUND + 1)
    (failure,) = results
    assert failure.check(Unavailable) and "media server media-1 did not answer" in str(failure.value)
    assert media.announced


def test_media_view_grants_params_on_the_least_loaded() -> None:
    """A playback or talk grant is for the least-loaded media server, signed with its
    viewing key, for exactly that stream, with the params as given."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    assert directory.media_view("13800000001", 1, "playback", {"id": "x"}) is None
    Media(directory, "media-1", streams=5)
    Media(directory, "media-2", streams=1)
    params = {"id": "S" * 22, "from": "2026-11-24T09:30:00+08:00", "to": None,
              "mode": "normal", "speed": 1, "media": "audio_video", "stream": "any",
              "storage": "any"}  # fmt: skip
    view = directory.media_view("013800000001", 2, "playback", params)
    assert view is not None and view.media == "media-2"
    granted = verify_view(view_key(media_key("media-2")), view.token, view.expires - 1, "media-2")
    assert allows(granted, "13800000001", 2, "playback") and granted.params == params
    talk = directory.media_view("13800000001", 1, "talk", {"id": "T" * 22, "broadcast": True})
    assert talk is not None
    granted = verify_view(view_key(media_key("media-2")), talk.token, talk.expires - 1, "media-2")
    assert allows(granted, "13800000001", 1, "talk") and granted.params["broadcast"] is True
