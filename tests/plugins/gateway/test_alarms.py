"""Alarm changes from reports: a session's first report resets, bits open and close
alarms, video-alarm bits count too, active-safety items are instant events; what a
session hands the position writer."""

from __future__ import annotations

import json
from datetime import datetime

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from cmsv6.db.alarms import AlarmChange, AlarmReset
from cmsv6.plugins.gateway.alarms import changes
from cmsv6.protocols.jt808.codec import Message
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.messages.location import AlarmIdentification, BsdAlarm
from tests.support.device import location

T = datetime(2026, 11, 25, 8, 0, tzinfo=BEIJING)


def test_first_report_resets_with_what_is_set() -> None:
    """The first report of a session closes every other bit alarm and opens its own."""
    out = changes(7, None, location(alarm=0b10), T)
    assert out == [
        AlarmReset(7, T, ("bit:overspeed",)),
        AlarmChange(7, "bit:overspeed", T, True, 22.5431, 114.0579),
    ]


def test_unchanged_word_makes_no_change() -> None:
    """The same alarm word as before changes nothing."""
    assert changes(7, (0b10, 0), location(alarm=0b10), T) == []


def test_rise_and_fall() -> None:
    """A bit that rises opens its alarm, one that falls closes it (video bits too)."""
    loc = location(alarm=0b1, extras={0x14: 0b1})
    out = changes(7, (0b10, 0), loc, T)
    assert AlarmChange(7, "bit:emergency", T, True, 22.5431, 114.0579) in out
    assert AlarmChange(7, "bit:video:video_signal_loss", T, True, 22.5431, 114.0579) in out
    assert AlarmChange(7, "bit:overspeed", T, False) in out and len(out) == 3


def test_active_safety_event_is_instant() -> None:
    """An active-safety item is recorded as an alarm that opens and closes at once."""
    item = BsdAlarm(42, 0, 1, 30, 10, 1, 2, T, 0, AlarmIdentification("T1", T, 0, 1))
    (event,) = changes(7, (0, 0), location(extras={0x67: item}), T)
    assert event.kind == "bsd:1:42" and event.instant and event.opened
    assert '"alarm_id": 42' in (event.details or "")


def test_safety_items_are_every_item_that_decodes_to_an_event() -> None:
    """The session's quick test (``SAFETY_ITEMS``) names every additional item whose value
    decodes to an active-safety event: a report without one of them makes no event."""
    from cmsv6.plugins.gateway.alarms import _SAFETY, SAFETY_ITEMS
    from cmsv6.protocols.jt808.messages.location import EXTRA_ITEMS

    events = {k for k, codec in EXTRA_ITEMS.items()
              if any(getattr(codec, "cls", None) is cls or codec is cls.CODEC for cls in _SAFETY)}  # type: ignore[attr-defined]  # fmt: skip
    assert SAFETY_ITEMS == events == {0x64, 0x65, 0x66, 0x67}


@settings(max_examples=300)
@given(st.dictionaries(st.integers(0, 255), st.integers(0, 2**32) | st.binary(max_size=6), max_size=8))
def test_extras_json_fast_way_equals_general_way(extras: dict[int, object]) -> None:
    """Additional items of integers and bytes make the JSON the general way makes."""
    from cmsv6.plugins.gateway.session import _extras_json, extras_json

    assert json.loads(extras_json(extras)) == json.loads(_extras_json(extras))


def test_session_hands_the_writer_rows_and_changes_and_acks_after_commit() -> None:
    """Through a session: each report is one prepared row (its time and the session's
    clock as epoch seconds); a report with the alarm words of the one before makes no
    change unless it carries an active-safety item; the 0x8001 comes only once the writer
    says committed."""
    from twisted.internet import task

    from cmsv6.db.devices import Device
    from cmsv6.plugins.gateway.gateway import Gateway
    from cmsv6.plugins.gateway.session import DeviceSession
    from cmsv6.protocols.jt808.header import Header
    from tests.support.link import FakeLink

    clock = task.Clock()
    clock.advance(1_700_000_000.5)
    gw = Gateway(db=None, clock=clock, gateway_id="gw", public_address="x")  # type: ignore[arg-type]
    submitted: list[tuple[list[object], list[object], object]] = []
    gw.writer.submit_then = lambda rows, changes, then: submitted.append((rows, changes, then))  # type: ignore[method-assign]
    link = FakeLink()
    session = DeviceSession(gw, link)
    session.device = Device(7, "13800000001", None, None, None, 4, None)
    session.header = Header(0x0200, "013800000001", 1)
    bsd = BsdAlarm(42, 0, 1, 30, 10, 1, 2, T, 0, AlarmIdentification("T1", T, 0, 1))
    for serial, loc in enumerate([location(time=T), location(time=T), attrs.evolve(location(extras={0x67: bsd}), time=None)]):
        session.message_received(Message(Header(0x0200, "013800000001", serial), loc), b"")
    assert link.frames == []  # nothing acknowledged before the writer commits
    (first, _), (second, _), (third, _) = [(rows[0], changes) for rows, changes, _ in submitted]
    assert [len(c) for _, c, _ in submitted] == [1, 0, 1]  # the reset; nothing; the event
    assert submitted[2][1][0].kind == "bsd:1:42"
    assert json.loads(first[1])[1:3] == [T.timestamp(), 1_700_000_000.5]
    assert json.loads(third[1])[1:3] == [1_700_000_000.5, 1_700_000_000.5]  # no time: received
    submitted[0][2](None)
    submitted[1][2](RuntimeError("refused"))
    assert [(m.body.reply_serial, m.body.result) for m in link.messages] == [(0, 0), (1, 1)]
