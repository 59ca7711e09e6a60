"""JT/T 1078-2016 signalling: the video message bodies carried inside JT/T 808 frames.

Like every module of ``cmsv6.protocols.jt808.messages``, importing it registers its bodies
with the JT/T 808 codec, so ``decode``/``encode`` handle these ids like any other. Section numbers and
table numbers below are those of JT/T 1078-2016.

Every value field is a plain ``int`` on decode, so a code a unit sends that the standard
does not list survives a round trip; the ``IntEnum`` classes name the codes the standard
does list and can be passed wherever an ``int`` is expected.

The 64-bit alarm flags of 0x9205, 0x1205 and 0x9206 are one big-endian QWORD here:
bits 0-31 are the JT/T 808 alarm bits, bits 32-63 the video alarm bits (table 14).
SmallChi and go-jt808 read them the same way; yezhihao reads two DWORDs and calls the first
one bits 0-31. The bytes are the same either way, so only the meaning of a set bit differs;
``alarm_flags_808``/``alarm_flags_video`` give the two halves in our reading.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import IntEnum, IntFlag

from attrs import field, frozen
from construct import (
    GreedyRange,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    Rebuild,
    Struct,
    len_,
    this,
)

from cmsv6.protocols.jt808.fields import BcdTime, PrefixedText, Tuple
from cmsv6.protocols.jt808.model import message, record

# -- codes ---------------------------------------------------------------------------------


class AvCodec(IntEnum):
    """Audio and video coding types (table 12); also the PT field of stream packets."""

    G721 = 1
    G722 = 2
    G723 = 3
    G728 = 4
    G729 = 5
    G711A = 6
    G711U = 7
    G726 = 8
    G729A = 9
    DVI4_3 = 10
    DVI4_4 = 11
    DVI4_8K = 12
    DVI4_16K = 13
    LPC = 14
    S16BE_STEREO = 15
    S16BE_MONO = 16
    MPEGAUDIO = 17
    LPCM = 18
    AAC = 19
    WMA9STD = 20
    HEAAC = 21
    PCM_VOICE = 22
    PCM_AUDIO = 23
    AACLC = 24
    MP3 = 25
    ADPCMA = 26
    MP4AUDIO = 27
    AMR = 28
    TRANSPARENT = 91
    H264 = 98
    H265 = 99
    AVS = 100
    SVAC = 101


#: Display names where the standard's spelling is not the identifier's.
_CODEC_DISPLAY = {
    AvCodec.G721: "G.721",
    AvCodec.G722: "G.722",
    AvCodec.G723: "G.723",
    AvCodec.G728: "G.728",
    AvCodec.G729: "G.729",
    AvCodec.G711A: "G.711A",
    AvCodec.G711U: "G.711U",
    AvCodec.G726: "G.726",
    AvCodec.G729A: "G.729A",
    AvCodec.H264: "H.264",
    AvCodec.H265: "H.265",
}


def codec_name(code: int) -> str:
    """The table 12 name of a coding type: ``codec_name(6) == "G.711A"``.

    Codes the standard reserves or leaves to vendors are named as such, never an error,
    because units do send them.
    """
    try:
        known = AvCodec(code)
    except ValueError:
        if 111 <= code <= 127:
            return f"custom ({code})"
        return f"reserved ({code})"
    return _CODEC_DISPLAY.get(known, known.name)


def is_audio_codec(code: int) -> bool:
    """True for the audio coding types of table 12 (1-28)."""
    return 1 <= code <= 28


def is_video_codec(code: int) -> bool:
    """True for the video coding types of table 12 (98-101)."""
    return 98 <= code <= 101


class AudioSampleRate(IntEnum):
    """0x1003 input audio sample rate."""

    HZ_8000 = 0
    HZ_22050 = 1
    HZ_44100 = 2
    HZ_48000 = 3


_SAMPLE_RATE_HZ = {0: 8000, 1: 22050, 2: 44100, 3: 48000}
_SAMPLE_BITS = {0: 8, 1: 16, 2: 32}


class RequestDataType(IntEnum):
    """0x9101 data type: what the platform asks the unit to open."""

    AUDIO_VIDEO = 0
    VIDEO = 1
    TALK = 2  # two-way talk-back
    LISTEN = 3  # one-way monitoring
    BROADCAST = 4  # central broadcast
    PASS_THROUGH = 5  # transparent transmission


class LiveStream(IntEnum):
    """Stream type of a live request (0x9101, 0x9102): main or sub stream."""

    MAIN = 0
    SUB = 1


class RecordStream(IntEnum):
    """Stream type of a recording (0x9201, 0x9205, 0x1205, 0x9206): note 0 means either."""

    ANY = 0
    MAIN = 1
    SUB = 2


class ControlCommand(IntEnum):
    """0x9102 control command."""

    CLOSE = 0  # close the audio/video transmission (see CloseType)
    SWITCH_STREAM = 1  # switch to the stream in switch_stream
    PAUSE = 2  # pause every stream of the channel
    RESUME = 3  # resume what was paused
    CLOSE_TALK = 4  # close two-way talk-back


class CloseType(IntEnum):
    """0x9102 what to close with ControlCommand.CLOSE."""

    AUDIO_AND_VIDEO = 0
    AUDIO = 1  # close audio, keep video
    VIDEO = 2  # close video, keep audio


class MediaType(IntEnum):
    """Audio/video resource type of recordings (0x9201, 0x9205, 0x1205, 0x9206)."""

    AUDIO_VIDEO = 0
    AUDIO = 1
    VIDEO = 2
    VIDEO_OR_AUDIO_VIDEO = 3  # queries only


class StorageType(IntEnum):
    """Memory type of recordings: 0 means either in a query."""

    ANY = 0
    MAIN = 1
    BACKUP = 2  # disaster-recovery storage


class PlaybackMode(IntEnum):
    """0x9201 playback mode."""

    NORMAL = 0
    FAST_FORWARD = 1
    KEYFRAME_REWIND = 2
    KEYFRAME = 3
    SINGLE_FRAME = 4


class PlaybackSpeed(IntEnum):
    """Fast-forward/rewind multiple (0x9201, 0x9202); only meaningful while fast playing."""

    NONE = 0
    X1 = 1
    X2 = 2
    X4 = 3
    X8 = 4
    X16 = 5


class PlaybackAction(IntEnum):
    """0x9202 playback control."""

    START = 0
    PAUSE = 1
    STOP = 2
    FAST_FORWARD = 3
    KEYFRAME_REWIND = 4
    SEEK = 5  # drag to ``position``
    KEYFRAME = 6


class UploadCondition(IntFlag):
    """0x9206 task execution conditions: which networks the unit may upload over."""

    WIFI = 1
    LAN = 2
    MOBILE = 4  # 3G/4G


class UploadControl(IntEnum):
    """0x9207 upload control."""

    PAUSE = 0
    RESUME = 1
    CANCEL = 2


class UploadResult(IntEnum):
    """0x1206 result."""

    OK = 0
    FAILED = 1


class PtzDirection(IntEnum):
    """0x9301 direction."""

    STOP = 0
    UP = 1
    DOWN = 2
    LEFT = 3
    RIGHT = 4


class PtzAdjust(IntEnum):
    """0x9302 focus, 0x9303 iris, 0x9306 zoom: 0 turns it up, 1 down."""

    INCREASE = 0
    DECREASE = 1


class PtzSwitch(IntEnum):
    """0x9304 wiper, 0x9305 infrared fill light."""

    STOP = 0
    START = 1


def _split_alarm_flags(value: int) -> tuple[int, int]:
    return value & 0xFFFFFFFF, value >> 32


# -- 5.3 parameters and attributes ---------------------------------------------------------


@message(0x9003)
@frozen
class QueryAvAttributes:
    """5.3.2: the platform asks for the unit's audio/video attributes (empty body)."""

    FORMAT = Struct()


