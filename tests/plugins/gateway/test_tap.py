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


def test_processes_plan_one_gateway_per_worker() -> None:
    """--processes 2: workers ID.1 and ID.2, each with its own key file ({id}), cluster and
    metrics ports (+ i - 1), sharing the device port; with --ports each, ports of their own
    and public addresses to match."""
    options = tap.Options()
    options.parseOptions(["--id", "gw-9", "--processes", "2", "--cluster_key", "/k/{id}.key",
                          "--jt808", "tcp:7611:backlog=1024", "--metrics", "tcp:9100",
                          "--login", "tcp:127.0.0.1:6609", "--public_jt808", "gw.example:7611"])
    commands = dict(tap.worker_commands(options))
    assert list(commands) == ["gw-9.1", "gw-9.2"]
    second = commands["gw-9.2"]
    assert second[second.index("gateway") - 2:second.index("gateway")] == ["--nodaemon", "--pidfile="]
    args = second[second.index("gateway") + 1:]
    given = dict(zip(args[:-1:2], args[1::2]))
    assert given["--id"] == "gw-9.2" and given["--cluster_key"] == "/k/gw-9.2.key"
    assert given["--jt808"] == "tcp:7611:backlog=1024" and args[-1] == "--reuse_port"
    assert given["--cluster"] == "tcp:7614:interface=127.0.0.1:backlog=50"
    assert given["--metrics"] == "tcp:9101:backlog=50" and given["--login"] == "tcp:127.0.0.1:6609"
    assert given["--public_jt808"] == "gw.example:7611"  # the one shared port, for every worker
    assert given["--processes"] == "1" and "--ports" not in args  # each worker is one gateway
    options = tap.Options()
    options.parseOptions(["--processes", "2", "--ports", "each", "--cluster", "",
                          "--jt808", "tcp:7611:interface=10.0.0.5", "--public_jt808", "gw.example:7611"])
    args = dict(tap.worker_commands(options))["gw-1.2"]
    assert args[args.index("--jt808") + 1] == "tcp:7612:interface=10.0.0.5:backlog=50"
    assert args[args.index("--public_jt808") + 1] == "gw.example:7612"
    assert "--reuse_port" not in args


def test_processes_from_the_configuration_file(tmp_path: Path) -> None:
    """``[gateway] processes`` and ``ports`` in the file act as the options do; the workers,
    which read the same file, are told they are one gateway each (else each would start
    workers of its own)."""
    conf = tmp_path / "cmsv6.toml"
    conf.write_text('[gateway]\nprocesses = 2\nports = "each"\ncluster = ""\n')
    options = tap.Options()
    options.parseOptions(["--config", str(conf)])
    assert options.processes == 2
    commands = dict(tap.worker_commands(options))
    for name, args in commands.items():
        assert args[args.index("--config") + 1] == str(conf)
        assert args[args.index("--processes") + 1] == "1", name
        worker = tap.Options()
        worker.parseOptions(args[args.index("gateway") + 1:])
        assert worker.processes == 1
    assert commands["gw-1.2"][commands["gw-1.2"].index("--jt808") + 1].startswith("tcp:7612")


def test_processes_zero_is_one_per_core() -> None:
    """--processes 0 runs one worker per core; 1 (the default) is this process itself."""
    import os

    options = tap.Options()
    options.parseOptions(["--processes", "0", "--cluster", ""])
    assert options.processes == (os.cpu_count() or 1)
    options = tap.Options()
    options.parseOptions([])
    assert options.processes == 1


@pytest.mark.parametrize("args, words", [
    (["--processes", "-1"], "--processes: expected an integer of processes \\(at least 0\\)"),
    (["--processes", "two"], "--processes: expected an integer of processes"),
    (["--processes", "2", "--ports", "some"], "--ports: expected 'shared' or 'each', got 'some'"),
    (["--processes", "2", "--cluster_key", "/k/gw.key"], "with \\{id\\} in it"),
    (["--processes", "2", "--cluster", "", "--jt808", "unix:/tmp/s"], "tcp or tcp6"),
    (["--processes", "2", "--cluster_key", "/k/{id}", "--public_cluster", "tcp:h:1"], "public_cluster"),
])  # fmt: skip
def test_processes_refuses_what_cannot_work(args: list[str], words: str) -> None:
    """Settings that several workers cannot share stop twistd with a usage error in words."""
    with pytest.raises(usage.UsageError, match=words):
        tap.Options().parseOptions(args)


def test_missing_worker_key_names_the_command(tmp_path: Path) -> None:
    """A worker's key file missing: twistd stops before starting any, naming the file."""
    options = tap.Options()
    options.parseOptions(["--processes", "2", "--cluster_key", str(tmp_path / "{id}.key")])
    with pytest.raises(usage.UsageError, match="gw-1.1.key"):
        tap.makeService(options)
