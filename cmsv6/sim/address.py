"""Server addresses: Twisted client endpoint strings ⇄ the host and port of the JT/T 808
parameters 0x0013 (main server), 0x0017 (backup server) and 0x0018 (TCP port)."""

from __future__ import annotations

from cmsv6.address import escape, split_endpoint

#: Seconds a TCP connect may take, in endpoints built from 0x8103 parameters.
CONNECT_TIMEOUT = 10


def tcp_endpoint(host: str, port: int, timeout: int = CONNECT_TIMEOUT) -> str:
    """The client endpoint string for a host (name, IPv4 or IPv6) and TCP port."""
    return f"tcp:host={escape(host)}:port={port}:timeout={timeout}"


def host_port(description: str) -> tuple[str, int] | None:
    """The host and port of a ``tcp:`` client endpoint string, None for other kinds."""
    fields = split_endpoint(description)
    if fields[0] not in ("tcp", "tcp4", "tcp6") or len(fields) < 2:
        return None
    positional = [f for f in fields[1:] if "=" not in f]
    named = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    host = named.get("host", positional[0] if positional else None)
    port = named.get("port", positional[1] if len(positional) > 1 else None)
    if not host or port is None:
        return None
    try:
        return host, int(port)
    except ValueError:
        return None


def parse_server(value: str, default_port: int | None) -> tuple[str, int | None] | None:
    """A 0x0013/0x0017 value: a host, or (JT/T 808-2019) ``host:port``, several separated by
    ';' (the first is taken). None when it names no host."""
    first = value.split(";", 1)[0].strip()
    if not first:
        return None
    if first.count(":") == 1:
        host, _, port = first.partition(":")
        if port.isdigit() and host:
            return host, int(port)
    if first.startswith("[") and "]:" in first:  # [v6]:port
        host, _, port = first[1:].partition("]:")
        if port.isdigit():
            return host, int(port)
    return first.strip("[]"), default_port
