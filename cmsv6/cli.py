"""The ``cmsv6`` command: administration, frame decoding, simulation."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from cmsv6.decode import decode_command


#: The configuration sections of the commands that need the database (``--config``, ``--dsn``).
DB_SECTIONS = ("database",)


def _dsn(args: argparse.Namespace) -> str:
    from cmsv6 import config

    try:
        return config.from_arguments(args, DB_SECTIONS).database.dsn
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

    from cmsv6.db.upgrade import RoleError, grant_app_role, upgrade

    dsn = _dsn(args)
    password = _password(args.app_password_file) if args.app_password_file else None
    try:
        applied = upgrade(dsn)
    except psycopg2.Error as e:
        print(f"cmsv6: database upgrade failed: {str(e).strip()}", file=sys.stderr)
        return 1
    print(f"schema upgraded ({', '.join(map(str, applied))})" if applied else "schema up to date")
    if args.app_role:
        try:
            created = grant_app_role(dsn, args.app_role, password)
        except (RoleError, psycopg2.Error) as e:
            print(f"cmsv6: the servers' role: {str(e).strip()}", file=sys.stderr)
            return 1
        print(f"role {args.app_role} {'created and ' if created else ''}granted what the servers need")
    return 0


def device_command(args: argparse.Namespace) -> int:
    import psycopg2

    from cmsv6.db.devices import add_device, reset_auth
    from cmsv6.db.service import AdminError

    try:
        if args.device_command == "reset-auth":
            phone = reset_auth(_dsn(args), args.phone)
        else:
            phone = add_device(_dsn(args), args.phone, args.plate, args.fleet, args.channels,
                               args.terminal_id)  # fmt: skip
    except (AdminError, psycopg2.Error) as e:
        print(f"cmsv6: {str(e).strip()}", file=sys.stderr)
        return 1
    if args.device_command == "reset-auth":
        print(f"device {phone}: auth code cleared; its next registration is accepted")
    else:
        print(f"device {phone} added")
    return 0


def user_command(args: argparse.Namespace) -> int:
    import psycopg2

    from cmsv6.db.service import AdminError
    from cmsv6.db.users import add_user, set_password, set_role

    # A password or role change revokes the user's tokens (cmsv6.db.users).
    try:
        if args.user_command == "passwd":
            revoked = set_password(_dsn(args), args.name, _password(args.password_file))
            print(f"password of {args.name} changed; {revoked} session(s) revoked")
        elif args.user_command == "role":
            changed = set_role(_dsn(args), args.name, args.role)
            print(f"{args.name} is already {args.role}" if changed is None
                  else f"{args.name} is now {args.role}; {changed} session(s) revoked")
        else:
            add_user(_dsn(args), args.name, _password(args.password_file), args.admin, args.fleet)
            print(f"user {args.name} added")
    except (AdminError, psycopg2.Error) as e:
        print(f"cmsv6: {str(e).strip()}", file=sys.stderr)
        return 1
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
        from cmsv6 import config

        config.add_arguments(p, DB_SECTIONS)
        return p

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    p = with_db(db_sub.add_parser("upgrade", help="create or upgrade the schema (idempotent)"))
    p.add_argument("--app-role", metavar="NAME",
                   help="the role the servers connect as: created if missing (LOGIN only) and"
                        " granted rows, sequences and partition creation, nothing more")
    p.add_argument("--app-password-file", metavar="F",
                   help="set the servers' role's password from the first line of F ('-': stdin)")

    device = sub.add_parser("device", help="devices")
    device_sub = device.add_subparsers(dest="device_command", required=True)
    p = with_db(device_sub.add_parser("add", help="add (or update) a device"))
    p.add_argument("phone", help="terminal phone number (up to 20 digits)")
    p.add_argument("--plate")
    p.add_argument("--fleet")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--terminal-id", help="the unit's terminal id (what reregister = 'terminal_id'"
                   " compares a new registration of a registered phone with)")
    p = with_db(device_sub.add_parser(
        "reset-auth",
        help="forget a device's auth code so that its next registration is accepted (a unit"
        " re-registering after a factory reset); audited",
        description="A phone that has an auth code is refused when it registers again (0x8100"
        " result 3), so that knowing a phone number does not give its identity. When a real"
        " unit must register again (factory reset, replaced unit, lost code), run this just"
        " before: the old code stops working (a connection already open goes on) and the next"
        " registration of PHONE gets a new one. Or set reregister = \"terminal_id\" to"
        " accept a registration carrying the terminal id on record (device add --terminal-id).",
    ))
    p.add_argument("phone", help="terminal phone number (up to 20 digits)")

    user = sub.add_parser("user", help="users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    p = with_db(user_sub.add_parser("add", help="add (or update) a user"))
    p.add_argument("name")
    p.add_argument("--password-file", required=True, help="file whose first line is the password (- for stdin)")
    p.add_argument("--admin", action="store_true")
    p.add_argument("--fleet", action="append", help="a fleet the user sees (repeatable)")
    p = with_db(user_sub.add_parser("passwd", help="set a user's password (revokes their tokens)"))
    p.add_argument("name")
    p.add_argument("--password-file", required=True, help="file whose first line is the password (- for stdin)")
    p = with_db(user_sub.add_parser("role", help="set a user's role (revokes their tokens)"))
    p.add_argument("name")
    p.add_argument("role", choices=("admin", "operator"))

    p = sub.add_parser("send", help="send a platform message to an online device through a gateway")
    p.add_argument("phone")
    p.add_argument("msg_id", help="message id, e.g. 0x8300")
    p.add_argument("--json", help="the body as JSON (the message's fields)", default=None)
    p.add_argument("--hex", help="the body as hex bytes", default=None)
    p.add_argument("--gateway", default="tcp:127.0.0.1:7613", help="the gateway's cluster endpoint")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--key", required=True,
                   help="the gateway's cluster key file (or the cluster master key)")
    p.add_argument("--id", default=None, help="the gateway's id (default: the key file's)")

    from cmsv6 import clustercmd

    clustercmd.add_arguments(sub.add_parser("cluster", help="the cluster's keys (init, key)"))

    from cmsv6.sim.cli import add_arguments as add_sim_arguments

    add_sim_arguments(sub.add_parser("sim", help="simulated DVRs: JT/T 808 terminals against a server"))

    from cmsv6 import demo

    demo.add_arguments(sub.add_parser("demo", help="run the whole system on this machine (data in ./var)"))

    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.run(args)
    if args.command == "cluster":
        return clustercmd.run(args)
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
