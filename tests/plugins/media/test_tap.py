"""``twistd media`` options and service tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet import task
from twisted.python import usage

from cmsv6.plugins.media import tap
from cmsv6.plugins.media.opener import NoOpener
from cmsv6.rpc import keys


def test_options_are_typed() -> None:
    """--linger and --max_viewers arrive as a float and an int; --login repeats."""
    options = tap.Options()
    options.parseOptions(["--linger", "5", "--max_viewers", "12", "--login", "tcp:127.0.0.1:1",
                          "--login", "tcp:127.0.0.1:2"])  # fmt: skip
    media = options.config.media
    assert (media.linger, media.max_viewers) == (5.0, 12) and isinstance(media.linger, float)
    assert media.login == ("tcp:127.0.0.1:1", "tcp:127.0.0.1:2")


@pytest.mark.parametrize("args", [
    ["--linger", "soon"], ["--viewer_queue", "10"], ["--public_web", "ws://x"],
    ["--jt1078", "tcp:abc"], ["--id", ""], ["--public_jt1078", "nohost"],
])  # fmt: skip
def test_bad_options_are_refused(args: list[str]) -> None:
    """Nonsense settings stop twistd with a usage error."""
    with pytest.raises(usage.UsageError):
        tap.Options().parseOptions(args)


def test_a_key_is_required_and_must_be_this_servers(tmp_path: Path) -> None:
    """Without a cluster key no token could be checked: the server refuses to start,
    saying how to make one; another server's key is refused naming it, and so is a
    gateway's key of its own id (a key proves the role too)."""
    options = tap.Options()
    options.parseOptions([])
    with pytest.raises(usage.UsageError, match="cmsv6 cluster key media-1"):
        tap.makeService(options, task.Clock())
    keys.ensure(tmp_path, "gw-1", media=["media-2"])
    options = tap.Options()
    options.parseOptions(["--cluster_key", str(tmp_path / "media-2.key")])
    with pytest.raises(usage.UsageError, match="media server media-2's key, not media server media-1's"):
        tap.makeService(options, task.Clock())
    options = tap.Options()
    options.parseOptions(["--id", "gw-1", "--cluster_key", str(tmp_path / "gw-1.key")])
    with pytest.raises(usage.UsageError, match="gateway gw-1's key, not media server gw-1's.*--media"):
        tap.makeService(options, task.Clock())


def test_standalone_service_tree(tmp_path: Path) -> None:
    """Standalone: the server has no opener to ask devices with, and listens for devices
    and viewers (and metrics when asked)."""
    keys.ensure(tmp_path, media=["media-1"])
    options = tap.Options()
    options.parseOptions(["--cluster_key", str(tmp_path / "media-1.key"),
                          "--metrics", "tcp:0:interface=127.0.0.1"])  # fmt: skip
    top = tap.makeService(options, task.Clock())
    assert isinstance(top.media.opener, NoOpener)
    assert top.media.config is options.config.media
    assert len(list(top)) == 4  # the media server, jt1078, web, metrics
