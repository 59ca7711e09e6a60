"""``twistd gateway`` options."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from cmsv6.plugins.gateway import tap


def test_gateway_login_option_repeats() -> None:
    """--login may be given for the active and the standby; '' means standalone."""
    options = tap.Options()
    options.parseOptions(["--login", "tcp:127.0.0.1:1", "--login", "tcp:127.0.0.1:2"])
    assert options.config.gateway.login == ("tcp:127.0.0.1:1", "tcp:127.0.0.1:2")
    options = tap.Options()
    options.parseOptions(["--login", ""])
    assert options.config.gateway.login == ()


def test_numbers_are_typed() -> None:
    """--idle_timeout and --capacity arrive as a float and an int."""
    options = tap.Options()
    options.parseOptions(["--idle_timeout", "60", "--capacity", "12"])
    assert (options.config.gateway.idle_timeout, options.config.gateway.capacity) == (60.0, 12)
    assert isinstance(options.config.gateway.idle_timeout, float)


@pytest.mark.parametrize("args", [
    ["--registration", "maybe"], ["--idle_timeout", "soon"], ["--capacity", "lots"],
    ["--public_jt808", "nohost"], ["--login", "tcp:"], ["--jt808", "tcp:abc"], ["--id", ""],
])  # fmt: skip
def test_bad_options_are_refused(args: list[str]) -> None:
    """Nonsense settings stop twistd with a usage error."""
    with pytest.raises(usage.UsageError):
        tap.Options().parseOptions(args)


def test_database_stops_after_the_other_services() -> None:
    """The gateway's service tree stops its database only once every other service has
    finished stopping (the gateway's last words, its sessions closed, go to it), and its
    stop fires after that."""
    from twisted.application import service
    from twisted.internet import defer

    stopped: list[str] = []
    closing: defer.Deferred[None] = defer.Deferred()

    class Named(service.Service):
        def __init__(self, name: str, result: defer.Deferred[None] | None = None) -> None:
            self.name = name
            self.result = result

        def stopService(self) -> defer.Deferred[None] | None:  # noqa: N802
            super().stopService()
            stopped.append(self.name)
            return self.result

    top = tap._DatabaseLast()
    db = Named("db")
    db.setServiceParent(top)
    top.db = db
    Named("sessions", closing).setServiceParent(top)
    Named("port").setServiceParent(top)
    top.startService()
    done = top.stopService()
    assert stopped == ["port", "sessions"] and not done.called
    closing.callback(None)
    assert stopped == ["port", "sessions", "db"] and done.called


def test_a_media_servers_key_is_not_a_gateways(tmp_path: Path) -> None:
    """A media server's key of the same id is refused, and the message says whose it is."""
    from cmsv6.rpc import keys

    master = keys.new_master()
    path = tmp_path / "gw-1.key"
    keys.write(path, keys.server_credential(master, "gw-1", keys.MEDIA))
    with pytest.raises(usage.UsageError, match="media server gw-1's key, not gateway gw-1's"):
        tap.gateway_key(str(path), "gw-1")
    keys.write(tmp_path / "ok.key", keys.server_credential(master, "gw-1"))
    assert tap.gateway_key(str(tmp_path / "ok.key"), "gw-1") == master.key_for("gw-1")
