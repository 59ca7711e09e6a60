"""Every connection a fleet's units open to media servers, on one timer: live streams
(``cmsv6.sim.video.Camera``), playbacks (``cmsv6.sim.playback``) and talk-backs
(``cmsv6.sim.talk``), each kept by (phone, channel) in a table of its own, so a channel
can stream live, play back and talk at once.

The clips are encoded once per stream type and codec, cut into packet templates once per
SIM length and audio codec (``Track``), and shared by every connection.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import av
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.media.clip import CIF, FPS, GOP, Clip, ClipFrame, load_clip
from cmsv6.protocols.jt808.messages.jt1078 import (
    AvCodec,
    AvTransmissionControl,
    ControlCommand,
    LiveStream,
    PlaybackControl,
    PlaybackRequest,
    RealtimeAvRequest,
    RequestDataType,
)
from cmsv6.sim import audio as sim_audio
from cmsv6.sim.address import tcp_endpoint
from cmsv6.sim.audio import TalkReport
from cmsv6.sim.playback import Playback
from cmsv6.sim.talk import Talk
from cmsv6.sim.video import (
    AUDIO_HEADERS,
    CONNECTING,
    MAX_REASONS,
    SUB,
    Camera,
    Sender,
    StreamFactory,
    Track,
    VideoConfig,
    cut_track,
    hisilicon,
)

_log = Logger()
_OTHER = "other reasons"
#: Video codec names by table 12 code (what ``load`` is given).
VIDEO_CODECS = {AvCodec.H264: "h264", AvCodec.H265: "h265"}


class Streamer:
    """A fleet's media connections, on one timer.

    ``endpoint`` turns a client endpoint string into an endpoint; ``counters`` gets
    ``streams_open``, ``streams_opened``, ``stream_failures``, ``stream_bytes`` and
    ``video_bytes``; ``idle`` is called whenever a connection is gone (the fleet waits for
    that to stop). ``load(stream_type, codec)`` gives the clip of a stream type (0 main, 1
    sub) in a video codec ("h264", "h265").
    """

    def __init__(
        self,
        clock: IReactorTime,
        config: VideoConfig,
        endpoint: Callable[[str], IStreamClientEndpoint],
        counters: Any,
        idle: Callable[[], None] = lambda: None,
        load: Callable[[int, str], Clip] | None = None,
    ) -> None:
        if config.audio_header not in AUDIO_HEADERS:
            raise ValueError(f"audio header {config.audio_header!r} is not one of {AUDIO_HEADERS}")
        if not config.pace > 0:
            raise ValueError(f"video pace {config.pace} is not a positive number")
        self.config = config
        self.counters = counters
        self.cameras: dict[tuple[str, int], Camera] = {}
        self.playbacks: dict[tuple[str, int], Playback] = {}
        self.talks: dict[tuple[str, int], Talk] = {}
        #: What each talk-back (or broadcast) heard, the last one of each channel kept.
        self.talk_reports: dict[tuple[str, int], TalkReport] = {}
        #: Why streams ended other than by request (failures), most recent reasons kept.
        self.endings: Counter[str] = Counter()
        self._clock = clock
        self._endpoint = endpoint
        self._idle = idle
        self._load = load or self._load_clip
        self._clips: dict[tuple[int, str], Clip] = {}
        self._audio: dict[str, tuple[ClipFrame, ...]] = {}
        self._tracks: dict[tuple[Any, ...], Track] = {}
        self._loop: LoopingCall | None = None
        self._streaming = 0

    def now(self) -> float:
        return self._clock.seconds()

    @property
    def busy(self) -> int:
        """Connections that are not gone yet."""
        return len(self.cameras) + len(self.playbacks) + len(self.talks)

    def _senders(self) -> list[Sender]:
        return [*self.cameras.values(), *self.playbacks.values(), *self.talks.values()]

    # -- the clip ---------------------------------------------------------------------------

    def _load_clip(self, stream_type: int, codec: str) -> Clip:
        cache = self.config.cache_dir
        if stream_type == LiveStream.MAIN:
            return load_clip(*CIF, fps=FPS, gop=GOP, cache_dir=cache, codec=codec)
        width, height, fps = SUB
        return load_clip(width, height, fps=fps, gop=2 * fps, cache_dir=cache, codec=codec)

    def clip(self, stream_type: int, codec: str = "h264") -> Clip:
        kind = LiveStream.MAIN if stream_type == LiveStream.MAIN else LiveStream.SUB
        clip = self._clips.get((kind, codec))
        if clip is None:
            clip = self._clips[(kind, codec)] = self._load(kind, codec)
        return clip

    def video_track(
        self, stream_type: int, sim_size: int, video_codec: int = AvCodec.H264
    ) -> Track:
        codec = VIDEO_CODECS.get(video_codec, "h264")
        key = ("video", stream_type, sim_size, codec)
        track = self._tracks.get(key)
        if track is None:
            c = self.clip(stream_type, codec)
            track = self._tracks[key] = cut_track(
                c.video, c.video_payload_type, c.duration, sim_size, None, c.fps,
                (c.width, c.height),
            )
        return track

    def audio_frames(self, codec: str) -> tuple[ClipFrame, ...]:
        """The main clip's sound in ``codec`` (the clip has it in G.711A)."""
        frames = self._audio.get(codec)
        if frames is None:
            clip = self.clip(LiveStream.MAIN)
            if codec == "g711a":
                frames = clip.audio
            else:
                pcm = _alaw_to_pcm(b"".join(f.payload for f in clip.audio))
                payloads = sim_audio.encode(codec, pcm)
                frames = tuple(
                    ClipFrame(f.timestamp, f.data_type, p)
                    for f, p in zip(clip.audio, payloads)
                )
            self._audio[codec] = frames
        return frames

    def audio_track(self, sim_size: int, codec: str = "g711a") -> Track:
        key = ("audio", codec, sim_size)
        track = self._tracks.get(key)
        if track is None:
            c = self.clip(LiveStream.MAIN)
            wrap = hisilicon if self.config.audio_header == "hisilicon" else None
            track = self._tracks[key] = cut_track(
                self.audio_frames(codec), sim_audio.payload_type(codec), c.duration,
                sim_size, wrap,
            )
        return track

    # -- requests ---------------------------------------------------------------------------

    def open(
        self, phone: str, version: int, request: RealtimeAvRequest, audio_codec: str = "g711a",
        video_codec: int = AvCodec.H264,
    ) -> None:
        """Act on a 0x9101 (the device has checked and answered it): stream a channel, or
        talk (data type 2) or take a broadcast (4) on it."""
        if request.data_type in (RequestDataType.TALK, RequestDataType.BROADCAST):
            sender: Sender = Talk(self, phone, version, request, audio_codec)
        else:
            sender = Camera(self, phone, version, request, audio_codec, video_codec)
        self._connect(sender, tcp_endpoint(request.server_ip, request.tcp_port))

    def playback(
        self, phone: str, version: int, request: PlaybackRequest, audio_codec: str = "g711a",
        video_codec: int = AvCodec.H264,
    ) -> None:
        """Act on a 0x9201 (the device has checked and answered it)."""
        sender = Playback(self, phone, version, request, audio_codec, video_codec)
        self._connect(sender, tcp_endpoint(request.server_ip, request.tcp_port))

    def _connect(self, sender: Sender, address: str) -> None:
        table: dict[tuple[str, int], Any] = getattr(self, sender.registry)
        old = table.get(sender.key)
        if old is not None:
            old.close(f"replaced by a new request for the {sender.kind}")
        table[sender.key] = sender
        try:
            d = self._endpoint(address).connect(StreamFactory(sender))
        except Exception as e:  # noqa: BLE001 - a bad address in the request: it fails
            sender.connect_failed(Failure(e))
            return
        if sender.state == CONNECTING:
            sender.connecting = d
        d.addCallbacks(self._connect_done, sender.connect_failed, callbackArgs=(sender,))

    def _connect_done(self, protocol: Any, sender: Sender) -> None:
        sender.connecting = None

    def control(self, phone: str, body: AvTransmissionControl) -> None:
        """Act on a 0x9102 (the device has checked and answered it)."""
        key = (phone, body.channel)
        camera = self.cameras.get(key)
        command = body.command
        if command == ControlCommand.CLOSE_TALK:
            talk = self.talks.get(key)
            if talk is not None:
                talk.close("closed by 0x9102")
            return
        if camera is None:
            if command == ControlCommand.CLOSE and key in self.talks:
                self.talks[key].close("closed by 0x9102")
            return
        if command == ControlCommand.CLOSE:
            if camera.stop_media(body.close_type):
                camera.close("closed by 0x9102")
        elif command == ControlCommand.SWITCH_STREAM:
            camera.switch(body.switch_stream)
        elif command == ControlCommand.PAUSE:
            camera.pause()
        elif command == ControlCommand.RESUME:
            camera.resume(self.now())

    def playback_control(self, phone: str, body: PlaybackControl) -> bool:
        """Act on a 0x9202; False when the channel has no playback (or the control cannot
        be followed)."""
        playback = self.playbacks.get((phone, body.channel))
        if playback is None:
            return False
        return playback.control(body, self.now())

    def stop(self) -> None:
        """Close every connection (the fleet is stopping)."""
        for sender in self._senders():
            sender.close("the simulator stopped")

    def abort(self) -> None:
        for sender in self._senders():
            sender.abort()

    # -- what the connections report --------------------------------------------------------

    def started(self, sender: Sender) -> None:
        self.counters.streams_open += 1
        self.counters.streams_opened += 1
        self._streaming += 1
        _log.info(
            "{phone} channel {channel}: {what}",
            phone=sender.phone, channel=sender.channel, what=sender.describe(),
        )
        if self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self._clock
            self._loop.start(self.config.tick, now=False)

    def sent(self, size: int, video: int) -> None:
        self.counters.stream_bytes += size
        self.counters.video_bytes += video

    def heard(self, talk: Talk, report: TalkReport) -> None:
        self.talk_reports[talk.key] = report

    def finished(self, sender: Sender, why: str, failed: bool) -> None:
        table: dict[tuple[str, int], Any] = getattr(self, sender.registry)
        if table.get(sender.key) is sender:
            del table[sender.key]
        if sender.streamed:
            self.counters.streams_open -= 1
            self._streaming -= 1
        if failed:
            self.counters.stream_failures += 1
            if why not in self.endings and len(self.endings) >= MAX_REASONS:
                why_kept = _OTHER
            else:
                why_kept = why
            self.endings[why_kept] += 1
        if isinstance(sender, Talk) and sender.listener.frames:
            report = self.talk_reports[sender.key] = sender.listener.report(fresh=True)
            _log.info("{report}", report=str(report))
        _log.info(
            "{phone} channel {channel}: {kind} ended, {why} ({size} bytes sent)",
            phone=sender.phone,
            channel=sender.channel,
            kind=sender.kind,
            why=why,
            size=sender.bytes,
        )
        if self._streaming == 0 and self._loop is not None:
            if self._loop.running:
                self._loop.stop()
            self._loop = None
        self._idle()

    def _tick(self) -> None:
        now = self.now()
        for sender in self._senders():
            try:
                sender.run(now)
            except Exception:  # noqa: BLE001 - logged; one sender's bug stops that one only
                self.counters.errors += 1
                _log.failure(
                    "{phone} channel {channel}: sending failed",
                    phone=sender.phone,
                    channel=sender.channel,
                )
                sender.close("sending failed")

    #: Reasons the status line names at most.
    SHOWN = 3

    def status(self) -> str:
        """The status line's streams part: ``| streams 2 open, 1.2 MB video sent`` (with
        the playbacks and talk-backs among them when there are any, and what the last
        talk-back heard) and, when streams ended by themselves, ``| streams ended: 1 (why
        ×1)``."""
        c = self.counters
        line = f" | streams {c.streams_open} open, {c.video_bytes / 1e6:.1f} MB video sent"
        if self.playbacks:
            line += f" | playbacks {len(self.playbacks)}"
        if self.talks:
            line += f" | talk-backs {len(self.talks)}"
            heard = [self.talk_reports[k] for k in self.talks if k in self.talk_reports]
            if heard:
                last = heard[-1]
                line += f", heard {last.frequency} Hz at {last.level_dbfs:.0f} dBFS"
        if self.endings:
            common = self.endings.most_common()
            shown = ", ".join(f"{why} ×{n}" for why, n in common[: self.SHOWN])
            if len(common) > self.SHOWN:
                shown += f", {len(common) - self.SHOWN} more reasons"
            line += f" | streams ended: {c.stream_failures} ({shown})"
        return line


def _alaw_to_pcm(alaw: bytes) -> bytes:
    """G.711A bytes as 16-bit little-endian samples (FFmpeg's decoder)."""
    ctx = av.CodecContext.create("pcm_alaw", "r")
    ctx.sample_rate, ctx.layout = sim_audio.RATE, "mono"
    out = []
    for frame in ctx.decode(av.Packet(alaw)):
        out.append(bytes(frame.planes[0])[: 2 * frame.samples])
    return b"".join(out)
