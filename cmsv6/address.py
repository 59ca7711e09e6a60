"""Twisted endpoint strings: splitting them into fields and escaping values for them."""

from __future__ import annotations


def escape(value: str) -> str:
    """A value as it must appear inside an endpoint string."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def split_endpoint(description: str) -> list[str]:
    """Colon-separated fields, with backslash escapes as in Twisted's endpoint strings."""
    fields, current, escaped = [], [], False
    for ch in description:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) → (host, port); ValueError if it is not one."""
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host, int(port)


def join_address(host: str, port: int) -> str:
    """(host, port) → ``host:port`` (``[v6]:port`` for IPv6): ``split_address``'s inverse."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
