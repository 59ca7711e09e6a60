"""A reconnect storm at a real gateway (real PostgreSQL, loopback): accepting is paced by
``max_handshakes``, every device gets in, none is lost, and devices the gateway knows come
back without a database round trip (the auth cache)."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, endpoints

from cmsv6.db.service import Database
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.protocol import JT808Factory
from cmsv6.protocols.jt808.messages.core import Authenticate
from cmsv6.terminal.limits import Handshakes
from cmsv6.terminal.registration import RegistrationPolicy
from tests.support.device import connect, shipping_writer, until, within

DEVICES = 24
LIMIT = 4


@pytest_twisted.inlineCallbacks
def test_storm_is_paced_and_known_devices_skip_the_database(dsn: str, tmp_path: Any) -> None:
    """24 devices connect at once to a gateway paced at 4 handshakes: never more than 4
    are between accept and authentication, all 24 register (open registration adds them)
    and authenticate. They all drop and come back at once with their codes: all get in
    again, from the cache (no lookup), paced the same way."""
    from twisted.internet import reactor

    db = Database(dsn, reactor, size=2, writer_threads=1)
    db.startService()
    lookups: list[str] = []
    run_lookup = db.run_lookup

    def counted(work: Any, *args: Any) -> Any:
        lookups.append(work.__name__)
        return run_lookup(work, *args)

    db.run_lookup = counted  # type: ignore[method-assign]
    writer, stop_writer = shipping_writer(db, reactor)
    gw = Gateway(db, reactor, "gw-storm", "127.0.0.1:7611", open_registration=True,
                 registration=RegistrationPolicy(open=True, per_address=100),
                 media_dir=tmp_path / "media", writer=writer)  # fmt: skip
    handshakes = gw.handshakes = Handshakes(LIMIT)  # type: ignore[attr-defined]
    most = [0]
    begin = handshakes.begin

    def counting_begin(who: object) -> None:
        begin(who)
        most[0] = max(most[0], len(handshakes.in_flight))

    handshakes.begin = counting_begin  # type: ignore[method-assign]
    port = None
    devices: list[Any] = []
    try:
        yield within(db.ready(), "the database")
        yield until(lambda: db.auth_cache is not None and db.auth_cache.trusted,
                    "the auth cache's listening session")  # fmt: skip
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, backlog=128, interface="127.0.0.1")
        port = yield handshakes.paced(endpoint).listen(JT808Factory(gw))
        number = port.getHost().port
        phones = [f"1390000{i:04d}" for i in range(DEVICES)]
        devices = yield defer.gatherResults([connect(reactor, number, p) for p in phones])
        codes = yield within(defer.gatherResults([d.login() for d in devices]),
                             "every device registered and authenticated")  # fmt: skip
        assert len(gw.sessions) == DEVICES and most[0] == LIMIT and handshakes.pauses >= 1
        assert not handshakes.in_flight
        for dev in devices:
            dev.transport.loseConnection()
        yield until(lambda: not gw.sessions, "the gateway to see them go")
        before = len(lookups)
        devices = yield defer.gatherResults([connect(reactor, number, p) for p in phones])
        for dev, code in zip(devices, codes):
            dev.send(Authenticate(code))
        acks = yield within(defer.gatherResults([d.next(0x8001) for d in devices]),
                            "every device authenticated again")  # fmt: skip
        assert all(a.body.result == 0 for a in acks) and len(gw.sessions) == DEVICES
        assert len(lookups) == before  # all from the cache
        assert most[0] == LIMIT
    finally:
        for dev in devices:
            dev.transport.loseConnection()
        for session in list(gw.connections):
            session.link.close()
        stop_writer()
        if port is not None:
            yield defer.maybeDeferred(port.stopListening)
        yield within(defer.maybeDeferred(db.stopService), "the database stopped")
