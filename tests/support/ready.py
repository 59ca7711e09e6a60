"""Waiting for a ``twistd gateway`` started by ``GatewayProcess`` to reach its database.

The gateway listens for devices before its database pool is connected; a registration that
arrives in between is not answered (a real unit retries, a scripted test device does not),
so tests that drive a device by hand wait for the pool first."""

from __future__ import annotations

from typing import Any

from tests.support.device import until
from tests.support.process import GatewayProcess


def logged(gateway: GatewayProcess, text: str) -> bool:
    try:
        return text in (gateway.directory / f"gateway-{gateway.starts}.log").read_text(errors="replace")
    except FileNotFoundError:
        return False


def database_connected(gateway: GatewayProcess) -> Any:
    """A Deferred that fires once the gateway's log says its database is connected."""
    return until(lambda: logged(gateway, "database connected"), "the gateway's database")
