"""The ``cmsv6`` command: administration, frame decoding, simulation."""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Sequence

from cmsv6.protocols.jt808.codec import Message, decode_frame
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import Deframer, Frame, FrameError
from cmsv6.protocols.jt808.jsonable import message_json
from cmsv6.protocols.jt808.model import RawBody

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


def _dsn(args: argparse.Namespace) -> str:
    from cmsv6 import config

    if getattr(args, "dsn", None):
        return str(args.dsn)
    try:
        return str(config.load(args.config, "gateway")["database"]["dsn"])
    except config.ConfigError as e:
        raise SystemExit(f"cmsv6: {e}") from None


def _password(path: str) -> str:
    try:
        with open(path, encoding="utf-8") if path != "-" else sys.stdin as f:
            return f.readline().rstrip("\r\n")
    except OSError as e:
        raise SystemExit(f"cmsv6: cannot read {path}: {e.strerror}") from None


def db_command(args: argparse.Namespace) -> int:
    import psycopg2

    from cmsv6.db.upgrade import upgrade

    try:
        applied = upgrade(_dsn(args))
    except psycopg2.Error as e:
        print(f"cmsv6: database upgrade failed: {str(e).strip()}", file=sys.stderr)
        return 1
    print(f"schema upgraded ({', '.join(map(str, applied))})" if applied else "schema up to date")
    return 0


def device_command(args: argparse.Namespace) -> int:
    import psycopg2

    from cmsv6.db.admin import AdminError, add_device

    try:
        phone = add_device(_dsn(args), args.phone, args.plate, args.fleet, args.channels)
    except (AdminError, psycopg2.Error) as e:
        print(f"cmsv6: {str(e).strip()}", file=sys.stderr)
        return 1
    print(f"device {phone} added")
    return 0


def user_command(args: argparse.Namespace) -> int:
    import psycopg2

    from cmsv6.db.admin import AdminError, add_user

    try:
        add_user(_dsn(args), args.name, _password(args.password_file), args.admin, args.fleet)
    except (AdminError, psycopg2.Error) as e:
        print(f"cmsv6: {str(e).strip()}", file=sys.stderr)
        return 1
    print(f"user {args.name} added")
    return 0


def send_command(args: argparse.Namespace) -> int:
    from cmsv6.sendcmd import send

    return send(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cmsv6", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "decode",
        help="decode JT/T 808 frames: one hex frame per line on stdin, one JSON object per line out",
    )

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="TOML configuration file (its [database] dsn)")
        p.add_argument("--dsn", help="PostgreSQL DSN (overrides the configuration)")
        return p

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    with_db(db_sub.add_parser("upgrade", help="create or upgrade the schema (idempotent)"))

    device = sub.add_parser("device", help="devices")
    device_sub = device.add_subparsers(dest="device_command", required=True)
    p = with_db(device_sub.add_parser("add", help="add (or update) a device"))
    p.add_argument("phone", help="terminal phone number (up to 20 digits)")
    p.add_argument("--plate")
    p.add_argument("--fleet")
    p.add_argument("--channels", type=int, default=4)

    user = sub.add_parser("user", help="users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    p = with_db(user_sub.add_parser("add", help="add (or update) a user"))
    p.add_argument("name")
    p.add_argument("--password-file", required=True, help="file whose first line is the password (- for stdin)")
    p.add_argument("--admin", action="store_true")
    p.add_argument("--fleet", action="append", help="a fleet the user sees (repeatable)")

    p = sub.add_parser("send", help="send a platform message to an online device through a gateway")
    p.add_argument("phone")
    p.add_argument("msg_id", help="message id, e.g. 0x8300")
    p.add_argument("--json", help="the body as JSON (the message's fields)", default=None)
    p.add_argument("--hex", help="the body as hex bytes", default=None)
    p.add_argument("--gateway", default="tcp:127.0.0.1:7613", help="the gateway's cluster endpoint")
    p.add_argument("--version", type=int, choices=(2013, 2019), default=2013,
                   help="protocol version to encode the body for")
    p.add_argument("--timeout", type=float, default=10.0)

    from cmsv6.sim.cli import add_arguments as add_sim_arguments

    add_sim_arguments(sub.add_parser("sim", help="simulated DVRs: JT/T 808 terminals against a server"))

    from cmsv6 import demo

    demo.add_arguments(sub.add_parser("demo", help="run the whole system on this machine (data in ./var)"))

    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.run(args)
    if args.command == "decode":
        return decode_command(sys.stdin, sys.stdout)
    if args.command == "sim":
        from cmsv6.sim.cli import run as run_sim

        return run_sim(args)
    commands = {"db": db_command, "device": device_command, "user": user_command,
                "send": send_command}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
