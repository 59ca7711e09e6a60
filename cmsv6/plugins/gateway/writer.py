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
from cmsv6.db.alarms import AlarmChange, AlarmReset
from cmsv6.db.positions import Position
from cmsv6.db.service import Database, DatabaseUnavailable

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
        concurrency: int = 3,
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
        self._queue: list[tuple[list[Position], list[Any], Callable[[None], Any]]] = []
        self._queued_rows = 0
        self._in_flight = 0
        self._in_flight_rows = 0
        self._timer: IDelayedCall | None = None
        self.pressure = False
        self.on_pressure: Callable[[bool], None] = lambda on: None
        self.stopped = False
        # Counters (for logs and metrics).
        self.written = 0
        self.write_seconds = 0.0
        self.refused = 0
        self.batches = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        """Reports accepted and not yet committed."""
        return self._queued_rows + self._in_flight_rows

    def submit_then(
        self,
        rows: list[Position],
        alarms: list[AlarmChange | AlarmReset],
        committed: Callable[[None], Any],
    ) -> None:
        """Queue reports (and the alarm changes they carry): ``committed(None)`` is called
        once they are committed, or ``committed(error)`` if they cannot be stored (a
        callback, not a Deferred per report: this is the hot path)."""
        self._queue.append((rows, list(alarms) if alarms else (), committed))
        self._queued_rows += len(rows) or 1
        if self.pressure or self._queued_rows + self._in_flight_rows >= self.high_water:
            self._check_pressure()
        if self._queued_rows >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = self.clock.callLater(self.window, self._flush)

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
        queue = self._queue
        while queue and self._in_flight < self.concurrency and not self.stopped:
            # The batch is a slice of the queue (popping its items one by one from the
            # front of a list of thousands would move the rest each time).
            n = 0
            taken = 0
            for rows, _, _ in queue:
                if n >= self.max_batch:
                    break
                n += len(rows) or 1
                taken += 1
            batch = queue[:taken]
            del queue[:taken]
            self._queued_rows -= n
            self._in_flight += 1
            self._in_flight_rows += n
            self._run(batch, n)
        if self._queue and self._timer is None and not self.stopped:
            self._timer = self.clock.callLater(self.window, self._flush)

    @defer.inlineCallbacks
    def _run(self, batch: list[tuple[list[Position], list[Any], Callable[[Any], Any]]], n: int) -> Any:
        """Write a batch: retried while the database is unavailable; on any other error it
        is split, and a report that cannot be stored on its own is refused (its callback
        gets the error), so one bad report never blocks the others."""
        results = yield self._write_retrying(batch)
        self._in_flight -= 1
        self._in_flight_rows -= n
        if self.stopped:
            return
        self.batches += 1
        for (rows, _, committed), result in zip(batch, results):
            if result is None:
                self.written += len(rows)
            else:
                self.refused += len(rows)
            try:
                committed(result)
            except Exception:  # noqa: BLE001 - one report's answer, not the batch
                _log.failure("answering a report failed", Failure())
        self._check_pressure()
        if self._queue:
            self._flush()

    @defer.inlineCallbacks
    def _write_retrying(self, batch: list[tuple[list[Position], list[Any], Any]]) -> Any:
        """[None or the error] per item of the batch."""
        rows = [row for item in batch for row in item[0]]
        alarms = [a for item in batch for a in item[1]]
        delay = 0.2
        while not self.stopped:
            try:
                # One round trip: the day partitions are made ahead by maintenance, and a
                # row no partition covers lands in positions_default (schema step 8).
                started = self.clock.seconds()
                yield self._write(self.db, rows, alarms)
                self.write_seconds += self.clock.seconds() - started
                return [None] * len(batch)
            except DatabaseUnavailable as e:
                self.failures += 1
                _log.warn("writing {n} reports failed ({error}); retrying in {delay:.1f} s",
                          n=len(rows), error=str(e) or type(e).__name__, delay=delay)
                yield _sleep(self.clock, delay)
                # Capped at 1 s: reports resume within a second of the database's return.
                delay = min(delay * 2, 1.0)
            except Exception as e:  # noqa: BLE001 - the data, not the database
                self.failures += 1
                if len(batch) == 1:
                    _log.error("a report cannot be stored: {error}", error=str(e).strip())
                    return [e]
                _log.warn("a batch of {n} failed ({error}); writing its reports one by one",
                          n=len(rows), error=str(e).strip())
                results = []
                for item in batch:
                    (result,) = yield self._write_retrying([item])
                    results.append(result)
                return results
        return [DatabaseUnavailable("writer stopped")] * len(batch)


def _sleep(clock: IReactorTime, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d
