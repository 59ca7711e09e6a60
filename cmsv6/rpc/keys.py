"""The cluster's credentials: one master key for the login servers, one key per other
server derived from it, and the files they are kept in.

A server's key is ``HMAC-SHA256(master, "cmsv6 server " + id)``: login holds the master,
so it can check any server and prove itself to any gateway; a gateway (or a media
server) holds its own key only, which proves that id and no other. ``cmsv6 cluster init``
writes the master (and, when asked, servers' keys); ``cmsv6 cluster key`` derives one more.

A key file is one line of text, ``cmsv6-cluster master HEX`` or ``cmsv6-cluster server ID
HEX``, readable by its owner only (0600).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

import attrs

#: Bytes of a master key.
KEY_BYTES = 32
_MAGIC = "cmsv6-cluster"


class KeyFileError(Exception):
    """A key file that cannot be used; the message says which and why."""


def derive(master: bytes, server_id: str) -> bytes:
    """The key of server ``server_id`` under ``master``."""
    return hmac.new(master, b"cmsv6 server " + server_id.encode("utf-8"), hashlib.sha256).digest()


@attrs.frozen
class Credential:
    """What one server holds: the master (``server_id`` None) or one server's key."""

    key: bytes = attrs.field(repr=False)
    server_id: str | None = None

    @property
    def is_master(self) -> bool:
        return self.server_id is None

    def key_for(self, server_id: str) -> bytes | None:
        """The key proving ``server_id``, if this credential has it."""
        if self.server_id is None:
            return derive(self.key, server_id)
        return self.key if server_id == self.server_id else None

    def line(self) -> str:
        if self.server_id is None:
            return f"{_MAGIC} master {self.key.hex()}\n"
        return f"{_MAGIC} server {self.server_id} {self.key.hex()}\n"


def new_master() -> Credential:
    return Credential(secrets.token_bytes(KEY_BYTES))


def server_credential(master: Credential, server_id: str) -> Credential:
    if not master.is_master:
        raise KeyFileError("a server's key is derived from the cluster master key, not another server's")
    if not server_id or any(c.isspace() for c in server_id):
        raise KeyFileError(f"{server_id!r} is not a server id (non-empty, no spaces)")
    return Credential(derive(master.key, server_id), server_id)


def parse(text: str, where: str = "key file") -> Credential:
    fields = text.split()
    try:
        if len(fields) == 3 and fields[:2] == [_MAGIC, "master"]:
            key, server_id = bytes.fromhex(fields[2]), None
        elif len(fields) == 4 and fields[:2] == [_MAGIC, "server"]:
            key, server_id = bytes.fromhex(fields[3]), fields[2]
        else:
            raise ValueError
    except ValueError:
        raise KeyFileError(f"{where} is not a cmsv6 cluster key (make one with 'cmsv6 cluster init')") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{where}: a key is {KEY_BYTES} bytes")
    return Credential(key, server_id)


def load(path: str | Path) -> Credential:
    """The credential in ``path``; KeyFileError if it cannot be read, is not a key, or others
    than its owner may read it."""
    try:
        with open(path, encoding="ascii") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read(4096)
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read the cluster key {path}: {getattr(e, 'strerror', e)}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"the cluster key {path} is readable by others: chmod 600 {path}")
    return parse(text, str(path))


def write(path: str | Path, credential: Credential) -> None:
    """Write a new key file (0600); refuses to overwrite one (FileExistsError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(credential.line())


def ensure(directory: str | Path, *server_ids: str) -> Path:
    """``directory/cluster.key`` and ``directory/ID.key`` for each id, written the first time
    and kept afterwards (``cmsv6 demo``, tests); the master key's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    master_path = directory / "cluster.key"
    if not master_path.exists():
        write(master_path, new_master())
    master = load(master_path)
    for server_id in server_ids:
        path = directory / f"{server_id}.key"
        if not path.exists():
            write(path, server_credential(master, server_id))
    return master_path
