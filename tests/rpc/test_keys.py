"""The cluster's keys: ``cmsv6 cluster init`` / ``key``, and servers refusing to start
without one."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from twisted.python import usage

from cmsv6.cli import main
from cmsv6.rpc import keys


def test_init_writes_private_keys_and_never_overwrites(tmp_path: Path) -> None:
    """init writes the master and the named servers' keys 0600, and refuses to overwrite."""
    assert main(["cluster", "init", str(tmp_path / "k"), "--server", "gw-1", "--server", "gw-2"]) == 0
    master = keys.load(tmp_path / "k" / "cluster.key")
    assert master.is_master
    for server_id in ("gw-1", "gw-2"):
        path = tmp_path / "k" / f"{server_id}.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        credential = keys.load(path)
        assert credential.server_id == server_id
        assert credential.key == master.key_for(server_id)
        assert credential.key_for("gw-3" if server_id == "gw-1" else "gw-1") is None
    before = (tmp_path / "k" / "cluster.key").read_bytes()
    with pytest.raises(SystemExit, match="exists"):
        main(["cluster", "init", str(tmp_path / "k")])
    assert (tmp_path / "k" / "cluster.key").read_bytes() == before


def test_key_derives_one_server(tmp_path: Path) -> None:
    """``cluster key ID`` writes the id's key derived from the master; a server's key cannot
    derive another's."""
    main(["cluster", "init", str(tmp_path)])
    out = tmp_path / "media-1.key"
    assert main(["cluster", "key", "media-1", "--master", str(tmp_path / "cluster.key"), "--out", str(out)]) == 0
    assert keys.load(out).key == keys.load(tmp_path / "cluster.key").key_for("media-1")
    assert main(["cluster", "key", "x", "--master", str(out), "--out", str(tmp_path / "x.key")]) == 1


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A key file others may read is refused, naming the fix."""
    path = tmp_path / "cluster.key"
    keys.write(path, keys.new_master())
    path.chmod(0o644)
    with pytest.raises(keys.KeyFileError, match="chmod 600"):
        keys.load(path)


def test_servers_need_a_key(tmp_path: Path) -> None:
    """login and a gateway with cluster links refuse to start without a cluster key, or
    with the wrong kind; a standalone gateway needs none."""
    from cmsv6.plugins.gateway import tap as gateway_tap
    from cmsv6.plugins.login import tap as login_tap

    options = login_tap.Options()
    options.parseOptions([])
    with pytest.raises(usage.UsageError, match="cluster_key is required"):
        login_tap.makeService(options)
    main(["cluster", "init", str(tmp_path), "--server", "gw-2"])
    options = login_tap.Options()
    options.parseOptions(["--cluster_key", str(tmp_path / "gw-2.key")])
    with pytest.raises(usage.UsageError, match="master"):
        login_tap.makeService(options)
    options = gateway_tap.Options()
    options.parseOptions(["--login", "tcp:127.0.0.1:1"])
    with pytest.raises(usage.UsageError, match="cluster_key is required"):
        gateway_tap.makeService(options)
    options = gateway_tap.Options()
    options.parseOptions(["--cluster_key", str(tmp_path / "gw-2.key")])  # it is gw-1
    with pytest.raises(usage.UsageError, match="gw-2's key, not gw-1's"):
        gateway_tap.makeService(options)
    options = gateway_tap.Options()
    options.parseOptions(["--cluster", ""])
    assert gateway_tap.makeService(options) is not None
