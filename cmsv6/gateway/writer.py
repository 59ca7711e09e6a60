"""The position writer: batches reports, writes each batch in one transaction, and fires
each report's Deferred only once its batch has committed (the gateway acknowledges then).

While the database is slow or down, batches are retried and reports wait; past a high
watermark the writer asks the gateway to stop reading from devices (``on_pressure(True)``),
so memory stays bounded and nothing is acknowledged that is not stored.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.db import positions as store
from cmsv6.db.positions import AlarmChange, AlarmReset, PositionRow
from cmsv6.db.service import Database

_log = Logger()


class PositionWriter:
    def __init__(
        self,
        db: Database,
        clock: IReactorTime,
        window: float = 0.02,
        max_batch: int = 2000,
        high_water: int = 40_000,
        low_water: int = 10_000,
        concurrency: int = 2,
        write: Callable[..., Any] = store.write,
    ) -> None:
        self.db = db
        self.clock = clock
        self.window = window
        self.max_batch = max_batch
        self.high_water = high_water
        self.low_water = low_water
        self.concurrency = concurrency
        self._write = write
        self._queue: list[tuple[list[PositionRow], list[Any], defer.Deferred[None]]] = []
        self._queued_rows = 0
        self._in_flight = 0
        self._in_flight_rows = 0
        self._timer: IDelayedCall | None = None
        self._months: set[tuple[int, int]] = set()
        self.pressure = False
        self.on_pressure: Callable[[bool], None] = lambda on: None
        self.stopped = False
        # Counters (for logs and metrics).
        self.written = 0
        self.batches = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        """Reports accepted and not yet committed."""
        return self._queued_rows + self._in_flight_rows

    def submit(
        self, rows: list[PositionRow], alarms: list[AlarmChange | AlarmReset] = ()  # type: ignore[assignment]
    ) -> defer.Deferred[None]:
        """Queue reports (and the alarm changes they carry); fires once committed."""
        d: defer.Deferred[None] = defer.Deferred()
        self._queue.append((rows, list(alarms), d))
        self._queued_rows += len(rows) or 1
        self._check_pressure()
        if self._queued_rows >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = self.clock.callLater(self.window, self._flush)
        return d

    def stop(self) -> None:
        """Write nothing more (pending reports stay unacknowledged; devices resend them)."""
        self.stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _check_pressure(self) -> None:
        if not self.pressure and self.pending >= self.high_water:
            self.pressure = True
            _log.warn("database is behind: {pending} reports waiting; pausing devices",
                      pending=self.pending)
            self.on_pressure(True)
        elif self.pressure and self.pending <= self.low_water:
            self.pressure = False
            _log.info("database caught up; resuming devices")
            self.on_pressure(False)

    def _flush(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        while self._queue and self._in_flight < self.concurrency and not self.stopped:
            batch = []
            n = 0
            while self._queue and n < self.max_batch:
                item = self._queue.pop(0)
                batch.append(item)
                n += len(item[0]) or 1
            self._queued_rows -= n
            self._in_flight += 1
            self._in_flight_rows += n
            self._run(batch, n)
        if self._queue and self._timer is None and not self.stopped:
            self._timer = self.clock.callLater(self.window, self._flush)

    @defer.inlineCallbacks
    def _run(self, batch: list[tuple[list[PositionRow], list[Any], defer.Deferred[None]]], n: int) -> Any:
        rows = [row for item in batch for row in item[0]]
        alarms = [a for item in batch for a in item[1]]
        delay = 0.2
        while not self.stopped:
            try:
                months = {store.month_of(r.time) for r in rows} - self._months
                if months:
                    yield store.ensure_partitions(self.db, months)
                    self._months |= months
                yield self._write(self.db, rows, alarms)
            except Exception:  # noqa: BLE001 - any failure: retry the same batch
                self.failures += 1
                _log.failure("writing {n} reports failed; retrying in {delay:.1f} s",
                             Failure(), n=len(rows), delay=delay)
                yield _sleep(self.clock, delay)
                delay = min(delay * 2, 5.0)
                continue
            break
        self._in_flight -= 1
        self._in_flight_rows -= n
        if self.stopped:
            return
        self.written += len(rows)
        self.batches += 1
        for _, _, d in batch:
            d.callback(None)
        self._check_pressure()
        if self._queue:
            self._flush()


def _sleep(clock: IReactorTime, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d
