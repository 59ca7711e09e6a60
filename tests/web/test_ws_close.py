"""How the client WebSocket closes on bad input and on its own trouble: each time a close
frame with the documented code and a reason in words (an autobahn client over loopback
reads it; a bare TCP close would show as 1006), and the server carries on."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from cmsv6.db import devices as device_store
from cmsv6.db.service import DatabaseUnavailable
from cmsv6.web.ws import (
    CLOSE_BAD_MESSAGE, CLOSE_INTERNAL_ERROR, CLOSE_INVALID_TEXT, CLOSE_TOO_BIG,
    CLOSE_TRY_LATER, CLOSE_UNAUTHORIZED, ClientFactory,
)  # fmt: skip
from tests.web.support import NORTH, Web, login, ws_connect


def _factory(web: Web) -> ClientFactory:
    return web.site.resource.children[b"ws"]._factory  # type: ignore[no-any-return]


@defer.inlineCallbacks
def _authenticated(web: Web) -> Any:
    token = yield login(web, "olga")
    client = yield ws_connect(web)
    client.send_json({"token": token})
    yield client.next_of("authenticated")
    return client


def _padded(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    head, tail = b'{"what": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest_twisted.inlineCallbacks
def test_not_json_closes_with_4002(web: Web) -> None:
    """A text message that is not JSON closes the socket with 4002 and a reason, before
    authentication as after."""
    client = yield ws_connect(web)
    client.sendMessage(b"hello")
    code, reason = yield client.closed()
    assert code == CLOSE_BAD_MESSAGE and "not JSON" in reason
    client = yield _authenticated(web)
    client.sendMessage(b'{"subscribe": ["13800000001"')
    code, reason = yield client.closed()
    assert code == CLOSE_BAD_MESSAGE and "not JSON" in reason


@pytest_twisted.inlineCallbacks
def test_json_that_is_not_an_object(web: Web) -> None:
    """JSON that is not an object is no token (4001) before authentication, and an error
    answer that keeps the socket after it."""
    client = yield ws_connect(web)
    client.send_json(["token"])
    code, reason = yield client.closed()
    assert code == CLOSE_UNAUTHORIZED and "token" in reason
    client = yield _authenticated(web)
    client.send_json([NORTH])
    error = yield client.next_of("error")
    assert error["code"] == "bad_message" and "object" in error["message"]
    client.send_json({"subscribe": [NORTH]})
    answer = yield client.next_of("subscribed")
    assert answer["phones"] == [NORTH]
    client.sendClose()
    yield client.closed()


@pytest_twisted.inlineCallbacks
def test_over_long_message_gets_a_close_frame_1009(web: Web) -> None:
    """A message of ``max_message`` bytes is read; one byte more, in one frame or in many
    small ones, is answered with a close frame 1009 whose reason names the limit, not a
    dropped connection; the server carries on."""
    limit = _factory(web).max_message
    client = yield _authenticated(web)
    client.sendMessage(_padded(limit))
    error = yield client.next_of("error")
    assert error["code"] == "bad_message"
    client.sendMessage(_padded(limit + 1))
    code, reason = yield client.closed()
    assert code == CLOSE_TOO_BIG and str(limit) in reason
    client = yield _authenticated(web)
    client.sendMessage(_padded(limit + 1), fragmentSize=1000)
    code, reason = yield client.closed()
    assert code == CLOSE_TOO_BIG and str(limit) in reason
    client = yield _authenticated(web)
    client.sendClose()
    yield client.closed()


@pytest_twisted.inlineCallbacks
def test_text_not_utf8_gets_a_close_frame_1007(web: Web) -> None:
    """A text message that is not UTF-8 is answered with a close frame 1007 and a reason."""
    client = yield _authenticated(web)
    client.sendMessage(b'{"subscribe": ["\xff"]}', isBinary=False)
    code, reason = yield client.closed()
    assert code == CLOSE_INVALID_TEXT and reason


@pytest_twisted.inlineCallbacks
def test_database_unavailable_closes_with_1013(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message the database cannot answer now closes the socket with 1013 (try again
    later) and a reason; an unexpected failure with 1011."""
    client = yield _authenticated(web)

    def unavailable(*args: Any) -> Any:
        return defer.fail(DatabaseUnavailable("no database"))

    monkeypatch.setattr(device_store, "visible_devices", unavailable)
    client.send_json({"subscribe": [NORTH]})
    code, reason = yield client.closed()
    assert code == CLOSE_TRY_LATER and "database" in reason

    client = yield _authenticated(web)

    def broken(*args: Any) -> Any:
        return defer.fail(RuntimeError("a bug"))

    monkeypatch.setattr(device_store, "visible_devices", broken)
    client.send_json({"subscribe": [NORTH]})
    code, reason = yield client.closed()
    assert code == CLOSE_INTERNAL_ERROR and reason == "internal error"
