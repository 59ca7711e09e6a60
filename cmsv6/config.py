"""Configuration: one TOML file (every server reads its own section and ``[database]``),
with every key overridable on the command line."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

#: Defaults per section (DESIGN.md); a key not here is refused, so typos are caught.
DEFAULTS: dict[str, dict[str, Any]] = {
    "database": {"dsn": "host=127.0.0.1 port=5432 dbname=cmsv6 user=cmsv6"},
    "gateway": {
        "id": "gw-1",
        "jt808": "tcp:7611",
        "public_jt808": "127.0.0.1:7611",
        "cluster": "tcp:7613:interface=127.0.0.1",
        "registration": "known",
        "login": [],
        "capacity": 10000,  # devices login sends here at most
        "public_cluster": "",  # where login reaches "cluster" ("" = derived from it)
        "idle_timeout": 180.0,
        "media_dir": "var/media",
        "metrics": "",
    },
    "login": {
        "jt808": "tcp:6608",
        "cluster": "tcp:6609",
        "web": "tcp:8080",
        "public_jt808": "127.0.0.1:6608",
        "registration": "known",
        "metrics": "",
    },
    "media": {
        "id": "media-1",
        "jt1078": "tcp:7612",
        "public_jt1078": "127.0.0.1:7612",
        "web": "tcp:8081",
        "public_web": "http://127.0.0.1:8081",
        "login": [],
    },
}


class ConfigError(Exception):
    pass


def load(path: str | Path | None, section: str) -> dict[str, Any]:
    """``[section]`` and ``[database]`` of the TOML file, over the defaults.

    Returns ``{"database": {...}, section: {...}}``.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None
    out = {}
    for name in ("database", section):
        merged = dict(DEFAULTS[name])
        given = data.get(name, {})
        if not isinstance(given, dict):
            raise ConfigError(f"[{name}] must be a table")
        unknown = set(given) - set(merged)
        if unknown:
            raise ConfigError(f"[{name}]: unknown keys {', '.join(sorted(unknown))}")
        merged.update(given)
        out[name] = merged
    return out
