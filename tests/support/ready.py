"""A ``twistd gateway`` started by ``GatewayProcess``: what its log says.

The gateway opens its device port only once its database answers, so ``start()``'s wait
for the port already means the database is connected; ``database_connected`` checks the
log as well, for tests that start the gateway without waiting for the port."""

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
