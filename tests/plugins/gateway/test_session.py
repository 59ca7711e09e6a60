"""A gateway session's rows from reports, through the session (no database, no sockets):
what the hot path keeps between reports gives what each report alone would."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet import task

from cmsv6.db.devices import Device
from cmsv6.plugins.gateway import session as gateway_session
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.session import DeviceSession
from cmsv6.protocols.jt808.codec import Message
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.location import Location
from tests.support.device import location
from tests.support.link import FakeLink

PHONE = "013800000001"
RECEIVED = 1_700_000_000.5


def session_and_rows() -> tuple[DeviceSession, list[list[Any]]]:
    """An authenticated session whose writer keeps each report's row, decoded from JSON."""
    clock = task.Clock()
    clock.advance(RECEIVED)
    gw = Gateway(db=None, clock=clock, gateway_id="gw", public_address="x")  # type: ignore[arg-type]
    rows: list[list[Any]] = []
    gw.writer.submit_then = (  # type: ignore[method-assign]
        lambda prepared, changes, then: rows.extend(json.loads(r[1]) for r in prepared))
    session = DeviceSession(gw, FakeLink())
    session.device = Device(7, "13800000001", None, None, None, 4, None)
    session.header = Header(0x0200, PHONE, 1)
    return session, rows


def report(session: DeviceSession, loc: Location, serial: int = 1) -> None:
    session.message_received(Message(Header(0x0200, PHONE, serial), loc), b"")


def test_each_row_has_its_own_reports_epoch_time() -> None:
    """Each row's time is its report's ``timestamp()``, whatever came before: the same
    instant in another fixed offset, a naive time, more distinct times than the session
    keeps, and the two 01:30 of a night that turns the clocks back (equal as datetimes,
    an hour apart as instants)."""
    session, rows = session_and_rows()
    t = datetime(2026, 11, 25, 8, 0, tzinfo=BEIJING)
    new_york = ZoneInfo("America/New_York")
    times = [t, t, t.astimezone(timezone.utc), t.replace(tzinfo=None)]
    times += [t + timedelta(seconds=s) for s in range(2 * gateway_session.EPOCHS_KEPT + 3)]
    times += [t, datetime(2026, 11, 1, 1, 30, tzinfo=new_york),
              datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=new_york), t]  # fmt: skip
    for serial, when in enumerate(times):
        report(session, location(time=when), serial)
    assert [r[1] for r in rows] == [when.timestamp() for when in times]
    assert rows[-3][1] + 3600 == rows[-2][1]
    assert all(r[2] == RECEIVED for r in rows)


def test_row_digest_is_the_reports_whichever_way_it_comes() -> None:
    """A report's row carries ``report_digest`` of it, the same in a 0x0200 and again in a
    blind-area 0x0704, and another report's differs."""
    from cmsv6.plugins.gateway.session import report_digest
    from cmsv6.protocols.jt808.messages.location import BATCH_BLIND_AREA, LocationBatch

    session, rows = session_and_rows()
    t = datetime(2026, 11, 25, 8, 0, tzinfo=BEIJING)
    loc = location(time=t, alarm=5, extras={0x01: 9})
    other = location(time=t, alarm=5, lat=22.5432, extras={0x01: 9})
    report(session, loc)
    report(session, other)
    session.message_received(
        Message(Header(0x0704, PHONE, 3), LocationBatch(BATCH_BLIND_AREA, [loc])), b"")
    digests = [bytes.fromhex(r[12]) for r in rows]
    assert digests[0] == digests[2] == report_digest(loc, t) != digests[1]
    assert digests[1] == report_digest(other, t) and [r[11] for r in rows] == [False, False, True]


def test_alarm_changes_follow_both_alarm_words_through_the_session() -> None:
    """Through the session, a change of the 0x0200 alarm bits or of the 1078 video-alarm
    item (0x14) makes alarm changes; the same words again make none."""
    from cmsv6.db.alarms import AlarmChange

    session, _ = session_and_rows()
    handed: list[list[Any]] = []
    session.gateway.writer.submit_then = (  # type: ignore[method-assign]
        lambda prepared, changes, then: handed.append(changes))
    t = datetime(2026, 11, 25, 8, 0, tzinfo=BEIJING)
    for serial, (alarm, extras) in enumerate([(0, {}), (0, {0x14: 1}), (0, {0x14: 1}),
                                              (2, {0x14: 1}), (2, {0x14: 0}), (2, {})]):
        report(session, location(time=t, alarm=alarm, extras=extras), serial)
    kinds = [[(c.kind, c.opened) for c in changes if isinstance(c, AlarmChange)]
             for changes in handed]  # fmt: skip
    assert kinds == [[], [("bit:video:video_signal_loss", True)], [], [("bit:overspeed", True)],
                     [("bit:video:video_signal_loss", False)], []]  # fmt: skip


def test_replies_follow_the_2019_protocol_version() -> None:
    """A 2019 terminal that changes only its protocol-version byte is answered with the byte
    of the message each 0x8001 answers (the reply template is made again)."""
    from cmsv6.protocols.jt808.codec import encode
    from cmsv6.protocols.jt808.framing import parse_frame
    from cmsv6.protocols.jt808.messages.core import Heartbeat

    session, _ = session_and_rows()
    link = session.link
    phone = PHONE.rjust(20, "0")
    versions = [1, 2, 2, 1]
    for serial, pv in enumerate(versions):
        session.frame_received(parse_frame(encode(Header(0x0002, phone, serial, 2019, pv),
                                                  Heartbeat())))  # fmt: skip
    replies = link.messages  # type: ignore[attr-defined]
    assert [m.header.protocol_version for m in replies] == versions
    assert [(m.header.serial, m.body.reply_serial) for m in replies] == [(i, i) for i in range(4)]
