"""Simulated playback of a recording (0x9201), controlled by 0x9202, as units do it.

After answering a 0x9201 the unit opens a TCP connection to the address in it and sends
the recording from ``start`` as JT/T 1078 packets, on a connection of its own (a channel
can be live and played back at once). Every recording is the clip (``cmsv6.media.clip``),
placed on the recording's time line so that clip time is the recording time modulo the
clip's length: the packets' timestamps are the recording time in ms since the epoch
(1970, UTC), so a seek shows as a jump, and keyframes fall on the same instants whichever
way one gets there (every 2 s on the main stream).

The recording time advances with the real time the connection could take (nothing is
skipped while the transport holds the unit back), times the speed:

* normal: every picture, and the sound when the request asks for audio (media type 0, 1
  or 3);
* fast-forward at ×1/×2 every picture, at ×4 and more keyframes only (as units do), no
  sound;
* keyframe rewind: keyframes going back in time at ×speed, no sound; it holds once it
  has sent the keyframe at the recording's ``start`` (asked for in the 0x9201, it goes
  from ``end`` back to ``start``);
* keyframes: keyframes only at ×1;
* single frame: the keyframe at ``start``, then it holds.

Each 0x9202 takes effect at once: pause (nothing is sent, the time line stands still),
resume/normal play, stop (the connection is closed), fast-forward, rewind, keyframes, and
seek to ``position`` (which also resumes a paused playback). After any of them the pictures restart at a keyframe: going forwards,
the first one not before the time reached (for a seek, the last one not after the position
asked for, so that moment is shown); going backwards, the last one before it. Reaching
``end`` closes the connection.
"""

from __future__ import annotations

import bisect
from typing import Any

from cmsv6.protocols.jt808.messages.jt1078 import (
    AvCodec,
    MediaType,
    PlaybackAction,
    PlaybackControl,
    PlaybackMode,
    PlaybackRequest,
    RecordStream,
)
from cmsv6.protocols.jt1078.packet import DataType
from cmsv6.sim.video import STREAMING, Sender, Track, _Position, intervals

#: Speed codes (0x9201, 0x9202) → multiples; 0 ("none") plays at ×1.
SPEEDS = {0: 1, 1: 1, 2: 2, 3: 4, 4: 8, 5: 16}
NORMAL, FAST_FORWARD, REWIND, KEYFRAMES, SINGLE = (
    "normal", "fast-forward", "rewind", "keyframes", "single frame"
)
_MODES = {
    PlaybackMode.NORMAL: NORMAL,
    PlaybackMode.FAST_FORWARD: FAST_FORWARD,
    PlaybackMode.KEYFRAME_REWIND: REWIND,
    PlaybackMode.KEYFRAME: KEYFRAMES,
    PlaybackMode.SINGLE_FRAME: SINGLE,
}
#: From this multiple on, fast-forward sends keyframes only.
KEYFRAMES_FROM = 4


def epoch_ms(when: Any) -> int:
    return int(when.timestamp() * 1000)


def key_at_or_after(track: Track, at: int) -> int:
    """The time (ms on the recording's time line) of the first keyframe not before ``at``."""
    loop, offset = divmod(at, track.duration)
    times = [track.times[k] for k in track.keys]
    i = bisect.bisect_left(times, offset)
    if i == len(times):
        return (loop + 1) * track.duration + times[0]
    return loop * track.duration + times[i]


def key_at_or_before(track: Track, at: int) -> int:
    """The time of the last keyframe not after ``at``."""
    loop, offset = divmod(at, track.duration)
    times = [track.times[k] for k in track.keys]
    i = bisect.bisect_right(times, offset) - 1
    if i < 0:
        return (loop - 1) * track.duration + times[-1]
    return loop * track.duration + times[i]


