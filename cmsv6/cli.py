"""The ``cmsv6`` command: administration, frame decoding, simulation."""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from datetime import datetime
from typing import Any, Callable, Sequence

import attrs

from cmsv6 import __version__
from cmsv6.decode import decode_command


#: The configuration sections of the commands that need the database (``--config``, ``--dsn``).
DB_SECTIONS = ("database",)


def _dsn(args: argparse.Namespace) -> str:
    """The database of a command: ``--dsn`` or ``--config``, else the demo's configuration
    when run where ``cmsv6 demo`` runs (said on stderr), else ``[database]``'s default."""
    from cmsv6 import config

    if args.config is None and args.dsn is None:
        found = config.demo_config()
        if found is not None:
            print(f"cmsv6: using the demo's database ({found}; --config or --dsn for another)",
                  file=sys.stderr)  # fmt: skip
            args.config = str(found)
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


def _refused(why: object) -> int:
    print(f"cmsv6: {str(why).strip()}", file=sys.stderr)
    return 1


def _admin(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command's refusals (AdminError) and database errors as one line on stderr, exit 1."""

    def command(args: argparse.Namespace) -> int:
        import psycopg2

        from cmsv6.db.service import AdminError

        try:
            return run(args)
        except (AdminError, psycopg2.Error) as e:
            return _refused(e)

    return command


# -- output ---------------------------------------------------------------------------------


def _time(t: datetime | None) -> str:
    """A time for people: local, to the second."""
    return t.astimezone().isoformat(sep=" ", timespec="seconds") if t is not None else "-"


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal (CJK plates take two per character)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> None:
    widths = [max(_width(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [c + " " * (w - _width(c)) for c, w in zip(row, widths)]
        print("  ".join(cells).rstrip())


def _json_line(obj: Any) -> None:
    def default(o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        if isinstance(o, bytes):
            return o.hex()
        raise TypeError(type(o).__name__)

    print(json.dumps(obj, ensure_ascii=False, default=default))


def _position_json(p: Any) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"time": p.time, "received": p.received, "latitude": p.latitude,
            "longitude": p.longitude, "altitude": p.altitude, "speed": p.speed,
            "direction": p.direction, "alarm": p.alarm, "status": p.status,
            "extras": json.loads(p.extras) if p.extras else None}  # fmt: skip


def _device_json(d: Any) -> dict[str, Any]:
    out = attrs.asdict(d, recurse=False)
    out["last_position"] = _position_json(d.last_position)
    return out


# -- db -------------------------------------------------------------------------------------


def db_command(args: argparse.Namespace) -> int:
    import psycopg2

    from cmsv6.db.upgrade import RoleError, grant_app_role, upgrade

    if args.db_command == "maintain":
        return maintain_command(args)
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


def maintain_command(args: argparse.Namespace) -> int:
    """The positions' partitions: made ahead, dropped past ``retention_days``; what was done."""
    import psycopg2

    from cmsv6 import config
    from cmsv6.db.maintenance import maintain_now

    dsn = _dsn(args)
    retention = config.from_arguments(args, DB_SECTIONS).database.retention_days
    try:
        done = maintain_now(dsn, retention)
    except psycopg2.Error as e:
        return _refused(f"positions maintenance failed: {e}")
    for line in done:
        print(line)
    print(f"positions: {len(done)} change(s), {retention or 'all'} day(s) kept"
          if done else f"positions: nothing to do, {retention or 'all'} day(s) kept")
    return 0


# -- device ---------------------------------------------------------------------------------


@_admin
def device_command(args: argparse.Namespace) -> int:
    from cmsv6.db import devices

    action = args.device_command
    if action == "remove" and not args.yes:
        return _refused(
            f"device remove deletes {args.phone} with its history (positions, alarms,"
            " sessions, media file records): add --yes to do it, or keep the history and"
            f" stop the device with cmsv6 device disable {args.phone}")  # fmt: skip
    dsn = _dsn(args)
    if action == "list":
        found = devices.all_devices(dsn, args.fleet)
        if args.json:
            for d in found:
                _json_line(_device_json(d))
            return 0
        if not found:
            print("no devices" + (f" in fleet {args.fleet!r}" if args.fleet else ""), file=sys.stderr)
            return 0
        _table(("PHONE", "PLATE", "FLEET", "CH", "STATE", "ONLINE", "LAST POSITION"), [
            (d.phone, d.plate or "-", d.fleet or "-", str(d.channels),
             "disabled" if d.disabled else "enabled",
             f"yes ({d.gateway})" if d.online else "no",
             _time(d.last_position.time if d.last_position else None))
            for d in found])  # fmt: skip
    elif action == "show":
        d = devices.device_info(dsn, args.phone)
        if args.json:
            _json_line(_device_json(d))
            return 0
        _show_device(d)
    elif action == "disable":
        if devices.disable_device(dsn, args.phone):
            print(f"device {args.phone} disabled: its registrations and authentications are"
                  " refused (a connection it has open goes on until it closes;"
                  f" cmsv6 device enable {args.phone} to undo)")  # fmt: skip
        else:
            print(f"device {args.phone} was disabled already")
    elif action == "enable":
        if devices.enable_device(dsn, args.phone):
            print(f"device {args.phone} enabled: it may authenticate again")
        else:
            print(f"device {args.phone} was not disabled")
    elif action == "remove":
        r = devices.remove_device(dsn, args.phone)
        print(f"device {r.phone} removed with {r.positions} position(s), {r.alarms} alarm(s)"
              f" and {r.media_files} media file record(s) (the files stay on disk)")  # fmt: skip
        if r.connected:
            print(f"cmsv6: {r.phone} had a session open: its connection goes on until it closes,"
                  " and what it reports meanwhile is kept for no device", file=sys.stderr)
    elif action == "reset-auth":
        phone = devices.reset_auth(dsn, args.phone)
        print(f"device {phone}: auth code cleared; its next registration is accepted")
    else:
        phone = devices.add_device(dsn, args.phone, args.plate, args.fleet, args.channels,
                                   args.terminal_id, create_fleet=False, by=_by())  # fmt: skip
        print(f"device {phone} added")
    return 0


def _by() -> str:
    from cmsv6.db.users import local_operator

    return local_operator()


def _show_device(d: Any) -> None:
    p = d.last_position
    if d.online:
        session = f"online on {d.gateway} since {_time(d.connected)}"
    elif d.connected is not None:
        session = f"offline since {_time(d.disconnected)} (last on {d.gateway})"
    else:
        session = "never connected"
    lines = [
        ("phone", d.phone),
        ("plate", d.plate or "-"),
        ("fleet", d.fleet or "- (only admins see it)"),
        ("channels", str(d.channels)),
        ("state", f"disabled since {_time(d.disabled)}" if d.disabled else "enabled"),
        ("auth code", "set (it has registered; the code itself is not shown)" if d.has_auth_code
         else "none (its next registration is accepted)"),
        ("registered", _time(d.registered)
         + (f" (JT/T 808-{d.protocol})" if d.protocol else "")),
        ("terminal", " / ".join(x or "-" for x in (d.manufacturer, d.model, d.terminal_id))
         + "  (manufacturer / model / terminal id)"),
        ("added", _time(d.created)
         + (" by open registration" if d.self_registered else "")),
        ("session", session),
        ("last position", "-" if p is None else
         f"{_time(p.time)}  {p.latitude:.6f}, {p.longitude:.6f}  {p.speed:g} km/h"
         f" {p.direction}°  (received {_time(p.received)})"),
        ("alarms", f"{d.open_alarms} open, {d.alarms_last_7_days} in the last 7 days"),
    ]  # fmt: skip
    for key, value in lines:
        print(f"{key:<14} {value}")


# -- user -----------------------------------------------------------------------------------


@_admin
def user_command(args: argparse.Namespace) -> int:
    from cmsv6.db import users

    action = args.user_command
    if action == "remove" and not args.yes:
        return _refused(
            f"user remove deletes {args.name} and their sessions (their audit rows keep their"
            f" name): add --yes to do it, or stop them with cmsv6 user disable {args.name}")
    dsn = _dsn(args)
    # A password or role change revokes the user's tokens (cmsv6.db.users).
    if action == "passwd":
        revoked = users.set_password(dsn, args.name, _password(args.password_file), _by())
        print(f"password of {args.name} changed; {revoked} session(s) revoked")
    elif action == "role":
        changed = users.set_role(dsn, args.name, args.role, _by())
        print(f"{args.name} is already {args.role}" if changed is None
              else f"{args.name} is now {args.role}; {changed} session(s) revoked")
        _warn_no_fleet(users.list_users(dsn, args.name))
    elif action == "list":
        found = users.list_users(dsn)
        if args.json:
            for u in found:
                _json_line(attrs.asdict(u, recurse=False) | {"fleets": list(u.fleets)})
            return 0
        if not found:
            print("no users", file=sys.stderr)
            return 0
        _table(("NAME", "ROLE", "FLEETS", "STATE", "SESSIONS"), [
            (u.name, u.role,
             "(all)" if u.role == "admin" and not u.fleets else
             "(none: sees no device)" if u.sees_nothing else ", ".join(u.fleets),
             "disabled" if u.disabled else "enabled", str(u.tokens))
            for u in found])  # fmt: skip
    elif action == "disable":
        revoked = users.disable_user(dsn, args.name, _by())
        if revoked is None:
            print(f"user {args.name} was disabled already")
        else:
            print(f"user {args.name} disabled: their logins are refused; {revoked} session(s)"
                  f" revoked (cmsv6 user enable {args.name} to undo)")  # fmt: skip
    elif action == "enable":
        if users.enable_user(dsn, args.name, _by()):
            print(f"user {args.name} enabled: they may log in again")
        else:
            print(f"user {args.name} was not disabled")
    elif action == "remove":
        revoked = users.remove_user(dsn, args.name, _by())
        print(f"user {args.name} removed; {revoked} session(s) revoked")
    else:
        created = users.add_user(dsn, args.name, _password(args.password_file), args.admin,
                                 args.fleet, create_fleets=False, require_fleet=True, by=_by())
        print(f"user {args.name} {'added' if created else 'updated; their sessions are revoked'}")
    return 0


def _warn_no_fleet(found: list[Any]) -> None:
    for u in found:
        if u.sees_nothing:
            print(f"cmsv6: {u.name} is an operator with no fleet and sees no device; give them"
                  f" one with cmsv6 user add {u.name} --password-file F --fleet NAME",
                  file=sys.stderr)  # fmt: skip


# -- token, fleet ---------------------------------------------------------------------------


@_admin
def token_command(args: argparse.Namespace) -> int:
    from cmsv6.db.tokens import revoke_user_tokens

    revoked = revoke_user_tokens(_dsn(args), args.user, _by())
    print(f"{revoked} token(s) of {args.user} revoked")
    return 0


@_admin
def fleet_command(args: argparse.Namespace) -> int:
    from cmsv6.db import fleets

    dsn = _dsn(args)
    if args.fleet_command == "add":
        added = fleets.add_fleet(dsn, args.name, _by())
        print(f"fleet {args.name} {'added' if added else 'exists already'}")
        return 0
    found = fleets.list_fleets(dsn)
    if args.json:
        for f in found:
            _json_line(attrs.asdict(f))
        return 0
    if not found:
        print("no fleets (cmsv6 fleet add NAME)", file=sys.stderr)
        return 0
    _table(("NAME", "DEVICES", "USERS"), [(f.name, str(f.devices), str(f.users)) for f in found])
    return 0


def send_command(args: argparse.Namespace) -> int:
    from cmsv6.sendcmd import send

    return send(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``cmsv6`` command line (docs/cli.md describes every command)."""
    parser = argparse.ArgumentParser(prog="cmsv6", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cmsv6 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "decode",
        help="decode JT/T 808 frames: one hex frame per line on stdin, one JSON object per line out",
    )

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        from cmsv6 import config

        config.add_arguments(p, DB_SECTIONS)
        return p

    def with_json(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        return p

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    p = with_db(db_sub.add_parser("upgrade", help="create or upgrade the schema (idempotent)"))
    p.add_argument("--app-role", metavar="NAME",
                   help="the role the servers connect as: created if missing (LOGIN only) and"
                        " granted rows, sequences and partition creation, nothing more")
    p.add_argument("--app-password-file", metavar="F",
                   help="set the servers' role's password from the first line of F ('-': stdin)")
    with_db(db_sub.add_parser(
        "maintain", help="make the positions' partitions ahead, drop those past retention_days"))

    phone_help = "terminal phone number (up to 20 digits)"
    device = sub.add_parser("device", help="devices")
    device_sub = device.add_subparsers(dest="device_command", required=True)
    p = with_db(device_sub.add_parser("add", help="add (or update) a device; audited"))
    p.add_argument("phone", help=phone_help)
    p.add_argument("--plate")
    p.add_argument("--fleet", help="its fleet, which must exist (cmsv6 fleet add NAME)")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--terminal-id", help="the unit's terminal id (what reregister = 'terminal_id'"
                   " compares a new registration of a registered phone with)")
    p = with_json(with_db(device_sub.add_parser(
        "list", help="every device: plate, fleet, state, online (as the database knows),"
        " last position time")))  # fmt: skip
    p.add_argument("--fleet", help="only this fleet's devices")
    p = with_json(with_db(device_sub.add_parser(
        "show", help="everything the database knows of a device (never its auth code)")))
    p.add_argument("phone", help=phone_help)
    p = with_db(device_sub.add_parser(
        "disable", help="refuse a device's registrations and authentications, keeping its"
        " history; audited"))  # fmt: skip
    p.add_argument("phone", help=phone_help)
    p = with_db(device_sub.add_parser("enable", help="undo device disable; audited"))
    p.add_argument("phone", help=phone_help)
    p = with_db(device_sub.add_parser(
        "remove", help="delete a device with its history (positions, alarms, sessions, media"
        " file records); audited"))  # fmt: skip
    p.add_argument("phone", help=phone_help)
    p.add_argument("--yes", action="store_true", help="yes, delete it and its history")
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
    p.add_argument("phone", help=phone_help)

    user = sub.add_parser("user", help="users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    password_help = "file whose first line is the password (- for stdin)"
    p = with_db(user_sub.add_parser(
        "add", help="add (or update) a user: an admin (--admin) or an operator of one or more"
        " fleets (--fleet); audited"))  # fmt: skip
    p.add_argument("name")
    p.add_argument("--password-file", required=True, help=password_help)
    p.add_argument("--admin", action="store_true", help="sees and may do everything")
    p.add_argument("--fleet", action="append",
                   help="a fleet the user sees (repeatable; it must exist: cmsv6 fleet add NAME)")
    with_json(with_db(user_sub.add_parser(
        "list", help="every user: role, fleets, state, sessions")))  # fmt: skip
    p = with_db(user_sub.add_parser("passwd", help="set a user's password (revokes their tokens)"))
    p.add_argument("name")
    p.add_argument("--password-file", required=True, help=password_help)
    p = with_db(user_sub.add_parser("role", help="set a user's role (revokes their tokens)"))
    p.add_argument("name")
    p.add_argument("role", choices=("admin", "operator"))
    p = with_db(user_sub.add_parser(
        "disable", help="refuse a user's logins and revoke their tokens; audited"))
    p.add_argument("name")
    p = with_db(user_sub.add_parser("enable", help="undo user disable; audited"))
    p.add_argument("name")
    p = with_db(user_sub.add_parser("remove", help="delete a user and their tokens; audited"))
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="yes, delete them")

    token = sub.add_parser("token", help="the Open API's sessions")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    p = with_db(token_sub.add_parser(
        "revoke", help="end every session of a user (they log in again); audited"))
    p.add_argument("--user", required=True, metavar="NAME", help="whose tokens")

    fleet = sub.add_parser("fleet", help="fleets: what operators see")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True)
    p = with_db(fleet_sub.add_parser("add", help="add a fleet; audited"))
    p.add_argument("name")
    with_json(with_db(fleet_sub.add_parser(
        "list", help="every fleet with its number of devices and users")))

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from cmsv6 import demo

        return demo.run(args)
    if args.command == "cluster":
        from cmsv6 import clustercmd

        return clustercmd.run(args)
    if args.command == "decode":
        return decode_command(sys.stdin, sys.stdout)
    if args.command == "sim":
        from cmsv6.sim.cli import run as run_sim

        return run_sim(args)
    commands = {"db": db_command, "device": device_command, "user": user_command,
                "token": token_command, "fleet": fleet_command, "send": send_command}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
