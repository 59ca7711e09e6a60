"""Decoded messages as JSON-ready values (the shape ``cmsv6 decode`` and the API print)."""

from __future__ import annotations

import enum
from datetime import date, time, timedelta
from typing import Any

import attrs

from cmsv6.protocols.jt808.codec import Message


#: Fields that keep a unit's departures from the standard so that its bytes re-encode
#: (bytes after the body, two's complement degrees): shown only when there are some.
_ODDITIES = frozenset({"rest", "twos_complement"})


def jsonable(value: Any, field: str = "") -> Any:
    """attrs objects → dicts, bytes → hex, dates and times → ISO 8601, durations → seconds,
    enums → their values; integer keys → "0x.." strings (two digits for
    additional-information items, four for parameter and message ids). An empty ``rest``
    and a zero ``twos_complement`` are left out.

    Total over what the codec decodes: a type it does not know is a bug here and raises
    TypeError (tests run every corpus body through it)."""
    if attrs.has(type(value)):
        return {
            f.name: jsonable(getattr(value, f.name), f.name)
            for f in attrs.fields(type(value))
            if not (f.name in _ODDITIES and not getattr(value, f.name))
        }
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (date, time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, dict):
        width = 2 if field == "extras" else 4
        return {
            (f"0x{k:0{width}x}" if isinstance(k, int) else str(k)): jsonable(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, str):
        # Bytes that were not GBK survive decoding as surrogate escapes; show them as U+FFFD.
        return value.encode("utf-8", "replace").decode("utf-8")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise TypeError(f"no JSON form for {type(value).__name__}: {value!r}")


def message_json(message: Message, length_ok: bool = True) -> dict[str, Any]:
    h = message.header
    out: dict[str, Any] = {
        "msg_id": f"0x{h.msg_id:04x}",
        "version": h.version,
        "phone": h.phone,
        "serial": h.serial,
        "checksum_ok": message.checksum_ok,
        "subpackage": {"total": h.packet.total, "index": h.packet.index} if h.packet else None,
        "body": jsonable(message.body),
    }
    if h.protocol_version is not None:
        out["protocol_version"] = h.protocol_version
    if h.encryption:
        out["encryption"] = h.encryption
    if not length_ok:
        out["length_ok"] = False
    return out
