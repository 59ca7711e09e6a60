"""The JT/T 808 codec's public face: frames ⇄ ``Message`` (header + typed body).

Input that is not a valid frame or body, and a value that cannot be encoded, raise
``CodecError``: the errors such input makes the readers and writers raise (``DECODE_ERRORS``,
``ENCODE_ERRORS``) become one. Any other exception (a TypeError, an AttributeError, a
RecursionError…) is a bug in the codec and propagates as it is, for the caller's boundary
to log with the frame. The keep-it-raw fallbacks of additional items and parameters, and
the formats that try another layout, pass over only those same errors; construct's own
``Select`` (the 0x0200 items) passes over whatever an alternative raised. Hot messages go
through hand-written fast paths (``fast.py``) that the tests prove equal to the construct
reference.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from attrs import frozen

import cmsv6.protocols.jt808.messages  # noqa: F401 - registers every body format
from cmsv6.protocols.jt808.errors import DECODE_ERRORS, ENCODE_ERRORS, CodecError
from cmsv6.protocols.jt808.framing import Frame, build_frame, parse_frame
from cmsv6.protocols.jt808.header import ENCRYPTION_RSA, MAX_BODY, Header, Packet
from cmsv6.protocols.jt808.model import MESSAGES, RawBody


@frozen
class Message:
    header: Header
    body: Any
    checksum_ok: bool = True


#: Fast decoders and encoders by message id: ``(body bytes, version) -> body`` and back.
FAST_DECODERS: dict[int, Callable[[bytes, int], Any]] = {}
FAST_ENCODERS: dict[int, Callable[[Any, int], bytes]] = {}




@contextmanager
def _codec_errors(prefix: str, errors: tuple[type[Exception], ...]) -> Iterator[None]:
    """``errors`` become one CodecError named by ``prefix``; every other exception is a bug
    and goes through untouched."""
    try:
        yield
    except CodecError:
        raise
    except errors as e:
        raise CodecError(f"{prefix}: {e}") from None


def decode_body_reference(msg_id: int, data: bytes, version: int = 2013) -> Any:
    """The body through its construct format (RawBody for an unknown id)."""
    cls = MESSAGES.get(msg_id)
    if cls is None:
        return RawBody(data)
    with _codec_errors(f"0x{msg_id:04x} body", DECODE_ERRORS):
        return cls.CODEC.parse(data, version=version)  # type: ignore[attr-defined]


def decode_body(msg_id: int, data: bytes, version: int = 2013) -> Any:
    fast = FAST_DECODERS.get(msg_id)
    if fast is None:
        return decode_body_reference(msg_id, data, version)
    try:  # _codec_errors inline: the hot path pays for no context manager
        return fast(data, version)
    except CodecError:
        raise
    except DECODE_ERRORS as e:
        raise CodecError(f"0x{msg_id:04x} body: {e}") from None


def encode_body_reference(body: Any, version: int = 2013) -> bytes:
    codec = getattr(type(body), "CODEC", None)
    if codec is None:
        raise CodecError(f"{type(body).__name__} is not a message body")
    with _codec_errors(type(body).__name__, ENCODE_ERRORS):
        return codec.build(body, version=version)  # type: ignore[no-any-return]


def encode_body(body: Any, version: int = 2013) -> bytes:
    fast = FAST_ENCODERS.get(getattr(body, "MSG_ID", -1))
    if fast is None:
        return encode_body_reference(body, version)
    try:  # _codec_errors inline, as in decode_body
        return fast(body, version)
    except CodecError:
        raise
    except ENCODE_ERRORS as e:
        raise CodecError(f"{type(body).__name__}: {e}") from None


def msg_id_of(body: Any) -> int:
    try:
        return type(body).MSG_ID  # type: ignore[no-any-return]
    except AttributeError:
        raise CodecError(f"{type(body).__name__} is not a registered message body") from None


def decode_frame(frame: Frame) -> Message:
    """The Message of a whole (not sub-packaged) frame.

    An RSA-encrypted body (encryption bits = 1) is ciphertext: it is kept as a RawBody for
    whoever holds the key. Other encryption values are undefined; such bodies are decoded
    as plain, which is what the units that set them send.
    """
    h = frame.header
    if h.packet is not None and h.packet.total > 1:
        raise CodecError(
            f"0x{h.msg_id:04x} packet {h.packet.index}/{h.packet.total} must be reassembled first"
        )
    if h.encryption == ENCRYPTION_RSA:
        return Message(h, RawBody(frame.body), frame.checksum_ok)
    return Message(h, decode_body(h.msg_id, frame.body, h.version), frame.checksum_ok)


def decode(data: bytes) -> Message:
    """One frame's bytes (flags optional) → Message. Sub-package pieces keep a RawBody."""
    frame = parse_frame(data)
    h = frame.header
    if h.packet is not None and h.packet.total > 1:
        return Message(h, RawBody(frame.body), frame.checksum_ok)
    return decode_frame(frame)


def encode(header: Header, body: Any) -> bytes:
    """The frame for one message whose body fits one frame (a RawBody's bytes go as they
    are, under whatever id the header gives)."""
    if isinstance(body, RawBody):
        return build_frame(header, body.data)
    if header.msg_id != msg_id_of(body):
        raise CodecError(f"header says 0x{header.msg_id:04x}, body is {type(body).__name__}")
    return build_frame(header, encode_body(body, header.version))


def encode_packets(header: Header, body: Any, max_body: int = MAX_BODY) -> list[bytes]:
    """The frames for a message, split into sub-packages when its body is too long.

    Packets take consecutive serial numbers from ``header.serial``; a 0x8003 re-request names
    the first one.
    """
    data = body.data if isinstance(body, RawBody) else encode_body(body, header.version)
    if len(data) <= max_body:
        return [build_frame(header, data)]
    pieces = [data[i : i + max_body] for i in range(0, len(data), max_body)]
    if len(pieces) > 0xFFFF:
        raise CodecError(f"a body of {len(data)} bytes needs more than 65535 packets")
    total = len(pieces)
    return [
        build_frame(
            Header(
                header.msg_id,
                header.phone,
                (header.serial + i) & 0xFFFF,
                header.version,
                header.protocol_version,
                header.encryption,
                Packet(total, i + 1),
            ),
            piece,
        )
        for i, piece in enumerate(pieces)
    ]


# The hand-written hot paths register themselves in FAST_DECODERS / FAST_ENCODERS.
import cmsv6.protocols.jt808.fast  # noqa: E402,F401
