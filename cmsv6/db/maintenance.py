"""Keeping the positions table: its day partitions made ahead of time, those past the
retention dropped whole (``[database] retention_days``), what the default partition holds
dealt with.

The work is one SQL function of schema step 8, ``cmsv6_position_maintain``: it runs with
the schema owner's rights (the servers' role may not create or drop tables), one caller at
a time (an advisory lock), idempotent, and says what it did in lines. This module calls it:
``Maintenance``, a service the active login server runs at start and every hour (hourly
rather than daily: a step skipped because positions was busy is retried within the hour,
and a run with nothing to do costs a catalog read), and ``maintain_now`` for
``cmsv6 db maintain``. Both read the time from their caller, so tests choose the day.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import psycopg2
from twisted.application import internet, service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

_log = Logger()

#: Days after today whose partitions exist before any report of theirs arrives.
AHEAD_DAYS = 14

#: Seconds between two runs on the active login server.
INTERVAL = 3600.0
#: Seconds before a failed run (the database not there yet, a lock not had) is tried again.
RETRY = 60.0

_MAINTAIN = "SELECT * FROM cmsv6_position_maintain(%s, %s, %s)"


def maintain_now(dsn: str, retention_days: int, now: datetime | None = None) -> list[str]:
    """Run the maintenance once (blocking), in a connection of its own; what it did."""
    if now is None:
        now = datetime.now(timezone.utc)
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(_MAINTAIN, (now, AHEAD_DAYS, retention_days))
            done = [r[0] for r in cur.fetchall()]
        conn.commit()
    finally:
        conn.close()
    return done


def maintain(db: Any, now: datetime, retention_days: int) -> defer.Deferred[list[str]]:
    """Run the maintenance once through the database service (``cmsv6.db.service``)."""
    d = db.run_query(_MAINTAIN, (now, AHEAD_DAYS, retention_days))
    d.addCallback(lambda rows: [r[0] for r in rows])
    return d


class Maintenance(service.MultiService):
    """Runs the maintenance once the database is connected and every ``interval`` seconds;
    logs each thing done, and a failure (tried again ``RETRY`` seconds later; the writer
    never depends on it: the default partition takes what no day partition does)."""

    def __init__(self, db: Any, clock: IReactorTime, retention_days: int,
                 interval: float = INTERVAL) -> None:  # fmt: skip
        super().__init__()
        self.db = db
        self.clock = clock
        self.retention_days = retention_days
        #: Runs finished, failed or not.
        self.runs = 0
        self._retry: Any = None
        timer = internet.TimerService(interval, self.run)
        timer.clock = clock
        timer.setServiceParent(self)

    @defer.inlineCallbacks
    def run(self) -> Any:
        # A login server may become active before its database has connected.
        ready = getattr(self.db, "ready", None)
        if ready is not None:
            yield ready()
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        try:
            done = yield maintain(self.db, now, self.retention_days)
        except Exception:  # noqa: BLE001 - logged; tried again soon
            _log.failure("positions maintenance failed; tried again in {s:g} s", s=RETRY)
            if self.running and (self._retry is None or not self._retry.active()):
                self._retry = self.clock.callLater(RETRY, self.run)
        else:
            for line in done:
                _log.info("positions maintenance: {what}", what=line)
        finally:
            self.runs += 1

    def stopService(self) -> Any:  # noqa: N802
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        return super().stopService()
