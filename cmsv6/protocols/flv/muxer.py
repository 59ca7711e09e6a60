"""H.264 and H.265 access units and AAC frames in, FLV tags out, sans-IO.

What browsers' FLV players (mpegts.js, flv.js) need, and what this gives them:

* The FLV header and ``onMetaData`` announce audio only when AAC will follow
  (``audio=True``): a player told to expect audio waits for it, and the video stalls.
* An AVC sequence header (the decoder configuration from SPS/PPS) before the first
  picture, sent again whenever the unit's SPS/PPS change.
* The stream starts at an IDR picture; keyframe flags mark IDR pictures exactly.
* Timestamps never go backwards (``Timeline``): a unit's clock that jumps or wraps is
  re-anchored, so a player's buffer never sees time reverse.

H.265 is muxed as enhanced FLV (Enhanced RTMP v1, "Defining Additional Video Codecs"):
video tags with an ExVideoTagHeader (the IsExHeader bit, a PacketType, FourCC ``hvc1``),
a SequenceStart carrying the HEVC decoder configuration record from VPS/SPS/PPS, and
CodedFramesX (no B-frames: composition time 0) with 4-byte NAL lengths; keyframes are
IRAP pictures. ``onMetaData``'s ``videocodecid`` is then the FourCC as a number, as that
specification says. Players that read it: FFmpeg (ffplay), VLC, mpegts.js in Chromium
with HEVC decoding. A muxer is for one video codec (``codec``, set before ``header()``).

Other codecs raise ``UnsupportedCodec`` in words the server can send the viewer, rather
than a stream no player can decode.
"""

from __future__ import annotations

from attrs import define, frozen

from cmsv6.protocols.flv import hevc
from cmsv6.protocols.flv.h264 import (
    NAL_AUD,
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    VCL,
    avc_decoder_configuration,
    nal_type,
    split_annexb,
    to_avcc,
)
from cmsv6.protocols.flv.tags import TagType, file_header, script_tag, tag

#: JT/T 1078 table 12 video coding types.
H264 = 98
H265 = 99

#: FLV codec ids.
CODEC_AVC = 7
SOUND_AAC = 10
#: Enhanced FLV: the FourCC of H.265, and it as onMetaData's videocodecid.
FOURCC_HEVC = b"hvc1"
VIDEOCODECID_HEVC = int.from_bytes(FOURCC_HEVC, "big")
#: Enhanced FLV: the IsExHeader bit of a video tag's first byte, and PacketTypes.
EX_HEADER = 0x80
PACKET_SEQUENCE_START = 0
PACKET_CODED_FRAMES_X = 3
#: The names of the video codecs a muxer takes.
CODEC_NAMES = {H264: "H.264", H265: "H.265"}

#: A step larger than this (ms) between two frames of one track is a clock jump.
MAX_GAP = 10_000
#: The step assumed over a jump until a track has shown its own.
DEFAULT_STEP = 40


class FlvError(ValueError):
    """Input the muxer cannot put into FLV, in words."""


class UnsupportedCodec(FlvError):
    """A stream in a codec FLV output does not carry (yet): the viewer's error message."""


class BadFrame(FlvError):
    """One frame that cannot be muxed (it is skipped; the stream goes on)."""


@frozen
class FlvTag:
    """One tag, ready to send (``data`` ends with its PreviousTagSize).

    ``config`` marks sequence headers (what a new viewer needs before anything else);
    ``keyframe`` marks IDR pictures (where a new viewer can start).
    """

    kind: TagType
    timestamp: int
    data: bytes
    keyframe: bool = False
    config: bool = False


class Timeline:
    """A unit's clock (ms) mapped onto FLV's, never backwards on any track.

    While a track's clock advances by at most ``max_gap`` it is followed exactly (one
    offset for all tracks, so audio and video stay in step). A step backwards or a leap
    forward (a clock reset, a 32-bit wrap, a seek in playback) re-anchors the offset so
    that this frame comes one usual step after the track's last.
    """

    def __init__(self, max_gap: int = MAX_GAP, default_step: int = DEFAULT_STEP) -> None:
        self.max_gap = max_gap
        self.default_step = default_step
        self._offset: int | None = None
        self._last: dict[str, int] = {}
        self._step: dict[str, int] = {}
        #: How many times the clock was re-anchored.
        self.jumps = 0

    def map(self, track: str, clock: int) -> int:
        if self._offset is None:
            self._offset = -clock
        out = clock + self._offset
        last = self._last.get(track)
        if last is not None:
            step = out - last
            if 0 <= step <= self.max_gap:
                if step:
                    self._step[track] = step
            else:
                self.jumps += 1
                out = last + self._step.get(track, self.default_step)
                self._offset = out - clock
        elif self._last and out < 0:
            # A track starting before the stream's first frame: start it at 0.
            out = 0
        self._last[track] = out
        return out


