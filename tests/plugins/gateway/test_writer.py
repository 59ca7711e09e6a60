"""The position writer on a fake clock: batching, acknowledgement only after commit,
retries while the database is unavailable, a bad report refused alone, backpressure."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from twisted.internet import defer, task

from cmsv6.db.positions import Position
from cmsv6.db.service import DatabaseUnavailable
from cmsv6.plugins.gateway.writer import PositionWriter

T = datetime(2026, 11, 25, tzinfo=timezone.utc)


def row(device: int) -> Position:
    return Position(device, T, T, 1.0, 2.0, 3, 4.0, 5, 0, 0, None, False, b"d")


class FakeDb:
    """Stands for the database: records writes; the test decides how each ends."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Position], defer.Deferred[None]]] = []
        self.operations: list[str] = []

    def write(self, db: Any, rows: list[Position], alarms: list[Any]) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.calls.append((rows, d))
        return d

    def run_operation(self, sql: str, args: Any = None) -> defer.Deferred[None]:
        self.operations.append(sql)
        return defer.succeed(None)


def make(**kw: Any) -> tuple[PositionWriter, FakeDb, task.Clock]:
    clock = task.Clock()
    db = FakeDb()
    writer = PositionWriter(db, clock, write=db.write, **kw)  # type: ignore[arg-type]
    return writer, db, clock


def test_batches_and_acknowledges_after_commit() -> None:
    """Reports within the window go in one write; none is answered before it commits."""
    writer, db, clock = make(window=0.02)
    answers: list[Any] = []
    for i in range(3):
        writer.submit_then([row(i)], [], answers.append)
    assert db.calls == []
    clock.advance(0.02)
    assert len(db.calls) == 1 and len(db.calls[0][0]) == 3
    assert answers == []
    db.calls[0][1].callback(None)
    assert answers == [None, None, None] and writer.pending == 0


def test_a_batch_is_one_round_trip() -> None:
    """The writer asks the database for nothing but the batch, in a new month too (day
    partitions are made ahead by maintenance; positions_default takes the rest)."""
    writer, db, clock = make()
    for month in (11, 12):
        later = Position(1, T.replace(month=month), T, 1.0, 2.0, 3, 4.0, 5, 0, 0, None, False, b"d")
        writer.submit_then([later], [], lambda r: None)
        clock.advance(0.02)
        db.calls[-1][1].callback(None)
    assert len(db.calls) == 2 and db.operations == []


def test_full_batch_is_written_at_once() -> None:
    """Reaching max_batch writes without waiting for the window."""
    writer, db, clock = make(max_batch=2)
    writer.submit_then([row(1)], [], lambda r: None)
    writer.submit_then([row(2)], [], lambda r: None)
    assert len(db.calls) == 1


def test_retries_while_database_unavailable() -> None:
    """An unavailable database is retried with backoff; the reports are answered only
    once a write commits."""
    writer, db, clock = make()
    answers: list[Any] = []
    writer.submit_then([row(1)], [], answers.append)
    clock.advance(0.02)
    db.calls[0][1].errback(DatabaseUnavailable("down"))
    assert answers == [] and writer.failures == 1
    clock.advance(0.2)
    assert len(db.calls) == 2
    db.calls[1][1].errback(DatabaseUnavailable("down"))
    clock.advance(0.4)
    db.calls[2][1].callback(None)
    assert answers == [None]


def test_bad_report_is_refused_alone() -> None:
    """A batch failing on its data is split; the report that fails alone gets the error and
    the others are stored."""
    writer, db, clock = make()
    answers: dict[int, Any] = {}
    for i in range(3):
        writer.submit_then([row(i)], [], lambda r, i=i: answers.__setitem__(i, r))
    clock.advance(0.02)
    db.calls[0][1].errback(ValueError("numeric field overflow"))
    for rows, d in db.calls[1:]:
        if rows[0].device_id == 1:
            d.errback(ValueError("numeric field overflow"))
        else:
            d.callback(None)
    # Writes one by one happen in sequence: finish each as it comes (bounded).
    for _ in range(10):
        rows, d = db.calls[-1]
        if not d.called:
            (d.errback(ValueError("overflow")) if rows[0].device_id == 1 else d.callback(None))
    assert answers[0] is None and answers[2] is None
    assert isinstance(answers[1], ValueError) and writer.refused == 1


def test_backpressure() -> None:
    """Past the high watermark the writer asks to pause; back under the low one, to resume."""
    writer, db, clock = make(high_water=4, low_water=1, max_batch=100)
    events: list[bool] = []
    writer.on_pressure = events.append
    for i in range(4):
        writer.submit_then([row(i)], [], lambda r: None)
    assert events == [True]
    clock.advance(0.02)
    db.calls[0][1].callback(None)
    assert events == [True, False]
