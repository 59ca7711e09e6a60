"""The cluster's credentials: one master key for the login servers, one key per other
server derived from it, and the files they are kept in.

A server's key is ``HMAC-SHA256(master, "cmsv6 server " + identity)``: login holds the
master, so it can check any server and prove itself to any gateway; a gateway (or a media
server) holds its own key only, which proves that identity and no other. ``cmsv6 cluster
init`` writes the master (and, when asked, servers' keys); ``cmsv6 cluster key`` derives one
more.

The identity says the role as well as the id, so a key proves both: a gateway's identity
is its id (as it always was: gateways' key files from before roles still work), a media
server's is ``"media " + id``. Ids have no spaces, so no gateway id is a media server's
identity, and a gateway's key cannot pass for a media server's of the same id (nor the
other way round), whether or not that other server is connected.

A key file is one line of text, ``cmsv6-cluster master HEX``, ``cmsv6-cluster server ID
HEX`` (a gateway) or ``cmsv6-cluster media ID HEX``, readable by its owner only (0600).
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
#: Roles, as key files spell them: a gateway's key says "server" (its spelling before there
#: were roles).
GATEWAY, MEDIA = "gateway", "media"
_SPELLING = {GATEWAY: "server", MEDIA: "media"}


class KeyFileError(Exception):
    """A key file that cannot be used; the message says which and why."""


def derive(master: bytes, identity: str) -> bytes:
    """The key of the server proving ``identity`` (``identity(role, id)``) under ``master``."""
    return hmac.new(master, b"cmsv6 server " + identity.encode("utf-8"), hashlib.sha256).digest()


def identity(role: str, server_id: str) -> str:
    """What a server of ``role`` with id ``server_id`` proves: the id for a gateway,
    ``"media " + id`` for a media server."""
    if role == GATEWAY:
        return server_id
    if role == MEDIA:
        return f"{MEDIA} {server_id}"
    raise ValueError(f"{role!r} is not a server role")


def role_of(proved: str) -> tuple[str, str]:
    """(role, id) of an identity a link proved: ``role_of("media m-1") == ("media", "m-1")``."""
    role, space, server_id = proved.partition(" ")
    if space and role == MEDIA:
        return MEDIA, server_id
    return GATEWAY, proved


def _valid_id(server_id: str) -> bool:
    return bool(server_id) and not any(c.isspace() for c in server_id)


@attrs.frozen
class Credential:
    """What one server holds: the master (``server_id`` None) or the key of one server
    (``server_id`` in ``role``)."""

    key: bytes = attrs.field(repr=False)
    server_id: str | None = None
    role: str = GATEWAY

    @property
    def is_master(self) -> bool:
        return self.server_id is None

    @property
    def identity(self) -> str | None:
        """What this key proves (None: the master, which proves any)."""
        return None if self.server_id is None else identity(self.role, self.server_id)

    def key_for(self, proved: str) -> bytes | None:
        """The key proving identity ``proved`` (``identity(role, id)``), if this credential
        has it."""
        if self.server_id is None:
            return derive(self.key, proved)
        return self.key if proved == self.identity else None

    def describe(self) -> str:
        """Whose key this is, in words: "the master key", "gateway gw-1's key"."""
        if self.server_id is None:
            return "the cluster master key"
        return f"{'media server' if self.role == MEDIA else 'gateway'} {self.server_id}'s key"

    def line(self) -> str:
        if self.server_id is None:
            return f"{_MAGIC} master {self.key.hex()}\n"
        return f"{_MAGIC} {_SPELLING[self.role]} {self.server_id} {self.key.hex()}\n"


def new_master() -> Credential:
    return Credential(secrets.token_bytes(KEY_BYTES))


def server_credential(master: Credential, server_id: str, role: str = GATEWAY) -> Credential:
    """The key of server ``server_id`` in ``role`` (``GATEWAY`` or ``MEDIA``)."""
    if not master.is_master:
        raise KeyFileError("a server's key is derived from the cluster master key, not another server's")
    if not _valid_id(server_id):
        raise KeyFileError(f"{server_id!r} is not a server id (non-empty, no spaces)")
    return Credential(derive(master.key, identity(role, server_id)), server_id, role)


_ROLE_OF = {spelling: role for role, spelling in _SPELLING.items()}


def parse(text: str, where: str = "key file") -> Credential:
    fields = text.split()
    try:
        if len(fields) == 3 and fields[:2] == [_MAGIC, "master"]:
            key, server_id, role = bytes.fromhex(fields[2]), None, GATEWAY
        elif len(fields) == 4 and fields[0] == _MAGIC and fields[1] in _ROLE_OF:
            key, server_id, role = bytes.fromhex(fields[3]), fields[2], _ROLE_OF[fields[1]]
        else:
            raise ValueError
    except ValueError:
        raise KeyFileError(f"{where} is not a cmsv6 cluster key (make one with 'cmsv6 cluster init')") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{where}: a key is {KEY_BYTES} bytes")
    return Credential(key, server_id, role)


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


def ensure(directory: str | Path, *server_ids: str, media: tuple[str, ...] | list[str] = ()) -> Path:
    """``directory/cluster.key`` and ``directory/ID.key`` for each gateway id and each
    ``media`` server id, written the first time and kept afterwards (``cmsv6 demo``,
    tests); the master key's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    master_path = directory / "cluster.key"
    if not master_path.exists():
        write(master_path, new_master())
    master = load(master_path)
    for role, ids in ((GATEWAY, server_ids), (MEDIA, media)):
        for server_id in ids:
            path = directory / f"{server_id}.key"
            if not path.exists():
                write(path, server_credential(master, server_id, role))
    return master_path
