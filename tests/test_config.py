"""Configuration as data: the sections, the TOML file, the command line made from them."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet import task
from twisted.python import usage

from cmsv6 import config
from cmsv6.plugins.gateway import tap as gateway_tap
from cmsv6.plugins.login import tap as login_tap
from tests.support.process import TWISTD

EXAMPLE = Path(__file__).parents[1] / "config" / "cmsv6.toml"


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.toml"
    path.write_text(text)
    return path


def test_unknown_key_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    """A key the section does not declare is refused with the file, section and key named."""
    path = _file(tmp_path, '[gateway]\njt80 = "tcp:1"\n')
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    assert str(e.value) == f"{path}: [gateway] unknown key 'jt80'"


def test_unknown_key_stops_twistd(tmp_path: Path) -> None:
    """A server given such a file stops with a usage error naming file and key, whichever
    section holds the mistake (one file holds every section)."""
    path = _file(tmp_path, '[web]\ntoken_tll = 5\n')
    with pytest.raises(usage.UsageError, match=re.escape(f"{path}: [web] unknown key 'token_tll'")):
        gateway_tap.Options().parseOptions(["--config", str(path)])


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    """A table no server reads (a misspelt section) is refused, naming file and table."""
    path = _file(tmp_path, '[gatway]\nid = "x"\n')
    with pytest.raises(config.ConfigError, match=re.escape(f"{path}: unknown section [gatway]")):
        config.load(path)


def test_media_section_is_read(tmp_path: Path) -> None:
    """The one file's [media] table is the media server's: typed, defaults for what is left
    out, and the other servers start with it there."""
    path = _file(tmp_path, '[media]\nid = "media-2"\njt1078 = "tcp:7612"\nlinger = 5\n'
                 'public_web = "https://video.example.com/"\n[gateway]\nid = "g"\n')
    loaded = config.load(path)
    assert loaded.gateway.id == "g"
    media = loaded.media
    assert (media.id, media.jt1078, media.linger) == ("media-2", "tcp:7612", 5.0)
    assert isinstance(media.linger, float)
    assert media.public_web == "https://video.example.com"
    assert media.open_timeout == 10.0 and media.login == ()


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("public_web", '"ftp://x"', "an http:// or https:// URL"),
    ("public_web", '"http://"', "an http:// or https:// URL"),
    ("viewer_queue", "10", "at least 1024"),
    ("linger", "-1", "at least 0"),
    ("jt1078", '"tcp:abc"', "server endpoint"),
])  # fmt: skip
def test_media_values_are_checked(tmp_path: Path, key: str, value: str, expected: str) -> None:
    """A [media] value of the wrong kind stops the server naming the file, key and what
    was expected."""
    path = _file(tmp_path, f"[media]\n{key} = {value}\n")
    with pytest.raises(config.ConfigError, match=re.escape(f"[media] {key}: expected")) as e:
        config.load(path)
    assert expected in str(e.value)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("database", "dsn", "5", "a non-empty string"),
        ("gateway", "idle_timeout", '"abc"', "a number of seconds"),
        ("gateway", "idle_timeout", "true", "a number of seconds"),
        ("gateway", "idle_timeout", "0", "a number of seconds (at least"),
        ("gateway", "capacity", "1.5", "an integer of devices"),
        ("gateway", "login", '"tcp:127.0.0.1:6609"', "a list of Twisted client endpoint strings"),
        ("gateway", "login", '["tcp:x"]', "a list of Twisted client endpoint strings"),
        ("gateway", "registration", '"maybe"', "'known' or 'open'"),
        ("gateway", "jt808", '"tcp:abc"', "a Twisted server endpoint string"),
        ("gateway", "public_jt808", '"nohost"', "host:port"),
        ("login", "cluster", '""', "a Twisted server endpoint string"),
        ("login", "web", '"nonsense:1"', "a Twisted server endpoint string"),
        ("web", "token_ttl", '"12h"', "a number of seconds"),
        ("web", "max_body", "-1", "an integer of bytes"),
    ],
)
def test_wrong_type_is_refused(tmp_path: Path, section: str, key: str, value: str,
                               expected: str) -> None:  # fmt: skip
    """A value of the wrong type is refused with the file, section, key and what was expected."""
    path = _file(tmp_path, f"[{section}]\n{key} = {value}\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    message = str(e.value)
    assert message.startswith(f"{path}: [{section}] {key}: expected {expected}"), message


def test_command_line_wins_over_the_file(tmp_path: Path) -> None:
    """Options replace the file's values, converted to the field's type; the rest come from
    the file; the file's values come from it, not the defaults."""
    path = _file(tmp_path, '[database]\ndsn = "file"\n[gateway]\nid = "from-file"\n'
                           'idle_timeout = 30\ncapacity = 7\nlogin = ["tcp:127.0.0.1:1"]\n')
    options = gateway_tap.Options()
    options.parseOptions(["--config", str(path), "--idle_timeout", "1.5", "--dsn", "cli",
                          "--login", "tcp:127.0.0.1:2", "--login", "tcp:127.0.0.1:3"])
    gateway = options.config.gateway
    assert gateway.idle_timeout == 1.5 and isinstance(gateway.idle_timeout, float)
    assert gateway.login == ("tcp:127.0.0.1:2", "tcp:127.0.0.1:3")
    assert (gateway.id, gateway.capacity) == ("from-file", 7)
    assert options.config.database.dsn == "cli"