@message(0x1003)
@frozen
class AvAttributes:
    """5.3.3 (table 11): the unit's audio/video attributes, the answer to 0x9003.

    ``audio_codec``/``video_codec`` are table 12 codes (see ``codec_name``); the media server
    needs them to turn the unit's audio into something a browser plays.
    """

    audio_codec: int
    audio_channels: int
    audio_sample_rate: int  # AudioSampleRate code
    audio_sample_bits: int  # 0: 8, 1: 16, 2: 32 bits
    audio_frame_length: int
    audio_output: int  # 1 when the unit can play audio (talk-back, broadcast)
    video_codec: int
    max_audio_channels: int
    max_video_channels: int

    FORMAT = Struct(
        "audio_codec" / Int8ub,
        "audio_channels" / Int8ub,
        "audio_sample_rate" / Int8ub,
        "audio_sample_bits" / Int8ub,
        "audio_frame_length" / Int16ub,
        "audio_output" / Int8ub,
        "video_codec" / Int8ub,
        "max_audio_channels" / Int8ub,
        "max_video_channels" / Int8ub,
    )

    @property
    def sample_rate_hz(self) -> int | None:
        """The sample rate in Hz, None for a code the standard does not define."""
        return _SAMPLE_RATE_HZ.get(self.audio_sample_rate)

    @property
    def sample_bits(self) -> int | None:
        """Bits per sample, None for a code the standard does not define."""
        return _SAMPLE_BITS.get(self.audio_sample_bits)


