"""``cmsv6 decode``: one hex frame per line on stdin, exactly one JSON object per line out.

Whatever a line holds, it gives one object, so a consumer can pair outputs with inputs:

* a frame: ``{"msg_id", "version", "phone", "serial", "checksum_ok", "subpackage", "body"}``
  (the shape README.rst's "Decoding frames" describes), plus ``"odd": [...]`` naming
  what the unit did that the standard does not (a 0x7e it left unescaped inside its frame, say);
* anything else: ``{"error": "...", "hex": "..."}``, with the header's ``msg_id``,
  ``phone`` and ``serial`` when the header could be read, and ``"pieces"`` (one object
  each) when the line cut into several frames that do not make one.

Blank lines are answered too (``{"error": "empty line", "hex": ""}``). The exit status is
1 if any line gave an error.
"""

from __future__ import annotations

import json
from typing import IO, Any

from cmsv6.protocols.jt808.codec import Message, decode_frame
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import Deframer, Frame, FrameError, parse_content, unescape
from cmsv6.protocols.jt808.jsonable import message_json
from cmsv6.protocols.jt808.model import RawBody

#: Longest input line read (hex characters): a few maximal frames.
MAX_LINE = 64 * 1024
#: What a unit did that the standard does not, as the ``odd`` list says it.
INNER_FLAG = "0x7e inside the frame, not escaped by the unit"


def frame_json(frame: Frame) -> dict[str, Any]:
    """One deframed frame: its message, or an error naming its header."""
    h = frame.header
    try:
        if h.packet is not None and h.packet.total > 1:
            message = Message(h, RawBody(frame.body), frame.checksum_ok)
        else:
            message = decode_frame(frame)
    except CodecError as e:
        return {
            "error": str(e),
            "hex": frame.body.hex(),
            "msg_id": f"0x{h.msg_id:04x}",
            "phone": h.phone,
            "serial": h.serial,
        }
    return message_json(message, frame.length_ok)


def _piece_json(item: Frame | FrameError) -> dict[str, Any]:
    if isinstance(item, FrameError):
        return {"error": item.reason, "hex": item.data.hex()}
    return frame_json(item)


def _with_inner_flags(data: bytes) -> Frame | None:
    """The frame between the line's first and last 0x7e when the ones between are the
    unit's own unescaped bytes: only if its check code and length then agree."""
    start, end = data.find(b"\x7e"), data.rfind(b"\x7e")
    try:
        frame = parse_content(unescape(data[start + 1 : end]))
    except CodecError:
        return None
    return frame if frame.checksum_ok and frame.length_ok else None


def line_json(line: str) -> dict[str, Any]:
    """The one object for one input line."""
    text = "".join(line.split())
    if text[:2].lower() == "0x":
        text = text[2:]
    if not text:
        return {"error": "empty line", "hex": ""}
    if len(text) > MAX_LINE:
        return {"error": f"line longer than {MAX_LINE} hex digits", "hex": text[:64] + "…"}
    try:
        data = bytes.fromhex(text)
    except ValueError as e:
        return {"error": f"not hex: {e}", "hex": text}
    if not data.startswith(b"\x7e"):
        data = b"\x7e" + data + b"\x7e"  # header..check code without the flags
    deframer = Deframer()
    pieces: list[Frame | FrameError] = deframer.feed(data)
    if deframer.buffered > 1:
        pieces.append(FrameError("incomplete frame at the end of the line", b""))
    if not pieces:
        return {"error": "no frame on this line", "hex": text}
    if len(pieces) == 1:
        return _piece_json(pieces[0])
    whole = _with_inner_flags(data)
    if whole is not None:
        out = frame_json(whole)
        out.setdefault("odd", []).append(INNER_FLAG)
        return out
    return {
        "error": f"{len(pieces)} pieces on one line (one frame per line)",
        "hex": text,
        "pieces": [_piece_json(p) for p in pieces],
    }


def decode_command(stdin: IO[str], stdout: IO[str]) -> int:
    failed = False
    for line in stdin:
        obj = line_json(line.rstrip("\r\n"))
        failed = failed or "error" in obj
        stdout.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
        stdout.flush()
    return 1 if failed else 0