class Playback(Sender):
    """One channel's playback."""

    kind = "playback"
    registry = "playbacks"

    def __init__(
        self,
        streamer: Any,
        phone: str,
        version: int,
        request: PlaybackRequest,
        audio_codec: str = "g711a",
        video_codec: int = AvCodec.H264,
    ) -> None:
        super().__init__(
            streamer, phone, version, request.channel, f"{request.server_ip}:{request.tcp_port}"
        )
        self.request = request
        stream = 1 if request.stream_type == RecordStream.SUB else 0
        self._track = streamer.video_track(stream, self.sim_size, video_codec)
        self._video = _Position(self._track)
        self._audio = _Position(streamer.audio_track(self.sim_size, audio_codec))
        self.with_video = request.media_type != MediaType.AUDIO
        self.with_audio = request.media_type in (
            MediaType.AUDIO_VIDEO, MediaType.AUDIO, MediaType.VIDEO_OR_AUDIO_VIDEO
        )
        self.start = epoch_ms(request.start)
        self.end = epoch_ms(request.end) if request.end is not None else None
        self.mode = _MODES.get(PlaybackMode(request.mode), NORMAL)
        self.speed = SPEEDS.get(request.speed, 1)
        self.paused = False
        #: Where the recording's time line is (ms since the epoch): a rewind asked for in
        #: the 0x9201 goes from the end back to the start.
        rewind_from_end = self.mode == REWIND and self.end is not None
        self.position = float(self.end if rewind_from_end else self.start)  # type: ignore[arg-type]
        #: The next keyframe to send in the keyframe modes (its time).
        self._next_key = 0
        self._last_i: int | None = None
        self._last_frame: int | None = None
        self._last_run = 0.0
        self._restart(seek=True)

    def describe(self) -> str:
        end = "on" if self.end is None else f"to {self.request.end.isoformat()}"  # type: ignore[union-attr]
        return (
            f"playing back {self.request.start.isoformat()} {end} to {self.address}"  # type: ignore[union-attr]
            f" ({self.mode} ×{self.speed})"
        )

    def begin(self, now: float) -> None:
        self._last_run = now

    # -- 0x9202 ---------------------------------------------------------------------------

    def control(self, body: PlaybackControl, now: float) -> bool:
        """Act on a 0x9202; False when it cannot be followed."""
        self._advance(now)
        action = body.action
        if action == PlaybackAction.STOP:
            self.close("stopped by 0x9202")
            return True
        if action == PlaybackAction.PAUSE:
            self.paused = True
            return True
        if action == PlaybackAction.SEEK:
            if body.position is None:
                return False
            self.position = float(epoch_ms(body.position))
            self.paused = self.mode == SINGLE
            self._restart(seek=True)
            return True
        if action == PlaybackAction.START:
            self.mode, self.speed = NORMAL, 1
        elif action == PlaybackAction.FAST_FORWARD:
            self.mode, self.speed = FAST_FORWARD, SPEEDS.get(body.speed, 1)
        elif action == PlaybackAction.KEYFRAME_REWIND:
            self.mode, self.speed = REWIND, SPEEDS.get(body.speed, 1)
        elif action == PlaybackAction.KEYFRAME:
            self.mode, self.speed = KEYFRAMES, 1
        else:
            return False
        self.paused = False
        self._restart(seek=False)
        return True

    def _restart(self, seek: bool) -> None:
        """Pictures from a keyframe again (see the module docstring), sound from now."""
        at = int(self.position)
        track = self._track
        if self.mode == REWIND:
            key = key_at_or_before(track, at if seek else at - 1)
        elif seek:
            key = key_at_or_before(track, at)
        else:
            key = key_at_or_after(track, at)
        self._next_key = key
        self._video.seek(key)
        self._audio.seek(key if self.mode != REWIND else at)
        self.position = float(key)
        self._last_i = self._last_frame = None

    # -- sending --------------------------------------------------------------------------

    @property
    def _keyframes_only(self) -> bool:
        return self.mode in (KEYFRAMES, SINGLE) or (
            self.mode == FAST_FORWARD and self.speed >= KEYFRAMES_FROM
        )

    def _advance(self, now: float) -> None:
        """Move the time line on by the real time since the last turn (at most
        ``max_lag`` of it: a reactor that stalled does not make a burst)."""
        elapsed = min(max(0.0, now - self._last_run), self.streamer.config.max_lag)
        self._last_run = now
        if self.state != STREAMING or self.paused or self.held:
            return
        step = elapsed * 1000 * self.streamer.config.pace * self.speed
        self.position += -step if self.mode == REWIND else step

    def run(self, now: float) -> None:
        self._advance(now)
        if self.state != STREAMING or self.paused or self.held:
            return
        out: list[bytes] = []
        video_bytes = 0
        if self.mode == REWIND:
            video_bytes = self._rewind(out)
        elif self._keyframes_only:
            video_bytes = self._keyframes(out)
        else:
            video_bytes = self._forward(out)
        self.write(out, video_bytes)
        if self.end is not None and self.state == STREAMING and self._past_end():
            self.close(f"reached the end of the recording ({self.request.end})")

    def _past_end(self) -> bool:
        assert self.end is not None
        if self.mode == REWIND:
            return False
        if self._keyframes_only:
            return self._next_key > self.end
        if self.with_video:
            return self._video.due > self.end
        return self._audio.due > self.end

    def _picture(self, cut_index: int, at: int, out: list[bytes]) -> int:
        cut = self._track.cuts[cut_index]
        size = self.stamped(cut, at, intervals(at, self._last_i, self._last_frame), out)
        if cut.data_type == DataType.I_FRAME:
            self._last_i = at
        self._last_frame = at
        return size

    def _forward(self, out: list[bytes]) -> int:
        at = int(self.position)
        if self.end is not None:
            at = min(at, self.end)
        video, audio = self._video, self._audio
        sound = self.with_audio and self.mode == NORMAL and self.speed == 1
        size = 0
        while True:
            tv = video.due if self.with_video else None
            ta = audio.due if sound else None
            if tv is not None and tv <= at and (ta is None or tv <= ta):
                size += self._picture(video.index, tv, out)
                video.advance()
            elif ta is not None and ta <= at:
                self.stamped(audio.track.cuts[audio.index], ta, None, out)
                audio.advance()
            else:
                return size

    def _keyframes(self, out: list[bytes]) -> int:
        at = int(self.position)
        if self.end is not None:
            at = min(at, self.end)
        size = 0
        while self._next_key <= at:
            self._video.seek(self._next_key)
            size += self._picture(self._video.index, self._next_key, out)
            if self.mode == SINGLE:
                self.paused = True
                self._next_key = key_at_or_after(self._track, self._next_key + 1)
                break
            self._next_key = key_at_or_after(self._track, self._next_key + 1)
        return size

    def _rewind(self, out: list[bytes]) -> int:
        at = int(self.position)
        size = 0
        while self._next_key >= at:
            floor = key_at_or_before(self._track, self.start)
            if self._next_key < floor:
                self.paused = True  # back at the beginning: hold there
                self.position = float(floor)
                break
            self._video.seek(self._next_key)
            size += self._picture(self._video.index, self._next_key, out)
            self._next_key = key_at_or_before(self._track, self._next_key - 1)
        return size
