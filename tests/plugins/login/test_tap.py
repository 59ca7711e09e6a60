"""``twistd login`` options, the web fallback, and the gateway's ``--login`` option."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.python import usage
from twisted.web.test.requesthelper import DummyRequest

from cmsv6.plugins.gateway import tap as gateway_tap
from cmsv6.plugins.login import tap


def test_command_line_wins_over_the_file(tmp_path: Any) -> None:
    """Keys from the command line replace the file's; the rest come from the file."""
    conf = tmp_path / "c.toml"
    conf.write_text('[login]\njt808 = "tcp:1"\nregistration = "open"\n[database]\ndsn = "x"\n')
    options = tap.Options()
    options.parseOptions(["--config", str(conf), "--jt808", "tcp:2", "--web", ""])
    login = options.settings["login"]
    assert (login["jt808"], login["registration"], login["web"]) == ("tcp:2", "open", "")
    assert options.settings["database"]["dsn"] == "x"


@pytest.mark.parametrize("args", [["--registration", "maybe"], ["--public_jt808", "nohost"]])
def test_bad_options_are_refused(args: list[str]) -> None:
    """Nonsense settings stop twistd with a usage error."""
    with pytest.raises(usage.UsageError):
        tap.Options().parseOptions(args)


def test_unavailable_web_answers_503() -> None:
    """Without a web front end every request is answered 503 with a JSON error."""
    request = DummyRequest([b"api"])
    body = tap._Unavailable().render(request)
    assert request.responseCode == 503 and b'"unavailable"' in body


def test_gateway_login_option_repeats() -> None:
    """--login may be given for the active and the standby; '' means standalone."""
    options = gateway_tap.Options()
    options.parseOptions(["--login", "tcp:127.0.0.1:1", "--login", "tcp:127.0.0.1:2"])
    assert options.settings["gateway"]["login"] == ["tcp:127.0.0.1:1", "tcp:127.0.0.1:2"]
    options = gateway_tap.Options()
    options.parseOptions(["--login", ""])
    assert options.settings["gateway"]["login"] == []
