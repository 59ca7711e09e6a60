"""Active safety (T/JSATL12 "Su-biao" and its provincial variants): alarm attachments.

0x1210 alarm attachment info, 0x1211 file info, 0x1212 file upload complete, 0x9208
alarm attachment upload request and 0x9212 file upload complete response.

The alarm identification differs by province; each variant is its own class:

============  ===========  ========  ====================================================
variant       terminal id  reserved  class
============  ===========  ========  ====================================================
Jiangsu (JS)  7            1 BYTE    ``location.AlarmIdentification`` (16 bytes)
Sichuan       30           1 BYTE    ``location.AlarmIdentification30`` (39 bytes)
Guangdong     30           1 WORD    ``AlarmIdentificationGD`` (40 bytes)
Heilongjiang  30           none      ``AlarmIdentificationHLJ`` (38 bytes)
============  ===========  ========  ====================================================

0x1210 also starts with the terminal id (7 or 30 bytes; none in Heilongjiang). Neither
message says which variant it is in, and the frame header does not either (units send the
7-byte variant in 2019 frames), so a body is read in a variant that accounts for exactly
every byte of it, the most plausible one if several do (one that no variant fits is refused
rather than guessed at); one is built in the variant of its identification's class.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen
from construct import (
    Bytes,
    Construct,
    ConstructError,
    Int8ub,
    Int16ub,
    Int32ub,
    PrefixedArray,
    Struct,
)
from construct.core import stream_seek, stream_size, stream_tell

from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fields import Ascii, PrefixedText, Tuple
from cmsv6.protocols.jt808.messages.location import (
    AlarmIdentification,
    AlarmIdentification30,
    AlarmIdentificationGD,
    AlarmIdentificationHLJ,
    AnyAlarmIdentification,
)
from cmsv6.protocols.jt808.model import message, record


class _Absent(Construct):  # type: ignore[misc]
    """A field a layout does not have: reads as None, and only None can be written."""

    def __init__(self) -> None:
        super().__init__()
        self.flagbuildnone = True

    def _parse(self, stream: Any, context: Any, path: str) -> None:
        return None

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> None:
        if obj is not None:
            raise CodecError(f"this layout has no place for {obj!r}")
        return None

    def _sizeof(self, context: Any, path: str) -> int:
        return 0


#: The variants in the order a body is tried: the national Su-biao first, then by how
#: common they are.
_VARIANTS: tuple[type, ...] = (
    AlarmIdentification,
    AlarmIdentificationGD,
    AlarmIdentificationHLJ,
    AlarmIdentification30,
)

#: Length of the terminal id heading 0x1210, per variant (None: the field is absent).
_LEADING_ID: dict[type, int | None] = {
    AlarmIdentification: 7,
    AlarmIdentificationGD: 30,
    AlarmIdentificationHLJ: None,
    AlarmIdentification30: 30,
}


# 0x1210 information types.
INFO_NORMAL = 0
INFO_RESENT = 1


def _plausibility(obj: Any) -> int:
    """How many checks a body passes that one read in a wrong variant usually fails: the
    alarm time reads as a date (a wrong variant puts id bytes there), the alarm number is
    printable ASCII, and for 0x1210 the information type is 0 or 1 and the file count
    agrees with the identification's attachment count."""
    ident = obj.identification
    files = getattr(obj, "files", None)
    return (
        (ident.time is not None)
        + (obj.alarm_number.isascii() and obj.alarm_number.isprintable())
        + (getattr(obj, "info_type", INFO_NORMAL) in (INFO_NORMAL, INFO_RESENT))
        + (files is None or len(files) == ident.attachments)
    )


_MOST_PLAUSIBLE = 4


class _ByIdentification(Construct):  # type: ignore[misc]
    """One layout per alarm-identification variant.

    Parsing takes, of the layouts that use exactly the whole body, the most plausible one
    (``_plausibility``; ties go to the order of ``layouts``). There is no partial fallback:
    a body that no variant accounts for (truncated, or with bytes after it) could be read
    in a wrong variant without any error, so it is refused instead. Building takes the
    layout of the identification's class.
    """

    def __init__(self, layouts: dict[type, Construct]) -> None:
        super().__init__()
        self.layouts = layouts

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        start = stream_tell(stream, path)
        end = stream_size(stream)
        best: Any = None
        best_score = -1
        for layout in self.layouts.values():
            stream_seek(stream, start, 0, path)
            try:
                obj = layout._parsereport(stream, context, path)
            except ConstructError:
                continue
            if stream_tell(stream, path) != end:
                continue
            score = _plausibility(obj)
            if score == _MOST_PLAUSIBLE:
                return obj
            if score > best_score:
                best, best_score = obj, score
        if best is None:
            raise CodecError(
                f"{end - start} bytes fit no alarm identification variant "
                f"({', '.join(v.__name__ for v in self.layouts)})"
            )
        stream_seek(stream, end, 0, path)
        return best

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        ident = obj["identification"]
        layout = self.layouts.get(type(ident))
        if layout is None:
            raise CodecError(f"{type(ident).__name__} is not an alarm identification")
        return layout._build(obj, stream, context, path)