# -- 5.4 alarms ----------------------------------------------------------------------------


@message(0x1005)
@frozen
class PassengerFlow:
    """5.4.2 (table 16): passengers counted on and off between two times."""

    start: datetime | None
    end: datetime | None
    boarded: int
    alighted: int

    FORMAT = Struct(
        "start" / BcdTime,
        "end" / BcdTime,
        "boarded" / Int16ub,
        "alighted" / Int16ub,
    )


# -- 5.5 real-time audio and video ---------------------------------------------------------


@message(0x9101)
@frozen
class RealtimeAvRequest:
    """5.5.1 (table 17): open a live stream (or talk-back, listening, broadcast) to the
    media server at ``server_ip``. The address is text: a host name works too."""

    server_ip: str
    tcp_port: int
    udp_port: int
    channel: int
    data_type: int = RequestDataType.AUDIO_VIDEO
    stream_type: int = LiveStream.MAIN

    FORMAT = Struct(
        "server_ip" / PrefixedText(Int8ub),
        "tcp_port" / Int16ub,
        "udp_port" / Int16ub,
        "channel" / Int8ub,
        "data_type" / Int8ub,
        "stream_type" / Int8ub,
    )


@message(0x9102)
@frozen
class AvTransmissionControl:
    """5.5.2 (table 18): close, pause, resume or switch a live stream."""

    channel: int
    command: int
    close_type: int = CloseType.AUDIO_AND_VIDEO
    switch_stream: int = LiveStream.MAIN

    FORMAT = Struct(
        "channel" / Int8ub,
        "command" / Int8ub,
        "close_type" / Int8ub,
        "switch_stream" / Int8ub,
    )


@message(0x9105)
@frozen
class AvStatusNotice:
    """5.5.4 (table 20): the platform tells the unit how lossy its stream is.

    ``packet_loss_rate`` is the loss ratio times 100, truncated (percent).
    """

    channel: int
    packet_loss_rate: int

    FORMAT = Struct("channel" / Int8ub, "packet_loss_rate" / Int8ub)


# -- 5.6 recordings: list, playback, upload ------------------------------------------------


@message(0x9205)
@frozen
class QueryResources:
    """5.6.1 (table 21): ask for the list of recordings. Zero/None means "any"."""

    channel: int
    start: datetime | None
    end: datetime | None
    alarm_flags: int = 0
    media_type: int = MediaType.AUDIO_VIDEO
    stream_type: int = RecordStream.ANY
    storage_type: int = StorageType.ANY

    FORMAT = Struct(
        "channel" / Int8ub,
        "start" / BcdTime,
        "end" / BcdTime,
        "alarm_flags" / Int64ub,
        "media_type" / Int8ub,
        "stream_type" / Int8ub,
        "storage_type" / Int8ub,
    )

    @property
    def alarm_flags_808(self) -> int:
        return _split_alarm_flags(self.alarm_flags)[0]

    @property
    def alarm_flags_video(self) -> int:
        return _split_alarm_flags(self.alarm_flags)[1]


@record
@frozen
class Resource:
    """One recording in a 0x1205 list (table 23)."""

    channel: int
    start: datetime | None
    end: datetime | None
    alarm_flags: int
    media_type: int
    stream_type: int
    storage_type: int
    file_size: int  # bytes

    FORMAT = Struct(
        "channel" / Int8ub,
        "start" / BcdTime,
        "end" / BcdTime,
        "alarm_flags" / Int64ub,
        "media_type" / Int8ub,
        "stream_type" / Int8ub,
        "storage_type" / Int8ub,
        "file_size" / Int32ub,
    )

    @property
    def alarm_flags_808(self) -> int:
        return _split_alarm_flags(self.alarm_flags)[0]

    @property
    def alarm_flags_video(self) -> int:
        return _split_alarm_flags(self.alarm_flags)[1]


#: Bytes per 0x1205 list item.
RESOURCE_SIZE = 28


def _resources(items: Iterable[Resource]) -> tuple[Resource, ...]:
    # A typed converter: with a bare ``tuple`` mypy's attrs plugin loses the item type.
    return tuple(items)


@message(0x1205)
@frozen
class ResourceList:
    """5.6.2 (table 22): the recordings matching a 0x9205 query.

    Long lists arrive sub-packaged (JT/T 808 4.4.3) and are decoded once reassembled. The
    items are read up to the end of the body, not up to the declared count: a unit that
    miscounts, or a list cut short, still yields every whole item it sent (the count is
    rewritten from the items when encoding).
    """

    reply_serial: int
    items: tuple[Resource, ...] = field(converter=_resources, factory=tuple)

    FORMAT = Struct(
        "reply_serial" / Int16ub,
        "count" / Rebuild(Int32ub, len_(this.items)),
        "items" / Tuple(GreedyRange(Resource.CODEC)),  # type: ignore[attr-defined]
    )


