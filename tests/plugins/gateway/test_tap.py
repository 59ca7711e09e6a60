"""``twistd gateway`` options."""

from __future__ import annotations

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
