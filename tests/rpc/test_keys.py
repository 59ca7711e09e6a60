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
    with pytest.raises(usage.UsageError, match="gateway gw-2's key, not gateway gw-1's"):
        gateway_tap.makeService(options)
    options = gateway_tap.Options()
    options.parseOptions(["--cluster", ""])
    assert gateway_tap.makeService(options) is not None


def test_media_keys_prove_the_role(tmp_path: Path) -> None:
    """``init --media`` and ``key --media`` write media servers' keys: "cmsv6-cluster media
    ID HEX", the master's key for the identity "media ID", which is not the gateway key of
    that id; each proves its role only."""
    assert main(["cluster", "init", str(tmp_path / "k"), "--server", "gw-1", "--media", "m-1"]) == 0
    master = keys.load(tmp_path / "k" / "cluster.key")
    media = keys.load(tmp_path / "k" / "m-1.key")
    assert (tmp_path / "k" / "m-1.key").read_text().startswith("cmsv6-cluster media m-1 ")
    assert (media.server_id, media.role, media.identity) == ("m-1", keys.MEDIA, "media m-1")
    assert media.key == master.key_for("media m-1") != master.key_for("m-1")
    assert media.key_for("media m-1") == media.key and media.key_for("m-1") is None
    gateway = keys.load(tmp_path / "k" / "gw-1.key")
    assert gateway.key_for("gw-1") == gateway.key and gateway.key_for("media gw-1") is None
    out = tmp_path / "m-2.key"
    assert main(["cluster", "key", "m-2", "--media", "--master", str(tmp_path / "k" / "cluster.key"),
                 "--out", str(out)]) == 0  # fmt: skip
    assert keys.load(out).key == master.key_for("media m-2")
    assert keys.role_of("media m-2") == ("media", "m-2") and keys.role_of("gw-1") == ("gateway", "gw-1")


def test_gateway_key_files_from_before_roles_still_work(tmp_path: Path) -> None:
    """A gateway's key file written before roles existed (HMAC(master, "cmsv6 server " +
    id), "cmsv6-cluster server ID HEX") is still that gateway's key, and the gateway starts
    with it; a media server refuses it, saying how to make a media key."""
    import hashlib
    import hmac

    from cmsv6.plugins.gateway import tap as gateway_tap
    from cmsv6.plugins.media import tap as media_tap

    main(["cluster", "init", str(tmp_path)])
    master = keys.load(tmp_path / "cluster.key")
    old = hmac.new(master.key, b"cmsv6 server gw-1", hashlib.sha256).hexdigest()
    path = tmp_path / "gw-1.key"
    path.write_text(f"cmsv6-cluster server gw-1 {old}\n")
    path.chmod(0o600)
    assert keys.load(path).key_for("gw-1") == master.key_for("gw-1") == bytes.fromhex(old)
    options = gateway_tap.Options()
    options.parseOptions(["--id", "gw-1", "--cluster_key", str(path), "--cluster", ""])
    assert gateway_tap.makeService(options) is not None
    with pytest.raises(usage.UsageError, match="gateway gw-1's key, not media server gw-1's.*--media"):
        media_tap.media_key(str(path), "gw-1")