@message(0x9201)
@frozen
class PlaybackRequest:
    """5.6.3 (table 24): play a recording back to the media server at ``server_ip``.

    With ``PlaybackMode.SINGLE_FRAME`` ``start`` is the frame's time; ``end`` None plays on.
    """

    server_ip: str
    tcp_port: int
    udp_port: int
    channel: int
    media_type: int
    stream_type: int
    storage_type: int
    mode: int
    speed: int
    start: datetime | None
    end: datetime | None

    FORMAT = Struct(
        "server_ip" / PrefixedText(Int8ub),
        "tcp_port" / Int16ub,
        "udp_port" / Int16ub,
        "channel" / Int8ub,
        "media_type" / Int8ub,
        "stream_type" / Int8ub,
        "storage_type" / Int8ub,
        "mode" / Int8ub,
        "speed" / Int8ub,
        "start" / BcdTime,
        "end" / BcdTime,
    )


@message(0x9202)
@frozen
class PlaybackControl:
    """5.6.4 (table 25): pause, stop, fast-play or seek a playback.

    ``position`` is used with ``PlaybackAction.SEEK`` only (None is written as zeros).
    """

    channel: int
    action: int
    speed: int = PlaybackSpeed.NONE
    position: datetime | None = None

    FORMAT = Struct(
        "channel" / Int8ub,
        "action" / Int8ub,
        "speed" / Int8ub,
        "position" / BcdTime,
    )


@message(0x9206)
@frozen
class FileUploadRequest:
    """5.6.5 (table 26): upload the recordings matching the conditions to an FTP server."""

    server: str
    port: int
    username: str
    password: str
    path: str
    channel: int
    start: datetime | None
    end: datetime | None
    alarm_flags: int = 0
    media_type: int = MediaType.AUDIO_VIDEO
    stream_type: int = RecordStream.ANY
    storage_type: int = StorageType.ANY
    conditions: int = UploadCondition.WIFI | UploadCondition.LAN

    FORMAT = Struct(
        "server" / PrefixedText(Int8ub),
        "port" / Int16ub,
        "username" / PrefixedText(Int8ub),
        "password" / PrefixedText(Int8ub),
        "path" / PrefixedText(Int8ub),
        "channel" / Int8ub,
        "start" / BcdTime,
        "end" / BcdTime,
        "alarm_flags" / Int64ub,
        "media_type" / Int8ub,
        "stream_type" / Int8ub,
        "storage_type" / Int8ub,
        "conditions" / Int8ub,
    )


@message(0x1206)
@frozen
class FileUploadDone:
    """5.6.6 (table 27): every file of a 0x9206 has been uploaded (or failed)."""

    reply_serial: int
    result: int = UploadResult.OK

    FORMAT = Struct("reply_serial" / Int16ub, "result" / Int8ub)


@message(0x9207)
@frozen
class FileUploadControl:
    """5.6.7 (table 28): pause, resume or cancel the uploads of a 0x9206."""

    reply_serial: int
    control: int

    FORMAT = Struct("reply_serial" / Int16ub, "control" / Int8ub)


# -- 5.7 pan/tilt/zoom ---------------------------------------------------------------------


@message(0x9301)
@frozen
class PtzRotate:
    """5.7.1 (table 29): turn the camera; speed 0-255."""

    channel: int
    direction: int
    speed: int = 0

    FORMAT = Struct("channel" / Int8ub, "direction" / Int8ub, "speed" / Int8ub)


_ADJUST = Struct("channel" / Int8ub, "adjust" / Int8ub)
_SWITCH = Struct("channel" / Int8ub, "action" / Int8ub)


@message(0x9302)
@frozen
class PtzFocus:
    """5.7.2 (table 30): focal length up (0) or down (1)."""

    channel: int
    adjust: int

    FORMAT = _ADJUST


@message(0x9303)
@frozen
class PtzIris:
    """5.7.3 (table 31): aperture up (0) or down (1)."""

    channel: int
    adjust: int

    FORMAT = _ADJUST


@message(0x9304)
@frozen
class PtzWiper:
    """5.7.4 (table 32): wiper stop (0) or start (1)."""

    channel: int
    action: int

    FORMAT = _SWITCH


@message(0x9305)
@frozen
class PtzInfraredLight:
    """5.7.5 (table 33): infrared fill light stop (0) or start (1)."""

    channel: int
    action: int

    FORMAT = _SWITCH


@message(0x9306)
@frozen
class PtzZoom:
    """5.7.6 (table 34): zoom in (0) or out (1)."""

    channel: int
    adjust: int

    FORMAT = _ADJUST
