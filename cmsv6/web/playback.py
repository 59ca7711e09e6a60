"""Login's memory of the playback sessions the Open API handed out: which media server
holds each (so ``POST /api/v1/playback/{id}/control`` reaches it) and which device it plays
(so the user asking is checked again). Bounded and expiring; a login server that restarts
or steps down forgets them (the viewer's own WebSocket still controls its playback)."""

from __future__ import annotations

import secrets
from collections import OrderedDict

from attrs import frozen


@frozen
class PlaybackSession:
    """Playback ``id`` of ``channel`` of device ``phone`` on media server ``media``,
    remembered until ``until`` (the clock's seconds)."""

    id: str
    media: str
    phone: str
    channel: int
    until: float


class PlaybackSessions:
    """At most ``limit`` sessions, each forgotten ``lifetime`` seconds after it was made or
    last controlled; the least recently used go first."""

    def __init__(self, limit: int = 10_000, lifetime: float = 6 * 3600.0) -> None:
        self.limit = limit
        self.lifetime = lifetime
        self._sessions: OrderedDict[str, PlaybackSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    @staticmethod
    def new_id() -> str:
        """A fresh session id: 22 URL-safe characters (128 random bits)."""
        return secrets.token_urlsafe(16)

    def add(self, session_id: str, media: str, phone: str, channel: int, now: float) -> PlaybackSession:
        session = PlaybackSession(session_id, media, phone, channel, now + self.lifetime)
        self._sessions[session_id] = session
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str, now: float) -> PlaybackSession | None:
        """The session (its life renewed), or None: never made, expired or pushed out."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.until <= now:
            del self._sessions[session_id]
            return None
        return self.add(session.id, session.media, session.phone, session.channel, now)
