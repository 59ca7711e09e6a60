"""The cluster's credentials and authenticated AMP pairs for tests without sockets."""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.test import iosim

from cmsv6.rpc.keys import Credential
from cmsv6.rpc.link import ClusterLink

#: A master key for unit tests (processes use ``tests.support.process.master_key``).
MASTER = Credential(bytes(range(32)))


def connect(server: Any, client: ClusterLink | None = None, server_id: str | None = "gw-1",
            key: bytes | None = None) -> tuple[ClusterLink, Any, iosim.IOPump]:  # fmt: skip
    """``client`` (a new ClusterLink by default) connected to ``server`` over iosim and,
    unless ``server_id`` is None, authenticated as it with ``key`` (default: the id's key
    under MASTER); (client, server, pump)."""
    client = client if client is not None else ClusterLink(clock=task.Clock())
    c, s, pump = iosim.connectedServerAndClient(lambda: server, lambda: client)
    if server_id is not None:
        done: list[Any] = []
        client.authenticate(server_id, key or MASTER.key_for(server_id)).addBoth(done.append)  # type: ignore[arg-type]
        pump.flush()
        assert done and done[0] is client, done
    return c, s, pump
