"""The position write path's prepared rows: each is exactly the JSON element the batch
statement reads (the same values as a ``Position`` gives), and a batch of them, mixed
with ``Position`` rows, is stored with every field, each value exactly; each known device's
last position is its newest report."""

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


def _write(dsn: str, rows: list[store.Row]) -> None:
    """One batch, as the gateway's writer threads send it (one query, one transaction)."""
    query(dsn, *store.batch_sql(rows, []))


#: Doubles whose shortest decimal is long, tiny, huge or subnormal.
_FLOATS = [0.1 + 0.2, 22.740019999999998, -114.5, 1e-05, -1e-05, 5e-324,
           1.7976931348623157e308, 123456789.12345679, -2.2250738585072014e-308]  # fmt: skip


def test_values_are_stored_exactly(dsn: str) -> None:
    """Every number comes back as the double (or integer) it was, extras as the same JSON
    (nested, non-ASCII, an exponent), no extras as SQL NULL, in positions and in
    last_positions."""
    (device_id,) = query(dsn, "INSERT INTO devices (phone) VALUES ('13800000002') RETURNING id")[0]
    t = 1_796_169_600.0  # 2026-12-02T00:00:00Z
    extras = '{"0x01": 4294967295, "0xe1": "ä\\u00e9", "0x64": {"a": [1, 2.5e-07, null]}}'
    rows = [
        prepare(device_id, t + i, t + i + 0.25, f, -f, -32768 + i, 36.5, 359, 0xFFFFFFFF,
                2**32 - 1 - i, extras if i % 2 else None, i % 2 == 0, bytes([i]) * 16)
        for i, f in enumerate(_FLOATS)
    ]  # fmt: skip
    _write(dsn, rows)
    stored = query(dsn, "SELECT extract(epoch FROM time)::float8,"
                   " extract(epoch FROM received)::float8, latitude, longitude, altitude, speed,"
                   " direction, alarm, status, extras::text, blind, digest"
                   " FROM positions ORDER BY time")  # fmt: skip
    assert [(r[:9], json.loads(r[9]) if r[9] else None, r[10], bytes(r[11])) for r in stored] == [
        ((t + i, t + i + 0.25, f, -f, -32768 + i, 36.5, 359, 0xFFFFFFFF, 2**32 - 1 - i),
         json.loads(extras) if i % 2 else None, i % 2 == 0, bytes([i]) * 16)
        for i, f in enumerate(_FLOATS)
    ]  # fmt: skip
    last = query(dsn, "SELECT latitude, longitude, extras::text FROM last_positions")
    assert last == [(_FLOATS[-1], -_FLOATS[-1], None)]


def test_last_position_is_the_newest_report_of_a_known_device(dsn: str) -> None:
    """A batch with a device's reports out of order leaves its newest as the last position;
    an older report later changes nothing; a device with no last position yet gets one; a
    report of a device not in devices is stored, but makes no last position."""
    a, b = (r[0] for r in query(
        dsn, "INSERT INTO devices (phone) VALUES ('13800000003'), ('13800000004') RETURNING id"))
    unknown = b + 1000
    t = 1_796_169_600.0

    def row(device: int, dt: float, lat: float) -> store.Prepared:
        return prepare(device, t + dt, t + 10, lat, 114.0, 0, 0.0, 0, 0, 0, None, False,
                       bytes([int(dt)]) * 16)  # fmt: skip

    def last() -> list[tuple[int, float, float]]:
        return query(dsn, "SELECT device_id, extract(epoch FROM time)::float8, latitude"
                     " FROM last_positions ORDER BY device_id")  # fmt: skip

    _write(dsn, [row(a, 1, 1.0), row(a, 3, 3.0), row(a, 2, 2.0), row(unknown, 5, 5.0)])
    assert last() == [(a, t + 3, 3.0)]
    _write(dsn, [row(a, 0, 0.5), row(b, 4, 4.0)])
    assert last() == [(a, t + 3, 3.0), (b, t + 4, 4.0)]
    assert query(dsn, "SELECT count(*) FROM positions") == [(6,)]