def test_every_key_is_an_option() -> None:
    """Each server's command line has one option per key of the sections it reads, and
    the typed value lands in its section."""
    for tap, sections in ((gateway_tap, ("database", "gateway")),
                          (login_tap, ("database", "login", "web"))):  # fmt: skip
        for name in sections:
            section = config.SECTIONS[name]
            for key, default, kind, _ in config.fields(section):
                value = _other_value(kind, default)
                options = tap.Options()
                text = [value] if not kind.repeated else value
                args: list[str] = []
                for item in text:
                    args += [f"--{key}", str(item)]
                if key in ("processes", "ports"):  # workers need a key file each, or no cluster
                    args += ["--cluster", ""]
                options.parseOptions(args)
                got = getattr(getattr(options.config, name), key)
                want = tuple(value) if kind.repeated else kind.from_text(str(value))
                assert got == want != default, (tap.__name__, key)


def _other_value(kind: config.Kind, default: Any) -> Any:
    """A valid value different from the default, as the command line gives it."""
    if isinstance(kind, config.Endpoints):
        return ["tcp:127.0.0.1:1", "tcp:127.0.0.1:2"]
    if isinstance(kind, config.Choice):
        return next(v for v in kind.values if v != default)
    if isinstance(kind, config.Number):
        return default + 1
    if isinstance(kind, config.Address):
        return "10.0.0.1:1"
    if isinstance(kind, config.Endpoint):
        return "tcp:host=10.0.0.1:port=1" if kind.client else "tcp:1:interface=127.0.0.1"
    return "something-else"


@pytest.mark.parametrize(("args", "message"), [
    (["--idle_timeout", "abc"], "--idle_timeout: expected a number of seconds"),
    (["--registration", "maybe"], "--registration: expected 'known' or 'open'"),
    (["--login", "tcp:"], "--login: expected a list of Twisted client endpoint strings"),
])  # fmt: skip
def test_bad_option_is_refused_naming_it(args: list[str], message: str) -> None:
    """A bad value on the command line is a usage error naming the option and what was expected."""
    with pytest.raises(usage.UsageError, match=re.escape(message)):
        gateway_tap.Options().parseOptions(args)


def _example_tables() -> dict[str, Any]:
    with open(EXAMPLE, "rb") as f:
        return tomllib.load(f)


def test_example_file_loads() -> None:
    """config/cmsv6.toml is a valid configuration for every server."""
    loaded = config.load(EXAMPLE)
    assert loaded.gateway.login == ("tcp:127.0.0.1:6609",)
    for tap in (gateway_tap, login_tap):
        tap.Options().parseOptions(["--config", str(EXAMPLE)])


