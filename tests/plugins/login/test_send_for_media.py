"""SendForMedia: a media server's own messages (playback, talk-back) reach the device
through login and its gateway, and only those, and only from a media server."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import task

from cmsv6.plugins.login.directory import Directory
from cmsv6.plugins.media.opener import OpenFailed
from cmsv6.protocols.jt808.codec import encode_body
from cmsv6.protocols.jt808.messages.jt1078 import PlaybackControl
from cmsv6.rpc.commands import MEDIA_DOWNLINKS, BadRequest, DeviceRefused, SendForMedia
from cmsv6.rpc.replies import accepted
from tests.plugins.login.test_media import (
    PHONE,
    PUMPS,
    Media,
    RecordingGateway,
    _no_pumps_left,  # noqa: F401 - the autouse fixture, here too
    gateway_with_device,
    general,
)
from tests.plugins.login.test_rpc import login_link
from tests.support.cluster import MASTER, connect


def test_media_server_message_reaches_the_device_and_its_reply_comes_back() -> None:
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    gateway = RecordingGateway()
    gateway_with_device(directory, gateway)
    media = Media(directory)
    body = encode_body(PlaybackControl(2, 1))
    reply = media.call(media.opener.send(PHONE, 0x9202, body))
    assert gateway.sent == [(PHONE, 0x9202, body)]
    assert reply == general(0x9202)
    accepted(reply, PHONE, 0x9202, "0x9202")  # result 0: no error
    gateway.answer = lambda msg_id: general(msg_id, result=1)
    refused = media.call(media.opener.send(PHONE, 0x9202, body))
    with pytest.raises(DeviceRefused, match=r"refused pause: result 1 \(failure\)"):
        accepted(refused, PHONE, 0x9202, "pause")


@pytest.mark.parametrize("msg_id", [0x8103, 0x8105, 0x8300, 0x9205, 0x9301, 0x0200])
def test_only_media_messages_are_sent(msg_id: int) -> None:
    """A media server's key does not make it an operator: parameters, terminal control and
    anything but MEDIA_DOWNLINKS are refused before reaching the gateway."""
    assert msg_id not in MEDIA_DOWNLINKS
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    gateway = RecordingGateway()
    gateway_with_device(directory, gateway)
    media = Media(directory)
    failure = media.call(media.opener.send(PHONE, msg_id, b"\x00"))
    assert failure.check(OpenFailed)
    assert f"a media server sends only 0x9003, 0x9101, 0x9102, 0x9201, 0x9202, not 0x{msg_id:04x}" in str(failure.value)
    assert gateway.sent == []


def test_only_a_media_server_sends() -> None:
    """A link that announced no media server (a gateway's key) cannot send for one."""
    directory = Directory(task.Clock(), key_for=MASTER.key_for)
    gateway = RecordingGateway()
    gateway_with_device(directory, gateway)
    client, _, pump = connect(login_link(directory), server_id="gw-2")
    failures: list[Any] = []
    client.callRemote(SendForMedia, phone=PHONE, msg_id=0x9202,
                      body=b"\x01\x01\x00" + bytes(6)).addErrback(failures.append)  # fmt: skip
    PUMPS.append(pump)
    pump.flush()
    assert len(failures) == 1 and failures[0].check(BadRequest)
    assert "announce the media server first" in failures[0].getErrorMessage()
    assert gateway.sent == []
