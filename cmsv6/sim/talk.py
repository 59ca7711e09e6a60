"""Simulated talk-back (0x9101 data type 2) and broadcast (4), as units do them.

After answering the request the unit opens a TCP connection to the address in it. For a
talk-back it sends its microphone up that connection (the clip's tone, in the unit's
codec, 40 ms frames as JT/T 1078 audio packets, timestamps from 0); for both it listens:
the platform's audio packets come down the same connection, are cut and reassembled by the
media server's own parser (``MediaStream``), decoded with FFmpeg in the codec the unit
announced (a HiSilicon header taken off when there is one) and measured: frames, seconds,
RMS level and dominant frequency (``cmsv6.sim.audio.Listener``). The report is kept in
``Streamer.talk_reports[(phone, channel)]`` (updated as audio arrives) and logged when the
talk ends (0x9102 command 4, the connection closed). Bytes that are no 1078 stream are
logged and counted; a connection that sends nothing else is closed, as the parser says.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from cmsv6.protocols.jt808.messages.jt1078 import RealtimeAvRequest, RequestDataType
from cmsv6.protocols.jt1078.frames import Frame
from cmsv6.protocols.jt1078.packet import DataType
from cmsv6.protocols.jt1078.stream import Garbage, MediaStream, StreamFailed
from cmsv6.sim.audio import Listener, TalkReport
from cmsv6.sim.video import STREAMING, Sender, _Position

_log = Logger()


class Talk(Sender):
    """One channel's talk-back or broadcast."""

    registry = "talks"

    def __init__(
        self, streamer: Any, phone: str, version: int, request: RealtimeAvRequest,
        audio_codec: str = "g711a",
    ) -> None:
        super().__init__(
            streamer, phone, version, request.channel, f"{request.server_ip}:{request.tcp_port}"
        )
        self.broadcast = request.data_type == RequestDataType.BROADCAST
        self.kind = "broadcast" if self.broadcast else "talk-back"
        self.codec = audio_codec
        self.listener = Listener(phone, request.channel, audio_codec)
        self._audio = _Position(streamer.audio_track(self.sim_size, audio_codec))
        self._stream = MediaStream()
        self._t0 = 0.0
        self.garbage = 0

    def describe(self) -> str:
        up = "" if self.broadcast else f"sending {self.codec} audio and "
        return f"{self.kind} with {self.address}: {up}listening in {self.codec}"

    def begin(self, now: float) -> None:
        self._t0 = now

    @property
    def report(self) -> TalkReport:
        return self.listener.report()

    # -- down -----------------------------------------------------------------------------

    def received(self, data: bytes) -> None:
        heard = False
        for event in self._stream.feed(data):
            if isinstance(event, Frame):
                if event.data_type == DataType.AUDIO:
                    self.listener.heard(event.payload)
                    heard = True
            elif isinstance(event, Garbage):
                self.garbage += event.size
                _log.debug("{phone} channel {channel}: {size} bytes that are no 1078 packet: "
                           "{reason}", phone=self.phone, channel=self.channel, size=event.size,
                           reason=event.reason)
            elif isinstance(event, StreamFailed):
                _log.info("{phone} channel {channel}: {kind} closed: {reason}",
                          phone=self.phone, channel=self.channel, kind=self.kind,
                          reason=event.reason)
                self.close(f"not a JT/T 1078 stream: {event.reason}")
                return
        if heard:
            self.streamer.heard(self, self.listener.report())

    # -- up -------------------------------------------------------------------------------

    def run(self, now: float) -> None:
        if self.broadcast or self.state != STREAMING or self.held:
            return
        at = int((now - self._t0) * 1000 * self.streamer.config.pace)
        audio = self._audio
        if audio.due < at - int(self.streamer.config.max_lag * 1000):
            audio.seek(at)
        out: list[bytes] = []
        while audio.due <= at:
            self.stamped(audio.track.cuts[audio.index], audio.due, None, out)
            audio.advance()
        self.write(out, 0)

    def resumeProducing(self) -> None:
        if self.held:
            self.held = False
            now = self.streamer.now()
            self._audio.seek(int((now - self._t0) * 1000 * self.streamer.config.pace))
