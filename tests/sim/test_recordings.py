"""The simulated DVR's recordings: a plausible list, filtered as a 0x9205 asks, answered
with 0x1205 sub-packaged (packets of at most 1023 bytes) and re-sent on 0x8003; over
loopback against the fake platform, with and without a packet lost."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet.endpoints import serverFromString

from cmsv6.protocols.jt808.codec import decode_body
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.framing import Deframer, Frame
from cmsv6.protocols.jt808.header import MAX_BODY
from cmsv6.protocols.jt808.messages.core import ResendRequest
from cmsv6.protocols.jt808.messages.jt1078 import QueryResources, ResourceList
from cmsv6.sim.fakeplatform import FakePlatform, phone_key
from cmsv6.sim.fleet import Fleet, FleetConfig
from cmsv6.sim.recordings import recordings
from tests.sim.test_device import PHONE, QUIET, T0
from tests.sim.test_video import FAST, _reactor, online
from tests.support.device import until

ANY = QueryResources(0, None, None, media_type=3)  # video, or audio and video: every file


def sent(rig: Any) -> list[Frame]:
    """The frames the device sent since the last call, undecoded."""
    frames = [f for data in rig.link.frames for f in Deframer().feed(data)]
    rig.link.frames.clear()
    assert all(isinstance(f, Frame) for f in frames)
    return frames


def listed(rig: Any, query: QueryResources) -> tuple[Any, ...]:
    """Send the query; the items of the 0x1205 the device answers (reassembled)."""
    h = rig.platform(query)
    frames = sent(rig)
    assert {f.header.msg_id for f in frames} == {0x1205}
    answer = decode_body(0x1205, b"".join(f.body for f in frames))
    assert answer.reply_serial == h.serial
    return answer.items


def test_a_plausible_list() -> None:
    """Three days of files up to now: each channel on the main and the sub stream, 15-30
    minutes each during driving hours, never overlapping on a channel's stream, sizes
    matching the bit rate (main about 464 kbit/s, sub 164, less without sound), some with
    alarm bits (in both halves of the 64 bits) and then a copy on the backup storage; the
    same list for the same phone, another for another phone."""
    files = list(recordings(PHONE, 4, 3, T0))
    now = datetime.fromtimestamp(T0, BEIJING)
    assert files == list(recordings(PHONE, 4, 3, T0))
    assert files != list(recordings("013800000002", 4, 3, T0))
    assert {f.start.date() for f in files} == {(now - timedelta(days=d)).date() for d in range(3)}
    assert all(f.end <= now for f in files)
    assert {f.channel for f in files} == {1, 2, 3, 4}
    for f in files:
        minutes = (f.end - f.start).total_seconds() / 60
        assert 1 <= minutes <= 30 and 6 <= f.start.hour and f.end.hour <= 19
        rate = {1: 464_000, 2: 164_000}[f.stream_type] - (64_000 if f.media_type == 2 else 0)
        assert 0.9 < f.size / (minutes * 60 * rate / 8) < 1.1
    assert sum(15 <= (f.end - f.start).total_seconds() / 60 for f in files) > 0.8 * len(files)
    for channel in (1, 4):
        for stream in (1, 2):
            own = [f for f in files if (f.channel, f.stream_type, f.storage_type) == (channel, stream, 1)]
            assert all(a.end <= b.start for a, b in zip(own, own[1:]))
            assert len(own) > 30
    alarmed = [f for f in files if f.alarm_flags]
    assert 0 < len(alarmed) < len(files) / 4
    assert any(f.alarm_flags >> 32 for f in alarmed) and any(f.alarm_flags & 0xFFFFFFFF for f in alarmed)
    assert {f.storage_type for f in alarmed} == {1, 2}
    assert all(f.alarm_flags for f in files if f.storage_type == 2)
    assert {f.media_type for f in files if f.channel == 4} == {2}  # no microphone
    assert {f.media_type for f in files if f.channel < 4} == {0}


def at(day_offset: int, hour: int, minute: int = 0) -> datetime:
    day = datetime.fromtimestamp(T0, BEIJING).date() - timedelta(days=day_offset)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BEIJING)


def test_the_query_filters() -> None:
    """Channel 0 lists every channel, another that channel; a time range lists the files
    overlapping it; an alarm mask the files with one of its bits; the stream, storage and
    media types theirs (video: with pictures; audio and video: with both)."""
    rig = online()
    every = listed(rig, ANY)
    assert len(every) == len(list(recordings(PHONE, 4, 3, T0)))

    def only(query: QueryResources, keep: Any) -> None:
        got = listed(rig, query)
        assert got == tuple(r for r in every if keep(r))
        assert 0 < len(got) < len(every)

    only(attrs.evolve(ANY, channel=2), lambda r: r.channel == 2)
    start, end = at(1, 9, 30), at(1, 10, 15)
    only(attrs.evolve(ANY, start=start, end=end), lambda r: r.end > start and r.start < end)
    only(attrs.evolve(ANY, start=at(0, 12)), lambda r: r.end > at(0, 12))
    only(attrs.evolve(ANY, alarm_flags=1 << 1), lambda r: r.alarm_flags & 2)
    only(attrs.evolve(ANY, alarm_flags=0xFFFFFFFF << 32), lambda r: r.alarm_flags >> 32)
    only(attrs.evolve(ANY, stream_type=2), lambda r: r.stream_type == 2)
    only(attrs.evolve(ANY, storage_type=2), lambda r: r.storage_type == 2)
    only(attrs.evolve(ANY, media_type=0), lambda r: r.media_type == 0)
    only(attrs.evolve(ANY, media_type=1), lambda r: r.media_type == 0)
    assert listed(rig, attrs.evolve(ANY, media_type=2)) == every
    assert listed(rig, attrs.evolve(ANY, channel=9)) == ()
    assert listed(rig, attrs.evolve(ANY, start=at(0, 20), end=at(0, 23))) == ()


def test_sub_packaged_and_resent() -> None:
    """A long list goes out in packets of at most 1023 bytes numbered 1..n on consecutive
    serials; with ``lose_packet`` 2 the second packet is left out of the first send, and
    a 0x8003 naming the first serial gets exactly the packets it asks for."""
    rig = online()
    rig.device.config = attrs.evolve(rig.device.config, lose_packet=2)
    h = rig.platform(ANY)
    first_send = sent(rig)
    total = first_send[0].header.packet.total
    assert total > 5 and all(len(f.body) <= MAX_BODY for f in first_send)
    assert [f.header.packet.index for f in first_send] == [1] + list(range(3, total + 1))
    first = first_send[0].header.serial
    assert [f.header.serial for f in first_send] == [first] + [first + i for i in range(2, total)]
    rig.platform(ResendRequest(first, (2,)))
    (again,) = sent(rig)
    assert (again.header.packet.index, again.header.serial) == (2, first + 1)
    pieces = {f.header.packet.index: f.body for f in [*first_send, again]}
    answer = decode_body(0x1205, b"".join(pieces[i] for i in range(1, total + 1)))
    assert answer == ResourceList(h.serial, rig.device.recordings(ANY, rig.now))
    rig.platform(ResendRequest(first, ()))
    assert [f.header.packet.index for f in sent(rig)] == list(range(1, total + 1))


@pytest.mark.parametrize("lose", [0, 3])
@pytest_twisted.ensureDeferred
async def test_the_list_over_loopback(lose: int) -> None:
    """A simulated device over TCP answers a 0x9205 for every channel: the fake platform
    answers each packet, asks again (0x8003) for the one the device left out
    (``--lose-packet``), and assembles the whole list, equal to what the device has."""
    reactor = _reactor()
    platform = FakePlatform(reactor)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(platform)
    config = FleetConfig(
        server=f"tcp:127.0.0.1:{port.getHost().port}", devices=1, first_phone=PHONE,
        seed=5, status_interval=0, device=attrs.evolve(FAST, channels=4, lose_packet=lose),
    )
    fleet = Fleet(reactor, config)
    done = fleet.start()
    try:
        await until(lambda: phone_key(PHONE) in platform.sessions, "the device to log in")
        serial = platform.send(PHONE, ANY)
        await until(lambda: platform.received[0x1205], "the whole list")
        (answer,) = [m.body for who, m in platform.replies if m.header.msg_id == 0x1205]
        assert answer.reply_serial == serial
        assert len(answer.items) > 300
        assert answer.items == tuple(fleet.devices[0].recordings(ANY, reactor.seconds()))
        totals = {total for _, msg, _, _, total in platform.packets if msg == 0x1205}
        (total,) = totals
        indexes = [index for _, msg, _, index, _ in platform.packets if msg == 0x1205]
        if lose:
            ((who, first, asked),) = platform.resend_requests
            assert asked == (lose,)
            assert sorted(indexes) == list(range(1, total + 1))
            assert indexes[-1] == lose  # it came when asked for
        else:
            assert platform.resend_requests == []
            assert indexes == list(range(1, total + 1))
    finally:
        await fleet.stop()
        await done
        await port.stopListening()
