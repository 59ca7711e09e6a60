"""Missing sub-packages are asked for as soon as the last packet of an upload is in (a
photo's with 0x8800 and its retransmit list, anything else with 0x8003), and on the
gateway's tick when the last packet never comes; a task.Clock and the fake link, no
sockets."""

from __future__ import annotations

from typing import Any

from twisted.internet import task

from cmsv6.db.devices import Device
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.session import RESEND_AFTER, DeviceSession
from cmsv6.protocols.jt808.codec import encode_body, encode_packets
from cmsv6.protocols.jt808.framing import parse_frame
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.multimedia import MultimediaData
from cmsv6.protocols.jt808.model import RawBody
from tests.support.device import location
from tests.support.link import FakeLink

PHONE = "013800000001"


def _session() -> tuple[DeviceSession, FakeLink, task.Clock]:
    """An authenticated device's session (its device given, as the database would)."""
    clock = task.Clock()
    clock.advance(1000)
    gw = Gateway(db=None, clock=clock, gateway_id="gw", public_address="x")  # type: ignore[arg-type]
    link = FakeLink()
    session = DeviceSession(gw, link)
    session.device = Device(1, PHONE, None, None, None, 4, None)
    return session, link, clock


def _packets(msg_id: int, body: bytes, size: int = 1000) -> list[bytes]:
    return encode_packets(Header(msg_id, PHONE, 40), RawBody(body), max_body=size)


def _photo(media_id: int = 77) -> bytes:
    jpeg = b"\xff\xd8" + bytes(range(256)) * 10 + b"\xff\xd9"
    return encode_body(MultimediaData(media_id, 0, 0, 0, 1, location(extras={}), jpeg))


def _requests(link: FakeLink) -> list[Any]:
    """What the gateway sent besides its per-packet 0x8001s."""
    return [m for m in link.take() if m.header.msg_id != 0x8001]


def test_photo_missing_packet_asked_with_8800_at_once() -> None:
    """A photo whose last packet is in and second is not is asked for with 0x8800 (media id
    and retransmit list) without the clock moving."""
    session, link, _ = _session()
    frames = _packets(0x0801, _photo(77))
    assert len(frames) >= 3
    for i, frame in enumerate(frames, 1):
        if i != 2:
            session.frame_received(parse_frame(frame))
    (request,) = _requests(link)
    assert request.header.msg_id == 0x8800
    assert (request.body.media_id, request.body.retransmit_ids) == (77, (2,))


def test_other_upload_asked_with_8003_at_once() -> None:
    """Any other sub-packaged message with a gap is asked for with 0x8003 (first packet's
    serial, missing indexes) as soon as its last packet is in."""
    session, link, _ = _session()
    frames = _packets(0x1205, bytes(3000))
    for i, frame in enumerate(frames, 1):
        if i not in (1, 2):
            session.frame_received(parse_frame(frame))
    (request,) = _requests(link)
    assert request.header.msg_id == 0x8003
    assert (request.body.first_serial, request.body.indexes) == (40, (1, 2))


def test_photo_without_its_first_packet_asked_with_8003() -> None:
    """Without the first packet the photo's media id is unknown: 0x8003 asks for it."""
    session, link, _ = _session()
    frames = _packets(0x0801, _photo())
    for frame in frames[1:]:
        session.frame_received(parse_frame(frame))
    (request,) = _requests(link)
    assert request.header.msg_id == 0x8003 and request.body.indexes == (1,)


def test_no_request_before_the_last_packet_and_the_tick_as_fallback() -> None:
    """While the last packet has not come nothing is asked; the tick asks once nothing new
    came for the fallback delay, for every packet still missing."""
    session, link, clock = _session()
    frames = _packets(0x0801, _photo(5))
    for frame in frames[:-1]:
        if frame is not frames[1]:
            session.frame_received(parse_frame(frame))
    assert _requests(link) == []
    session.tick(clock.seconds() + RESEND_AFTER - 1)
    assert _requests(link) == []
    session.tick(clock.seconds() + RESEND_AFTER)
    (request,) = _requests(link)
    assert request.header.msg_id == 0x8800
    assert (request.body.media_id, request.body.retransmit_ids) == (5, (2, len(frames)))
