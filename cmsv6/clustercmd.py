"""``cmsv6 cluster``: the cluster's keys (``cmsv6.rpc.keys``).

``cmsv6 cluster init DIR [--server ID]...`` writes ``DIR/cluster.key``, the master key the
login servers hold, and ``DIR/ID.key`` for each server named; ``cmsv6 cluster key ID
--master FILE --out FILE`` derives one more server's key. Files are written 0600 and never
overwritten.
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
                   help="also write DIR/ID.key for this gateway or media server (repeatable)")
    p = sub.add_parser("key", help="derive one server's key from the master key")
    p.add_argument("id", help="the server's id ([gateway] id, [media] id)")
    p.add_argument("--master", required=True, help="the cluster master key file")
    p.add_argument("--out", required=True, help="the server's key file to write")


def _write(path: Path, credential: keys.Credential) -> None:
    try:
        keys.write(path, credential)
    except FileExistsError:
        raise SystemExit(f"cmsv6: {path} exists; not overwritten (remove it first to replace it)") from None
    except OSError as e:
        raise SystemExit(f"cmsv6: cannot write {path}: {e.strerror}") from None
    print(f"wrote {path}" + (f" ({credential.server_id}'s key)" if credential.server_id else
                             " (the cluster master key: login servers only)"))  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        if args.cluster_command == "init":
            directory = Path(args.directory)
            os.makedirs(directory, mode=0o700, exist_ok=True)
            master_path = directory / "cluster.key"
            master = keys.new_master()
            servers = [keys.server_credential(master, s) for s in args.server]
            _write(master_path, master)
            for credential in servers:
                _write(directory / f"{credential.server_id}.key", credential)
            return 0
        master = keys.load(args.master)
        _write(Path(args.out), keys.server_credential(master, args.id))
        return 0
    except keys.KeyFileError as e:
        print(f"cmsv6: {e}", file=sys.stderr)
        return 1