#: Alarm number: the platform's unique id for the alarm, BYTE[32].
AlarmNumber = Ascii(32)

@record
@frozen
class AttachmentFile:
    """One file of an alarm: its name (see T/JSATL12 4.5.5 for the naming rule) and size."""

    name: str
    size: int

    FORMAT = Struct("name" / PrefixedText(Int8ub), "size" / Int32ub)


def _info_layout(variant: type) -> Construct:
    id_size = _LEADING_ID[variant]
    return Struct(
        "terminal_id" / (_Absent() if id_size is None else Ascii(id_size)),
        "identification" / variant.CODEC,  # type: ignore[attr-defined]
        "alarm_number" / AlarmNumber,
        "info_type" / Int8ub,
        "files" / Tuple(PrefixedArray(Int8ub, AttachmentFile.CODEC)),  # type: ignore[attr-defined]
    )


@message(0x1210)
@frozen
class AlarmAttachmentInfo:
    """The unit lists the files of an alarm before uploading them to the attachment server.

    ``terminal_id`` is None in the Heilongjiang layout, which does not have it.
    """

    terminal_id: str | None
    identification: AnyAlarmIdentification
    alarm_number: str
    info_type: int
    files: tuple[AttachmentFile, ...] = field(converter=tuple)

    FORMAT = _ByIdentification({v: _info_layout(v) for v in _VARIANTS})


# File types of 0x1211/0x1212/0x9212.
FILE_PICTURE = 0
FILE_AUDIO = 1
FILE_VIDEO = 2
FILE_TEXT = 3
FILE_OTHER = 4

_FILE_INFO = Struct("name" / PrefixedText(Int8ub), "file_type" / Int8ub, "size" / Int32ub)


@message(0x1211)
@frozen
class FileInfo:
    """Sent to the attachment server before a file's data."""

    name: str
    file_type: int
    size: int

    FORMAT = _FILE_INFO


@message(0x1212)
@frozen
class FileUploadComplete:
    """Sent to the attachment server after a file's data."""

    name: str
    file_type: int
    size: int

    FORMAT = _FILE_INFO


def _request_layout(variant: type) -> Construct:
    return Struct(
        "server_ip" / PrefixedText(Int8ub),
        "tcp_port" / Int16ub,
        "udp_port" / Int16ub,
        "identification" / variant.CODEC,  # type: ignore[attr-defined]
        "alarm_number" / AlarmNumber,
        "reserved" / Bytes(16),
    )


@message(0x9208)
@frozen
class AlarmAttachmentUploadRequest:
    """The platform tells the unit where to upload an alarm's attachments.

    ``reserved`` is kept as sent (some platforms write ASCII zeros there).
    """

    server_ip: str
    tcp_port: int
    udp_port: int
    identification: AnyAlarmIdentification
    alarm_number: str
    reserved: bytes = bytes(16)

    FORMAT = _ByIdentification({v: _request_layout(v) for v in _VARIANTS})


@record
@frozen
class DataBlock:
    """A part of a file to upload again: byte offset and length."""

    offset: int
    length: int

    FORMAT = Struct("offset" / Int32ub, "length" / Int32ub)


UPLOAD_COMPLETE = 0
UPLOAD_RETRANSMIT = 1


@message(0x9212)
@frozen
class FileUploadCompleteResponse:
    """The attachment server's answer to 0x1212: done (0), or the blocks to send again (1)."""

    name: str
    file_type: int
    result: int
    retransmit: tuple[DataBlock, ...] = field(converter=tuple, default=())

    FORMAT = Struct(
        "name" / PrefixedText(Int8ub),
        "file_type" / Int8ub,
        "result" / Int8ub,
        "retransmit" / Tuple(PrefixedArray(Int8ub, DataBlock.CODEC)),  # type: ignore[attr-defined]
    )
