"""The ``cmsv6`` command: administration, frame decoding, simulation."""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Sequence

from cmsv6.jt808.codec import Message, decode_frame
from cmsv6.jt808.errors import CodecError
from cmsv6.jt808.framing import Deframer, Frame, FrameError
from cmsv6.jt808.jsonable import message_json
from cmsv6.jt808.model import RawBody

#: Longest input line ``decode`` reads (hex characters): a few maximal frames.
MAX_LINE = 64 * 1024


def _line_frames(line: str) -> list[dict[str, object]]:
    text = "".join(line.split())
    if text[:2].lower() == "0x":
        text = text[2:]
    if not text:
        return []
    if len(text) > MAX_LINE:
        return [{"error": f"line longer than {MAX_LINE} hex digits", "hex": text[:64] + "…"}]
    try:
        data = bytes.fromhex(text)
    except ValueError as e:
        return [{"error": f"not hex: {e}", "hex": text}]
    if not data.startswith(b"\x7e"):
        data = b"\x7e" + data + b"\x7e"  # header..check code without the flags
    out: list[dict[str, object]] = []
    deframer = Deframer()
    results = deframer.feed(data)
    if deframer.buffered > 1:
        results.append(FrameError("incomplete frame at the end of the line", b""))
    for item in results:
        if isinstance(item, FrameError):
            out.append({"error": item.reason, "hex": item.data.hex()})
            continue
        out.append(_frame_json(item))
    return out


def _frame_json(frame: Frame) -> dict[str, object]:
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


def decode_command(stdin: IO[str], stdout: IO[str]) -> int:
    failed = False
    for line in stdin:
        for obj in _line_frames(line):
            failed = failed or "error" in obj
            stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cmsv6", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "decode",
        help="decode JT/T 808 frames: one hex frame per line on stdin, one JSON object per line out",
    )
    args = parser.parse_args(argv)
    if args.command == "decode":
        return decode_command(sys.stdin, sys.stdout)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
