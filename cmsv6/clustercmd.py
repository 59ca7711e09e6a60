"""``cmsv6 cluster``: the cluster's keys (``cmsv6.rpc.keys``).

``cmsv6 cluster init DIR [--server ID]... [--media ID]...`` writes ``DIR/cluster.key``,
the master key the login servers hold, and ``DIR/ID.key`` for each gateway (``--server``)
and media server (``--media``) named; ``cmsv6 cluster key ID [--media] --master FILE --out
FILE`` derives one more server's key. A key proves its server's role as well as its id
(``cmsv6.rpc.keys``): a gateway's key is refused to a media server, and the other way round.
Files are written 0600 and never overwritten.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cmsv6.rpc import keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cluster_command", required=True)
    p = sub.add_parser("init", help="write the cluster master key (DIR/cluster.key) and servers' keys")
    p.add_argument("directory", help="where to write the keys (created if missing)")
    p.add_argument("--server", action="append", default=[], metavar="ID",
                   help="also write DIR/ID.key for this gateway (repeatable)")
    p.add_argument("--media", action="append", default=[], metavar="ID",
                   help="also write DIR/ID.key for this media server (repeatable)")
    p = sub.add_parser("key", help="derive one server's key from the master key")
    p.add_argument("id", help="the server's id ([gateway] id, or [media] id with --media)")
    p.add_argument("--media", action="store_true", help="the key of a media server (default: a gateway)")
    p.add_argument("--master", required=True, help="the cluster master key file")
    p.add_argument("--out", required=True, help="the server's key file to write")


def _write(path: Path, credential: keys.Credential) -> None:
    try:
        keys.write(path, credential)
    except FileExistsError:
        raise SystemExit(f"cmsv6: {path} exists; not overwritten (remove it first to replace it)") from None
    except OSError as e:
        raise SystemExit(f"cmsv6: cannot write {path}: {e.strerror}") from None
    print(f"wrote {path} ({credential.describe()}"
          + (")" if credential.server_id else ": login servers only)"))


def run(args: argparse.Namespace) -> int:
    try:
        if args.cluster_command == "init":
            directory = Path(args.directory)
            os.makedirs(directory, mode=0o700, exist_ok=True)
            master_path = directory / "cluster.key"
            master = keys.new_master()
            servers = [keys.server_credential(master, s) for s in args.server]
            servers += [keys.server_credential(master, s, keys.MEDIA) for s in args.media]
            names = [c.server_id for c in servers]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:  # one file per id: DIR/ID.key
                raise keys.KeyFileError(f"{', '.join(twice)} named twice: one key file per id")
            _write(master_path, master)
            for credential in servers:
                _write(directory / f"{credential.server_id}.key", credential)
            return 0
        master = keys.load(args.master)
        role = keys.MEDIA if args.media else keys.GATEWAY
        _write(Path(args.out), keys.server_credential(master, args.id, role))
        return 0
    except keys.KeyFileError as e:
        print(f"cmsv6: {e}", file=sys.stderr)
        return 1
