"""Configuration as data: one frozen section per TOML table, and the one place that turns
the sections into command-line options.

A TOML file may hold every section (docs/configuration.md); each server reads
its own and ``[database]`` (login also reads ``[web]``, the settings of its Open API and
web client; the media server reads ``[media]`` only: viewing tokens stand in for the database). Every key can also be given on the command line under its own name
(``--jt808 tcp:7611``), which wins over the file. Values are converted and checked here,
once: a key the section does not declare is refused with the file and key named, a value
of the wrong type with the file, section, key and what was expected.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import attrs
from twisted.internet import endpoints
from twisted.python import usage

from cmsv6.address import split_address


class ConfigError(Exception):
    """A configuration that cannot be used; the message names where and why."""


# -- kinds: what a value may be, from TOML and from the command line ------------------------


class Kind:
    """How one setting's value is checked and converted."""

    #: What a valid value looks like, for error messages.
    expected = "a string"
    #: Given on the command line repeatedly, each time adding one item.
    repeated = False

    def from_toml(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError
        return self.from_text(value)

    def from_text(self, text: Any) -> Any:
        return text


class Text(Kind):
    def __init__(self, empty: bool = True) -> None:
        self.empty = empty
        self.expected = "a string" if empty else "a non-empty string"

    def from_text(self, text: Any) -> Any:
        if not self.empty and not text:
            raise ValueError
        return text


class _NoReactor:
    """Endpoint strings are parsed without a reactor: nothing listens or connects here."""


class Endpoint(Kind):
    """A Twisted endpoint string (server: where to listen; client: where to connect)."""

    def __init__(self, client: bool = False, optional: bool = False) -> None:
        self.client = client
        self.optional = optional
        example = "'tcp:127.0.0.1:6609'" if client else "'tcp:7611'"
        self.expected = (f"a Twisted {'client' if client else 'server'} endpoint string such"
                         f" as {example}{' or empty' if optional else ''}")  # fmt: skip

    def from_text(self, text: Any) -> Any:
        if not text:
            if self.optional:
                return ""
            raise ValueError
        parse = endpoints.clientFromString if self.client else endpoints.serverFromString
        try:
            parse(_NoReactor(), text)
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad endpoint string
            raise ValueError(str(e)) from None
        return text


class Endpoints(Kind):
    """A list of client endpoint strings; on the command line one per option, '' for none."""

    repeated = True
    expected = "a list of Twisted client endpoint strings such as ['tcp:127.0.0.1:6609']"

    def __init__(self) -> None:
        self.item = Endpoint(client=True)

    def from_toml(self, value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError
        return self.from_text(value)

    def from_text(self, text: Any) -> Any:
        return tuple(self.item.from_text(v) for v in text if v)


class Address(Kind):
    expected = "host:port such as '127.0.0.1:7611'"

    def from_text(self, text: Any) -> Any:
        split_address(text)
        return text


class Url(Kind):
    """An ``http://`` or ``https://`` base URL (what browsers are sent to)."""

    expected = "an http:// or https:// URL such as 'http://127.0.0.1:8081'"

    def from_text(self, text: Any) -> Any:
        scheme, sep, rest = text.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or rest.startswith("/"):
            raise ValueError
        return text.rstrip("/")


class Number(Kind):
    def __init__(self, of: type, minimum: float, unit: str) -> None:
        self.type = of
        self.minimum = minimum
        what = "an integer" if of is int else "a number"
        self.expected = f"{what} of {unit} (at least {minimum:g})"

    def from_toml(self, value: Any) -> Any:
        allowed = (int,) if self.type is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise ValueError
        return self._check(self.type(value))

    def from_text(self, text: Any) -> Any:
        return self._check(self.type(text))

    def _check(self, value: Any) -> Any:
        if value != value or value < self.minimum or value == float("inf"):
            raise ValueError
        return value


class Choice(Kind):
    def __init__(self, *values: str) -> None:
        self.values = values
        self.expected = " or ".join(repr(v) for v in values)

    def from_text(self, text: Any) -> Any:
        if text not in self.values:
            raise ValueError
        return text


_META = "cmsv6.config"


def setting(default: Any, kind: Kind, help: str) -> Any:  # noqa: A002
    """A section's field: its default, how its values are checked, and its help line."""
    return attrs.field(default=default, metadata={_META: (kind, help)})


def fields(section: type) -> list[tuple[str, Any, Kind, str]]:
    """(name, default, kind, help) of every setting of a section class."""
    return [(f.name, f.default, *f.metadata[_META]) for f in attrs.fields(section)]


# -- the sections ---------------------------------------------------------------------------

_SECONDS = "seconds"


@attrs.frozen
class DatabaseConfig:
    """``[database]``: read by every server and by the ``cmsv6`` commands that need it."""

    dsn: str = setting("host=127.0.0.1 port=5432 dbname=cmsv6 user=cmsv6", Text(empty=False),
                       "PostgreSQL DSN (libpq; multi-host allowed)")  # fmt: skip
    retention_days: int = setting(180, Number(int, 0, "days"),
                                  "days of positions kept (whole days dropped by the active login"
                                  " server and 'cmsv6 db maintain'); 0 keeps them all")


@attrs.frozen
class DevicePortConfig:
    """What a JT/T 808 device port admits (login's and the gateway's alike): registration,
    and the bounds on peers that have not authenticated."""

    registration: str = setting("known", Choice("known", "open"),
                                "'open' (unknown terminals may register) or 'known' (only added devices)")
    reregister: str = setting("never", Choice("never", "terminal_id"),
                              "a phone that already has an auth code may register again: 'never'"
                              " (until 'cmsv6 device reset-auth PHONE') or 'terminal_id' (also when"
                              " its terminal id is the one on record)")  # fmt: skip
    register_window: float = setting(60.0, Number(float, 0.001, _SECONDS),
                                     "seconds over which registrations are counted")
    register_per_address: int = setting(20, Number(int, 1, "registrations"),
                                        "registrations from one address per window (more: closed)")
    register_per_phone: int = setting(3, Number(int, 1, "registrations"),
                                      "registrations of one phone per window (more: closed)")
    open_per_hour: int = setting(60, Number(int, 0, "devices"),
                                 "devices open registration adds per hour at most")
    open_total: int = setting(1000, Number(int, 0, "devices"),
                              "devices open registration adds in all at most")
    jt808_max_connections: int = setting(20_000, Number(int, 1, "connections"),
                                         "open device connections at most (more: closed at once)")
    jt808_max_per_address: int = setting(500, Number(int, 1, "connections"),
                                         "open device connections from one address at most (raise"
                                         " it for fleets behind one NAT or private APN)")
    auth_deadline: float = setting(30.0, Number(float, 0.001, _SECONDS),
                                   "seconds a device connection has to authenticate before it"
                                   " is closed")
    max_frames_before_auth: int = setting(8, Number(int, 1, "frames"),
                                          "frames a device connection may send before it"
                                          " authenticates (the next one closes it; no"
                                          " sub-packages are taken before)")


@attrs.frozen
class LoginConfig(DevicePortConfig):
    """``[login]``: ``twistd login``, the directory and front door."""

    jt808: str = setting("tcp:6608", Endpoint(), "endpoint for devices' first contact (assignment)")
    cluster: str = setting("tcp:6609:interface=127.0.0.1", Endpoint(),
                           "AMP endpoint for gateways and media servers")
    cluster_key: str = setting("", Text(), "the cluster master key file ('cmsv6 cluster init');"
                               " required: every cluster link proves a key")
    web: str = setting("tcp:8080", Endpoint(optional=True),
                       "endpoint for the Open API, client WebSocket and web client ('' = none)")
    public_jt808: str = setting("127.0.0.1:6608", Address(),
                                "address devices are told to fall back to (host:port)")
    metrics: str = setting("", Endpoint(optional=True),
                           "endpoint serving Prometheus /metrics ('' = none)")


#: ``[web] static``'s default: the web client installed with cmsv6 (``cmsv6/web/client``).
#: A directory of that name is given as ``./packaged``.
PACKAGED_CLIENT = "packaged"


@attrs.frozen
class WebConfig:
    """``[web]``: the Open API, client WebSocket and web client on login's ``web`` endpoint."""

    static: str = setting(PACKAGED_CLIENT, Text(),
                          "directory of the web client served at / ('packaged': the one"
                          " installed with cmsv6; '' = none)")
    tiles: str = setting("https://tile.openstreetmap.org/{z}/{x}/{y}.png", Text(),
                         "map tile URL template the web client loads ({z}, {x}, {y}, optional"
                         " {s}); '' = no tiles, positions drawn on a plain background")
    tiles_attribution: str = setting("© OpenStreetMap contributors", Text(),
                                     "attribution shown on the web client's map for its tiles"
                                     " (HTML, as Leaflet takes it)")
    token_ttl: float = setting(12 * 3600.0, Number(float, 1, _SECONDS), "seconds a login token lives")
    max_body: int = setting(64 * 1024, Number(int, 1, "bytes"), "largest request body")
    command_timeout: float = setting(10.0, Number(float, 0.001, _SECONDS),
                                     "default seconds a device has to answer a command")
    max_page: int = setting(1000, Number(int, 1, "items"), "largest page of positions or alarms")
    login_max_failures: int = setting(5, Number(int, 1, "failures"),
                                      "failed logins for a name from one address before each"
                                      " further one waits (1 s, doubling)")
    login_window: float = setting(300.0, Number(float, 0.001, _SECONDS),
                                  "seconds after a name's last failure from an address when"
                                  " that address's count is forgotten")
    login_lockout: float = setting(60.0, Number(float, 0, _SECONDS),
                                   "longest wait between attempts for a name from one address")
    login_name_failures: int = setting(100, Number(int, 1, "failures"),
                                       "failed logins for a name from all addresses in an hour"
                                       " before it is refused for the rest of that hour"
                                       " (ASVS 2.2.1: at most 100)")
    poll_interval: float = setting(0.5, Number(float, 0.001, _SECONDS),
                                   "seconds between the WebSocket's polls for positions and alarms")
    ws_queue: int = setting(1000, Number(int, 1, "messages"),
                            "messages queued for a slow WebSocket client; past it the oldest"
                            " are dropped and the client is told how many")
    ws_token_recheck: float = setting(60.0, Number(float, 0.001, _SECONDS),
                                      "seconds between checks that open sockets' tokens are valid")
    max_connections: int = setting(2000, Number(int, 1, "connections"),
                                   "open HTTP and WebSocket connections at most (more: closed at once)")
    header_timeout: float = setting(20.0, Number(float, 0.001, _SECONDS),
                                    "seconds a connection has to send a request's headers, from"
                                    " its opening or its previous response (slowloris)")
    ws_max_per_user: int = setting(10, Number(int, 1, "sockets"),
                                   "open client WebSockets per user (more: closed with 4003)")
    max_json_depth: int = setting(32, Number(int, 1, "levels"),
                                  "deepest nesting of arrays and objects in a JSON body or"
                                  " WebSocket message (deeper: 400 / close 4002)")
    media_dir: str = setting("var/media", Text(empty=False),
                             "the gateways' media_dir as this server sees it: files in it are"
                             " served by GET /api/v1/media/{id}, nothing outside it")
    device_control_role: str = setting("admin", Choice("admin", "operator"),
                                       "least role that may send commands that can take a device"
                                       " off the platform: 0x8103 server/APN parameters, 0x8105,"
                                       " 0x8108 ('admin' or 'operator')")


@attrs.frozen
class GatewayConfig(DevicePortConfig):
    """``[gateway]``: ``twistd gateway``, where devices live."""

    id: str = setting("gw-1", Text(empty=False), "gateway id (unique in the cluster)")
    jt808: str = setting("tcp:7611:backlog=4096", Endpoint(),
                         "endpoint for devices (a backlog that holds a reconnect storm)")
    public_jt808: str = setting("127.0.0.1:7611", Address(), "address login gives devices (host:port)")
    cluster: str = setting("tcp:7613:interface=127.0.0.1", Endpoint(optional=True),
                           "AMP endpoint for commands from the cluster ('' = none)")
    login: tuple[str, ...] = setting((), Endpoints(),
                                     "login server AMP endpoint (repeat for active and standby;"
                                     " '' = standalone)")  # fmt: skip
    cluster_key: str = setting("", Text(), "this gateway's cluster key file ('cmsv6 cluster key ID');"
                               " required with a cluster endpoint or login servers")
    capacity: int = setting(10000, Number(int, 1, "devices"), "devices login sends here at most")
    public_cluster: str = setting("", Endpoint(client=True, optional=True),
                                  "client endpoint where login reaches 'cluster' ('' = derived from it)")
    idle_timeout: float = setting(180.0, Number(float, 0.001, _SECONDS),
                                  "seconds without a frame from an authenticated device before"
                                  " it is dropped")
    max_handshakes: int = setting(500, Number(int, 1, "connections"),
                                  "device connections between accept and authentication at most;"
                                  " past it the port stops accepting and the rest wait in the"
                                  " listen backlog (a reconnect storm)")
    media_dir: str = setting("var/media", Text(empty=False), "where uploaded photos and files are written")
    metrics: str = setting("", Endpoint(optional=True),
                           "endpoint serving Prometheus /metrics ('' = none)")
    processes: int = setting(1, Number(int, 0, "processes"),
                             "gateway processes on this host (0 = one per core), each a gateway"
                             " of its own, ID.1 ... ID.N (docs/operations.md)")
    ports: str = setting("shared", Choice("shared", "each"),
                         "with processes: 'shared' (every worker on the jt808 port,"
                         " SO_REUSEPORT) or 'each' (worker i on the jt808 and public_jt808"
                         " ports + i - 1)")


@attrs.frozen
class MediaConfig:
    """``[media]``: ``twistd media``, where video lives (no database: the viewing tokens
    login signs say what a viewer may watch)."""

    id: str = setting("media-1", Text(empty=False), "media server id (unique in the cluster)")
    jt1078: str = setting("tcp:7612:backlog=1024", Endpoint(),
                         "endpoint for devices' JT/T 1078 streams")
    public_jt1078: str = setting("127.0.0.1:7612", Address(),
                                 "address devices are told to stream to in 0x9101 (host:port)")
    web: str = setting("tcp:8081", Endpoint(), "endpoint for viewers: WS-FLV and HTTP-FLV")
    public_web: str = setting("http://127.0.0.1:8081", Url(),
                              "base URL where browsers and players reach 'web'")
    login: tuple[str, ...] = setting((), Endpoints(),
                                     "login server AMP endpoint (repeat for active and standby;"
                                     " '' = standalone: no device can be asked to stream)")
    cluster_key: str = setting("", Text(), "this media server's cluster key file ('cmsv6 cluster"
                               " key ID --media'); required: viewing tokens are checked with a"
                               " key derived from it")  # fmt: skip
    metrics: str = setting("", Endpoint(optional=True),
                           "endpoint serving Prometheus /metrics ('' = none)")
    linger: float = setting(30.0, Number(float, 0, _SECONDS),
                            "seconds a device stream is kept after its last viewer leaves"
                            " (a viewer coming back starts at once), then closed (0x9102)")
    open_timeout: float = setting(10.0, Number(float, 0.001, _SECONDS),
                                  "seconds for each step of opening a stream: login's answer to"
                                  " the request, then the device's connection; also a device"
                                  " connection's time to name its SIM, and its longest silence")
    jt1078_max_connections: int = setting(1000, Number(int, 1, "connections"),
                                          "open device stream connections at most (more: closed"
                                          " at once)")
    max_viewers: int = setting(1000, Number(int, 1, "viewers"),
                               "open viewer connections (WS-FLV and HTTP-FLV) at most (more:"
                               " refused)")
    viewer_queue: int = setting(2 * 1024 * 1024, Number(int, 1024, "bytes"),
                                "bytes of video held for a viewer whose connection is full; past"
                                " it the viewer skips to the next keyframe (also the largest GOP"
                                " kept for viewers who join)")
    max_frame: int = setting(1024 * 1024, Number(int, 1024, "bytes"),
                             "largest video or audio frame taken from a device (larger: dropped)")


#: Every table a file may hold, by name.
SECTIONS: dict[str, type] = {
    "database": DatabaseConfig,
    "login": LoginConfig,
    "web": WebConfig,
    "gateway": GatewayConfig,
    "media": MediaConfig,
}
#: Tables of servers not built yet: accepted, not read (none left).
RESERVED: frozenset[str] = frozenset()


@attrs.frozen
class Config:
    """Every section, typed."""

    database: DatabaseConfig = DatabaseConfig()
    login: LoginConfig = LoginConfig()
    web: WebConfig = WebConfig()
    gateway: GatewayConfig = GatewayConfig()
    media: MediaConfig = MediaConfig()


# -- loading --------------------------------------------------------------------------------


def _convert(kind: Kind, value: Any, where: str, from_toml: bool) -> Any:
    try:
        return kind.from_toml(value) if from_toml else kind.from_text(value)
    except (ValueError, TypeError) as e:
        detail = f" ({e})" if str(e) and isinstance(kind, Endpoint) else ""
        raise ConfigError(f"{where}: expected {kind.expected}, got {value!r}{detail}") from None


def read(path: str | Path) -> dict[str, Any]:
    """The TOML file's tables, unchecked; ConfigError if it cannot be read or parsed."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None


def from_tables(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """A ``Config`` from parsed TOML tables; every known section is checked (one file holds
    them all, so a mistake in any is reported by whichever server reads it first)."""
    sections = {}
    for name, table in data.items():
        if name in RESERVED:
            continue
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{name}]"
                              f" (known: {', '.join(sorted(SECTIONS))})")  # fmt: skip
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        known = {f[0]: f[2] for f in fields(SECTIONS[name])}
        values = {}
        for key, value in table.items():
            if key not in known:
                raise ConfigError(f"{source}: [{name}] unknown key {key!r}")
            values[key] = _convert(known[key], value, f"{source}: [{name}] {key}", from_toml=True)
        sections[name] = SECTIONS[name](**values)
    return Config(**sections)


def override(config: Config, given: Mapping[str, Mapping[str, Any]]) -> Config:
    """``config`` with command-line values (strings, or lists of strings for repeated
    options) replacing the file's: ``{section: {key: text}}``."""
    changes = {}
    for name, values in given.items():
        kinds = {f[0]: f[2] for f in fields(SECTIONS[name])}
        typed = {key: _convert(kinds[key], value, f"--{key}", from_toml=False)
                 for key, value in values.items()}  # fmt: skip
        changes[name] = attrs.evolve(getattr(config, name), **typed)
    return attrs.evolve(config, **changes)


def load(path: str | Path | None, given: Mapping[str, Mapping[str, Any]] | None = None) -> Config:
    """The file's configuration (defaults without one), the command line's values over it."""
    config = Config() if path is None else from_tables(read(path), str(path))
    return override(config, given or {})


# -- command lines --------------------------------------------------------------------------


def _options(sections: Sequence[str]) -> list[tuple[str, str, Any, Kind, str]]:
    """(section, key, default, kind, help) of every key of ``sections``; a key may appear
    in only one of them, since the command line names keys without their section."""
    out, seen = [], {}
    for name in sections:
        for key, default, kind, text in fields(SECTIONS[name]):
            if key in seen or key == "config":
                raise TypeError(f"--{key} is taken ([{seen.get(key, 'config')}]) before [{name}]")
            seen[key] = name
            out.append((name, key, default, kind, text))
    return out


def _help(name: str, default: Any, kind: Kind, text: str) -> str:
    shown = list(default) if isinstance(default, tuple) else default
    return f"[{name}] {text} (default {shown!r})"


class ServerOptions(usage.Options):
    """``usage.Options`` for a server: ``--config FILE`` and one option per key of its
    ``sections``; after parsing, ``self.config`` is the typed ``Config``.

    A subclass sets ``sections`` (the tables it reads) and gets its options from them."""

    sections: ClassVar[tuple[str, ...]] = ()
    config: Config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        tables = " and ".join(f"[{s}]" for s in cls.sections)
        params: list[list[Any]] = [["config", "c", None, f"TOML configuration file (sections {tables})"]]
        for name, key, default, kind, text in _options(cls.sections):
            if kind.repeated:
                setattr(cls, f"opt_{key}", _repeated(key, _help(name, default, kind, text)))
            else:
                params.append([key, None, None, _help(name, default, kind, text)])
        cls.optParameters = params

    def postOptions(self) -> None:  # noqa: N802
        given: dict[str, dict[str, Any]] = {}
        for name, key, *_ in _options(self.sections):
            if self.get(key) is not None:
                given.setdefault(name, {})[key] = self[key]
        try:
            self.config = load(self["config"], given)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def _repeated(key: str, doc: str) -> Any:
    def opt(self: usage.Options, value: str) -> None:
        self[key] = (self.get(key) or []) + [value]

    opt.__doc__ = doc
    return opt


def add_arguments(parser: argparse.ArgumentParser, sections: Sequence[str]) -> None:
    """``--config FILE`` and one argparse option per key of ``sections``."""
    tables = " and ".join(f"[{s}]" for s in sections)
    parser.add_argument("--config", help=f"TOML configuration file (sections {tables})")
    for name, key, default, kind, text in _options(sections):
        action = "append" if kind.repeated else "store"
        parser.add_argument(f"--{key}", action=action, help=_help(name, default, kind, text))


#: The file ``cmsv6 demo`` writes its configuration to, in its data directory (``--var``:
#: ``$CMSV6_VAR``, else ``var`` in the directory it runs in).
DEMO_CONFIG = "demo.toml"


def demo_config(directory: str | Path = ".") -> Path | None:
    """The configuration ``cmsv6 demo`` run from ``directory`` wrote, if there is one: the
    ``cmsv6`` commands use it when given neither ``--config`` nor the database's options,
    so that they reach the demo's database when run where the demo runs."""
    path = Path(directory) / os.environ.get("CMSV6_VAR", "var") / DEMO_CONFIG
    return path if path.is_file() else None


def from_arguments(args: argparse.Namespace, sections: Sequence[str]) -> Config:
    """The ``Config`` of a command whose parser had ``add_arguments(parser, sections)``."""
    given: dict[str, dict[str, Any]] = {}
    for name, key, *_ in _options(sections):
        if getattr(args, key, None) is not None:
            given.setdefault(name, {})[key] = getattr(args, key)
    return load(args.config, given)