@define
class MuxCounters:
    video_tags: int = 0
    audio_tags: int = 0
    #: Sequence headers sent (more than one: the unit changed SPS/PPS).
    configs: int = 0
    #: Pictures dropped before the first IDR picture with its SPS/PPS.
    skipped: int = 0


class FlvMuxer:
    """One FLV stream: ``header()`` first, then the tags of ``video`` and ``aac``.

    ``audio`` says whether AAC will follow: only then do the header and metadata
    announce audio.
    """

    def __init__(self, audio: bool = False, timeline: Timeline | None = None, codec: int = H264) -> None:
        self.audio = audio
        #: The video codec (H264 or H265): set it before ``header()``.
        self.codec = codec
        self.timeline = timeline or Timeline()
        self.counters = MuxCounters()
        self._sps: tuple[bytes, ...] = ()
        self._pps: tuple[bytes, ...] = ()
        self._vps: tuple[bytes, ...] = ()
        self._config: bytes | None = None
        self._started = False
        self._aac_config: bytes | None = None

    def header(self) -> bytes:
        """The file header and the ``onMetaData`` tag."""
        codec_id = VIDEOCODECID_HEVC if self.codec == H265 else CODEC_AVC
        meta: dict[str, object] = {"duration": 0, "hasVideo": True, "videocodecid": codec_id}
        meta["hasAudio"] = self.audio
        if self.audio:
            meta["audiocodecid"] = SOUND_AAC
        return file_header(audio=self.audio, video=True) + script_tag("onMetaData", meta)

    # -- video ------------------------------------------------------------------------------

    def video(self, access_unit: bytes, timestamp: int, codec: int = H264) -> list[FlvTag]:
        """The tags for one picture (Annex B) at the unit's ``timestamp`` (ms).

        Raises UnsupportedCodec for anything but H.264 and H.265, BadFrame for a frame with
        no NAL unit or in another codec than the stream's. A picture before the stream has
        started (an IDR with its SPS/PPS; for H.265, an IRAP picture with its VPS/SPS/PPS)
        is skipped.
        """
        if codec not in CODEC_NAMES:
            raise UnsupportedCodec(f"video coding type {codec} is neither H.264 nor H.265")
        if codec != self.codec:
            raise BadFrame(f"{CODEC_NAMES[codec]} video in a stream that started in"
                           f" {CODEC_NAMES[self.codec]}")  # fmt: skip
        if codec == H265:
            return self._hevc(access_unit, timestamp)
        nals = split_annexb(access_unit)
        if not nals:
            raise BadFrame(f"video frame of {len(access_unit)} bytes has no H.264 NAL unit")
        out: list[FlvTag] = []
        sps = tuple(n for n in nals if nal_type(n) == NAL_SPS)
        pps = tuple(n for n in nals if nal_type(n) == NAL_PPS)
        pictures = [n for n in nals if nal_type(n) in VCL]
        keyframe = any(nal_type(n) == NAL_IDR for n in pictures)
        if sps or pps:
            self._sps = sps or self._sps
            self._pps = pps or self._pps
            if self._sps and self._pps:
                try:
                    config = avc_decoder_configuration(self._sps, self._pps)
                except ValueError as e:
                    raise BadFrame(f"unusable SPS/PPS: {e}") from None
                if config != self._config:
                    self._config = config
                    body = bytes((0x10 | CODEC_AVC, 0, 0, 0, 0)) + config
                    ts = self._time("video", timestamp)
                    out.append(
                        FlvTag(TagType.VIDEO, ts, tag(TagType.VIDEO, ts, body), True, True)
                    )
                    self.counters.configs += 1
        if not pictures:
            return out  # parameter sets (or SEI) on their own: wait for the picture
        if not self._started:
            if not (keyframe and self._config is not None):
                self.counters.skipped += 1
                return out
            self._started = True
        data = to_avcc([n for n in nals if nal_type(n) not in (NAL_SPS, NAL_PPS, NAL_AUD)])
        frame_type = 1 if keyframe else 2
        body = bytes(((frame_type << 4) | CODEC_AVC, 1, 0, 0, 0)) + data
        ts = self._time("video", timestamp) if not out else out[-1].timestamp
        out.append(FlvTag(TagType.VIDEO, ts, tag(TagType.VIDEO, ts, body), keyframe))
        self.counters.video_tags += 1
        return out

    def _hevc(self, access_unit: bytes, timestamp: int) -> list[FlvTag]:
        nals = split_annexb(access_unit)
        if not nals:
            raise BadFrame(f"video frame of {len(access_unit)} bytes has no H.265 NAL unit")
        types = [hevc.nal_type(n) for n in nals]
        out: list[FlvTag] = []
        vps = tuple(n for n, t in zip(nals, types) if t == hevc.NAL_VPS)
        sps = tuple(n for n, t in zip(nals, types) if t == hevc.NAL_SPS)
        pps = tuple(n for n, t in zip(nals, types) if t == hevc.NAL_PPS)
        pictures = sum(t in hevc.VCL for t in types)
        keyframe = any(t in hevc.IRAP for t in types)
        if vps or sps or pps:
            self._vps = vps or self._vps
            self._sps = sps or self._sps
            self._pps = pps or self._pps
            if self._vps and self._sps and self._pps:
                try:
                    config = hevc.hevc_decoder_configuration(self._vps, self._sps, self._pps)
                except ValueError as e:
                    raise BadFrame(f"unusable VPS/SPS/PPS: {e}") from None
                if config != self._config:
                    self._config = config
                    first = EX_HEADER | (1 << 4) | PACKET_SEQUENCE_START
                    body = bytes((first,)) + FOURCC_HEVC + config
                    ts = self._time("video", timestamp)
                    out.append(
                        FlvTag(TagType.VIDEO, ts, tag(TagType.VIDEO, ts, body), True, True)
                    )
                    self.counters.configs += 1
        if not pictures:
            return out
        if not self._started:
            if not (keyframe and self._config is not None):
                self.counters.skipped += 1
                return out
            self._started = True
        skip = (hevc.NAL_VPS, hevc.NAL_SPS, hevc.NAL_PPS, hevc.NAL_AUD)
        data = to_avcc([n for n, t in zip(nals, types) if t not in skip])
        first = EX_HEADER | ((1 if keyframe else 2) << 4) | PACKET_CODED_FRAMES_X
        body = bytes((first,)) + FOURCC_HEVC + data
        ts = self._time("video", timestamp) if not out else out[-1].timestamp
        out.append(FlvTag(TagType.VIDEO, ts, tag(TagType.VIDEO, ts, body), keyframe))
        self.counters.video_tags += 1
        return out

    # -- audio ------------------------------------------------------------------------------

    def aac(self, data: bytes, timestamp: int, config: bytes | None = None) -> list[FlvTag]:
        """The tags for AAC at the unit's ``timestamp`` (ms): ADTS frames as units send
        them, or one raw frame with its AudioSpecificConfig ``config`` (an encoder's).

        Raises FlvError when the stream was not opened with audio, BadFrame for input
        that is not AAC.
        """
        if not self.audio:
            raise FlvError("AAC for a stream whose header announced no audio")
        if config is None:
            frames = split_adts(data)
            config = frames[0][0]
            raws = [raw for _, raw in frames]
        else:
            raws = [data]
        out: list[FlvTag] = []
        ts = self._time("audio", timestamp)
        flags = (SOUND_AAC << 4) | (3 << 2) | (1 << 1) | 1  # AAC: 44 kHz, 16-bit, stereo
        if config != self._aac_config:
            self._aac_config = config
            body = bytes((flags, 0)) + config
            out.append(FlvTag(TagType.AUDIO, ts, tag(TagType.AUDIO, ts, body), False, True))
        for raw in raws:
            out.append(FlvTag(TagType.AUDIO, ts, tag(TagType.AUDIO, ts, bytes((flags, 1)) + raw)))
            self.counters.audio_tags += 1
        return out

    def _time(self, track: str, timestamp: int) -> int:
        return self.timeline.map(track, timestamp)


def split_adts(data: bytes) -> list[tuple[bytes, bytes]]:
    """(AudioSpecificConfig, raw frame) for each ADTS frame in ``data``. Raises BadFrame."""
    out = []
    at = 0
    while at < len(data):
        h = data[at : at + 7]
        if len(h) < 7 or h[0] != 0xFF or h[1] & 0xF6 != 0xF0:
            raise BadFrame(f"no ADTS header at byte {at} of {len(data)}")
        profile = (h[2] >> 6) + 1  # audio object type
        rate = (h[2] >> 2) & 0x0F
        channels = ((h[2] & 1) << 2) | (h[3] >> 6)
        length = ((h[3] & 3) << 11) | (h[4] << 3) | (h[5] >> 5)
        header = 7 if h[1] & 1 else 9  # protection absent, or a CRC follows
        if rate > 12 or length < header or at + length > len(data):
            raise BadFrame(f"ADTS header at byte {at} describes no frame")
        config = bytes(((profile << 3) | (rate >> 1), ((rate & 1) << 7) | (channels << 3)))
        out.append((config, data[at + header : at + length]))
        at += length
    if not out:
        raise BadFrame("empty AAC frame")
    return out
