"""The position write path's prepared rows: each is exactly the JSON element the batch
statement reads (the same values as a ``Position`` gives), and a batch of them, mixed
with ``Position`` rows, is stored with every field."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st

from cmsv6.db import positions as store
from cmsv6.db.positions import Position, month_at, month_of, prepare, prepare_position, rows_json
from tests.support.database import query

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                     timezones=st.just(timezone(timedelta(hours=8))))  # fmt: skip
ints = st.integers(min_value=0, max_value=0xFFFFFFFF)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
extras = st.one_of(st.none(), st.dictionaries(
    st.integers(0, 255).map(lambda k: f"0x{k:02x}"),
    st.one_of(st.integers(0, 2**32), st.text(max_size=8).map(lambda s: s.replace("\0", ""))),
    max_size=5,
).map(lambda d: json.dumps(d, ensure_ascii=False)))  # fmt: skip


def _reference(r: Position) -> list[object]:
    """The element as the batch was made before prepared rows (json.dumps of a tuple),
    read back the way the statement reads it (``->>``, extras as JSON)."""
    (element,) = json.loads(json.dumps([(
        r.device_id, r.time.timestamp(), r.received.timestamp(), r.latitude, r.longitude,
        r.altitude, r.speed, r.direction, r.alarm, r.status, r.extras, r.blind,
        r.digest.hex() if r.digest is not None else None,
    )], ensure_ascii=False))  # fmt: skip
    if element[10] is not None:
        element[10] = json.loads(element[10])
    return element


@given(st.builds(
    Position, st.integers(1, 2**62), times, times, floats, floats,
    st.integers(-32768, 32767), floats, st.integers(0, 0xFFFF), ints, ints, extras,
    st.one_of(st.none(), st.booleans()), st.one_of(st.none(), st.binary(min_size=16, max_size=16)),
))  # fmt: skip
def test_prepared_row_is_the_reference_element(r: Position) -> None:
    """A prepared row's text is a JSON array with the values (numerically, as PostgreSQL
    casts them) of the reference element, and its month is the time's UTC month."""
    month, text = prepare_position(r)
    element = json.loads(text)
    if element[10] is not None:
        element[10] = json.loads(json.dumps(element[10]))
    assert element == _reference(r)
    assert month == month_of(r.time)
    assert json.loads(rows_json([r, (month, text)])) == [json.loads(text)] * 2


@given(times)
def test_month_at_is_month_of(t: datetime) -> None:
    """``month_at`` (epoch seconds, one cached month) agrees with ``month_of``, at month
    ends too."""
    first = t.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for when in (t, first, first - timedelta(microseconds=1), t + timedelta(days=31)):
        assert month_at((when - _EPOCH).total_seconds()) == month_of(when)


@pytest_twisted.inlineCallbacks
def test_prepared_and_position_rows_are_stored(dsn: str) -> None:
    """One batch of a prepared row and a Position row stores both, with every field; the
    last position is the later one."""
    from twisted.internet import reactor

    from cmsv6.db.service import Database

    (device_id,) = query(dsn, "INSERT INTO devices (phone) VALUES ('13800000001') RETURNING id")[0]
    t = datetime(2026, 11, 25, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    r = datetime(2026, 11, 25, 2, 0, 1, tzinfo=timezone.utc)
    old = Position(device_id, t, r, 22.5, 114.0, 12, 36.5, 90, 1, 3, '{"0x01": 5}', False, b"a" * 16)
    new = prepare(device_id, t.timestamp() + 2, r.timestamp(), -22.25, -114.5, -3, 0.0, 359,
                  0, 2, None, True, b"b" * 16)  # fmt: skip
    db = Database(dsn, reactor, size=1, writer_threads=1)
    db.startService()
    try:
        yield db.ready()
        yield store.ensure_partitions(db, {month_of(t)})
        yield store.write(db, [old, new], [])
        yield store.write(db, [old], [])  # already stored: ignored
        rows = yield store.positions(db, device_id, t, t + timedelta(seconds=3), 10)
    finally:
        yield db.stopService()
    assert rows == [
        Position(device_id, t, r, 22.5, 114.0, 12, 36.5, 90, 1, 3, '{"0x01": 5}', False, b"a" * 16),
        Position(device_id, t + timedelta(seconds=2), r, -22.25, -114.5, -3, 0.0, 359, 0, 2, None,
                 True, b"b" * 16),
    ]  # fmt: skip
    assert query(dsn, "SELECT latitude, extras FROM last_positions") == [(-22.25, None)]
