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