def test_example_file_documents_every_field() -> None:
    """Every field of every section is in config/cmsv6.toml, with a comment on its line or
    the line above: adding a setting without documenting it fails here."""
    tables = _example_tables()
    lines = EXAMPLE.read_text().splitlines()
    for name, section in config.SECTIONS.items():
        keys = {f[0] for f in config.fields(section)}
        assert set(tables.get(name, {})) == keys, name
        for key in keys:
            (i,) = [i for i, line in enumerate(lines) if line.startswith(f"{key} =")
                    and _section_of(lines, i) == name]  # fmt: skip
            assert "#" in lines[i] or lines[i - 1].startswith("#"), (name, key)


def _section_of(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        if line.startswith("["):
            return line.strip("[] ")
    return ""


@pytest.mark.parametrize(("server", "sections"), [
    ("gateway", ("database", "gateway")),
    ("login", ("database", "login", "web")),
])  # fmt: skip
def test_twistd_help_lists_every_key(server: str, sections: tuple[str, ...]) -> None:
    """``twistd SERVER --help`` lists --config and every key of the sections it reads."""
    out = subprocess.run([TWISTD, server, "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    assert "--config=" in out
    for name in sections:
        for key, *_ in config.fields(config.SECTIONS[name]):
            assert f"--{key}=" in out, (server, key)


def test_cli_database_options() -> None:
    """The cmsv6 commands that need the database take --config and every [database] key."""
    out = subprocess.run([sys.executable, "-m", "cmsv6.cli", "db", "upgrade", "--help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
    assert "--config" in out
    for key, *_ in config.fields(config.DatabaseConfig):
        assert f"--{key}" in out, key


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # twisted.web.static's import
def test_login_web_section_reaches_the_site(tmp_path: Path) -> None:
    """Every [web] setting given to ``twistd login`` is the one its site uses."""
    web = config.WebConfig(**{key: _other_value(kind, default) if key != "static" else str(tmp_path)
                              for key, default, kind, _ in config.fields(config.WebConfig)})
    site = login_tap.make_web(None, None, task.Clock(), web)  # type: ignore[arg-type]
    root = site.resource
    ws = root.children[b"ws"]._factory
    used = {
        "static": root.path,
        "token_ttl": site.api.auth.ttl,
        "max_body": site.requestFactory.max_body,
        "command_timeout": site.api.command_timeout,
        "max_page": site.api.max_page,
        "login_max_failures": site.api.auth.limiter.max_failures,
        "login_window": site.api.auth.limiter.window,
        "login_lockout": site.api.auth.limiter.lockout,
        "login_name_failures": site.api.auth.limiter.name_failures,
        "device_control_role": site.api.control_role,
        "poll_interval": site.hub.interval,
        "ws_queue": ws.queue_size,
        "ws_token_recheck": site.hub.recheck_tokens,
        "max_connections": site.max_connections,
        "header_timeout": site.header_timeout,
        "ws_max_per_user": ws.max_per_user,
        "max_json_depth": site.requestFactory.max_json_depth,
        "media_dir": str(site.api.media_dir),
        "tiles": site.client_config.web.tiles,
        "tiles_attribution": site.client_config.web.tiles_attribution,
    }
    assert ws.max_json_depth == web.max_json_depth
    assert used == attrs.asdict(web)


def test_demo_configuration_loads(tmp_path: Path) -> None:
    """The file ``cmsv6 demo`` writes is valid for both servers and points them at each other."""
    from cmsv6 import demo

    path = _file(tmp_path, demo.config_text(tmp_path, demo.ports(100)))
    loaded = config.load(path)
    assert loaded.gateway.login == (f"tcp:127.0.0.1:{demo.PORTS['login_cluster'] + 100}",)
    assert loaded.login.public_jt808 == f"127.0.0.1:{demo.PORTS['login_jt808'] + 100}"
    assert loaded.gateway.media_dir == str(tmp_path / "media")
