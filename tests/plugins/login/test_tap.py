"""``twistd login`` options and the web fallback."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.python import usage
from twisted.web.test.requesthelper import DummyRequest

from cmsv6.plugins.login import tap


def test_command_line_wins_over_the_file(tmp_path: Any) -> None:
    """Keys from the command line replace the file's; the rest come from the file."""
    conf = tmp_path / "c.toml"
    conf.write_text('[login]\njt808 = "tcp:1"\nregistration = "open"\n[database]\ndsn = "x"\n')
    options = tap.Options()
    options.parseOptions(["--config", str(conf), "--jt808", "tcp:2", "--web", ""])
    login = options.config.login
    assert (login.jt808, login.registration, login.web) == ("tcp:2", "open", "")
    assert options.config.database.dsn == "x"


@pytest.mark.parametrize("args", [["--registration", "maybe"], ["--public_jt808", "nohost"],
                                  ["--jt808", ""], ["--cluster", ""], ["--token_ttl", "0"]])
def test_bad_options_are_refused(args: list[str]) -> None:
    """Nonsense settings stop twistd with a usage error."""
    with pytest.raises(usage.UsageError):
        tap.Options().parseOptions(args)


def test_unavailable_web_answers_503() -> None:
    """Without a web front end every request is answered 503 with a JSON error."""
    request = DummyRequest([b"api"])
    body = tap._Unavailable().render(request)
    assert request.responseCode == 503 and b'"unavailable"' in body

