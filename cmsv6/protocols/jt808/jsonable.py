"""Decoded messages as JSON-ready values (the shape ``cmsv6 decode`` and the API print),
and the way back: a message's fields written in JSON, checked, with errors in words."""

from __future__ import annotations

import enum
import json
import types
from datetime import date, datetime, time, timedelta
from typing import Any, Union, get_args, get_origin, get_type_hints

import attrs
from construct import BitsInteger, FormatField, Renamed

from cmsv6.protocols.jt808.codec import Message
from cmsv6.protocols.jt808.fields import TEXT_ENCODING, Tuple
from cmsv6.protocols.jt808.messages.params import PARAM_TYPES, STRING
from cmsv6.protocols.jt808.model import MESSAGES, RecordAdapter


#: Fields that keep a unit's departures from the standard so that its bytes re-encode
#: (bytes after the body, two's complement degrees): shown only when there are some.
_ODDITIES = frozenset({"rest", "twos_complement"})


#: Fields holding a message id, and the messages whose ``params`` table
#: (0x8103, 0x0104) or ``ids`` list (0x8106) holds parameter ids.
_MESSAGE_ID_FIELDS = frozenset({"reply_id"})
_PARAM_TABLES = frozenset({0x8103, 0x0104})
_PARAM_ID_LISTS = frozenset({0x8106})


def hex_id(value: int) -> str:
    """A message or parameter id as the Open API and ``cmsv6 decode`` write it: "0x0001"."""
    return f"0x{value:04x}"


def jsonable(value: Any, field: str = "", ids: bool = True) -> Any:
    """attrs objects → dicts, bytes → hex, dates and times → ISO 8601, durations → seconds,
    enums → their values; integer keys → "0x.." strings (two digits for
    additional-information items, four for parameter and message ids). An empty ``rest``
    and a zero ``twos_complement`` are left out.

    Message ids in bodies (``reply_id``) and parameter ids (0x8103 and 0x0104 ``params``
    pairs, 0x8106 ``ids``) are "0x0001" strings too, as the header's ``msg_id`` is: one
    form for ids in ``cmsv6 decode``, ``cmsv6 send`` and the Open API (``ids=False`` keeps
    the numbers, for code that wants them).

    Total over what the codec decodes: a type it does not know is a bug here and raises
    TypeError (tests run every corpus body through it)."""
    if attrs.has(type(value)):
        out = {
            f.name: jsonable(getattr(value, f.name), f.name, ids)
            for f in attrs.fields(type(value))
            if not (f.name in _ODDITIES and not getattr(value, f.name))
        }
        if ids:
            _hex_ids(value, out)
        return out
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
            (f"0x{k:0{width}x}" if isinstance(k, int) else str(k)): jsonable(v, ids=ids)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [jsonable(v, ids=ids) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, str):
        # Bytes that were not GBK survive decoding as surrogate escapes; show them as U+FFFD.
        return value.encode("utf-8", "replace").decode("utf-8")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    raise TypeError(f"no JSON form for {type(value).__name__}: {value!r}")


def _hex_ids(body: Any, out: dict[str, Any]) -> None:
    """Rewrite ``out`` (the JSON of ``body``) with its message and parameter ids as hex."""
    for name in _MESSAGE_ID_FIELDS & out.keys():
        if isinstance(out[name], int):
            out[name] = hex_id(out[name])
    msg_id = getattr(type(body), "MSG_ID", None)
    if msg_id in _PARAM_TABLES and "params" in out:
        out["params"] = [[hex_id(k), v] for k, v in out["params"]]
    elif msg_id in _PARAM_ID_LISTS and "ids" in out:
        out["ids"] = [hex_id(k) for k in out["ids"]]


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


# -- JSON → messages ------------------------------------------------------------------------
#
# The other way: the fields of a message as a person writes them in JSON (``cmsv6 send
# --json``, the Open API's commands), checked against the message's class before anything
# is encoded, so that what is missing or wrong is said in words, naming the field.


class FieldError(ValueError):
    """JSON that does not make the message it is meant for; the text says what, in words."""


#: JT/T 808-2019 table 14 and JT/T 1078 table 1: what each parameter id is, for messages.
PARAM_NAMES: dict[int, str] = {
    0x0001: "heartbeat interval", 0x0002: "TCP reply timeout", 0x0003: "TCP retransmissions",
    0x0004: "UDP reply timeout", 0x0005: "UDP retransmissions", 0x0006: "SMS reply timeout",
    0x0007: "SMS retransmissions", 0x0010: "main server APN",
    0x0011: "main server dial-up user", 0x0012: "main server dial-up password",
    0x0013: "main server address", 0x0014: "backup server APN",
    0x0015: "backup server dial-up user", 0x0016: "backup server dial-up password",
    0x0017: "backup server address", 0x0018: "server TCP port", 0x0019: "server UDP port",
    0x001A: "IC card authentication main server address",
    0x001B: "IC card authentication main server TCP port",
    0x001C: "IC card authentication main server UDP port",
    0x001D: "IC card authentication backup server address", 0x0020: "reporting strategy",
    0x0021: "reporting scheme", 0x0022: "report interval with no driver",
    0x0023: "slave server APN", 0x0024: "slave server dial-up user",
    0x0025: "slave server dial-up password", 0x0026: "slave server backup address",
    0x0027: "report interval when sleeping", 0x0028: "report interval in emergency",
    0x0029: "default report interval", 0x002C: "default report distance",
    0x002D: "report distance with no driver", 0x002E: "report distance when sleeping",
    0x002F: "report distance in emergency", 0x0030: "corner re-send angle",
    0x0031: "electronic fence radius", 0x0032: "illegal driving period",
    0x0040: "monitoring platform phone number", 0x0041: "reset phone number",
    0x0042: "factory-reset phone number", 0x0043: "monitoring platform SMS number",
    0x0044: "SMS alarm number", 0x0045: "answering strategy", 0x0046: "longest call",
    0x0047: "longest calls per month", 0x0048: "listen-in number",
    0x0049: "privileged SMS number", 0x0050: "alarm mask", 0x0051: "SMS alarms",
    0x0052: "photo alarms", 0x0053: "stored-photo alarms", 0x0054: "key alarms",
    0x0055: "top speed", 0x0056: "overspeed duration", 0x0057: "continuous driving limit",
    0x0058: "driving time per day", 0x0059: "minimum rest", 0x005A: "longest stop",
    0x005B: "overspeed warning margin", 0x005C: "fatigue warning margin",
    0x005D: "collision alarm setting", 0x005E: "rollover angle",
    0x0064: "timed photo control", 0x0065: "distance photo control",
    0x0070: "image quality", 0x0071: "brightness", 0x0072: "contrast", 0x0073: "saturation",
    0x0074: "chroma", 0x0075: "audio/video parameters", 0x0076: "audio/video channels",
    0x0077: "per-channel video parameters", 0x0079: "alarm recording parameters",
    0x007A: "video alarm mask", 0x007B: "image analysis parameters",
    0x007C: "sleep wake-up", 0x0080: "odometer", 0x0081: "province id", 0x0082: "city id",
    0x0083: "plate", 0x0084: "plate colour", 0x0090: "GNSS mode", 0x0091: "GNSS baud rate",
    0x0092: "GNSS output frequency", 0x0093: "GNSS collection frequency",
    0x0094: "GNSS upload mode", 0x0095: "GNSS upload setting",
    0x0100: "CAN 1 collection interval", 0x0101: "CAN 1 upload interval",
    0x0102: "CAN 2 collection interval", 0x0103: "CAN 2 upload interval",
}  # fmt: skip
PARAM_NAMES.update({pid: f"CAN id collection {pid - 0x0110}" for pid in range(0x0110, 0x0200)})

_WORDS = {1: "BYTE", 2: "WORD", 4: "DWORD"}
#: How much of a wrong value an error message repeats.
_SHOWN = 40


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if _json_like(value) else repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _json_like(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def param_name(param_id: int) -> str:
    """``0x0001 (heartbeat interval)``, or ``0xf001`` for an id we have no name for."""
    name = PARAM_NAMES.get(param_id)
    return f"0x{param_id:04x}" + (f" ({name})" if name else "")


def int_from_json(value: Any, what: str, low: int = 0, high: int = 0xFFFFFFFF) -> int:
    """An integer from JSON: a number, or a string of one ("0x0013" hex, "19" decimal)."""
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value, 0)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int):
        raise FieldError(f"{what} must be an integer (or a string like \"0x0013\"), got {_shown(value)}")
    if not low <= number <= high:
        raise FieldError(f"{what} must be from {low} to {high}, got {_shown(value)}")
    return number


def param_id_from_json(value: Any) -> int:
    """A parameter id (a DWORD) from JSON: 1, "1" or "0x0001"."""
    return int_from_json(value, "a parameter id")


def _range(sc: Any) -> tuple[int, int, str] | None:
    """(low, high, name) of an integer construct (``Int8ub``, ``BitsInteger(29)``...)."""
    while isinstance(sc, Renamed):
        sc = sc.subcon
    if isinstance(sc, FormatField) and sc.fmtstr[-1] in "bBhHlLqQ":
        bits = 8 * sc.length
        if sc.fmtstr[-1].islower():
            return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, f"signed {bits}-bit integer"
        return 0, 2**bits - 1, _WORDS.get(sc.length, f"{bits}-bit integer")
    if isinstance(sc, BitsInteger) and isinstance(sc.length, int):
        if sc.signed:
            return -(2 ** (sc.length - 1)), 2 ** (sc.length - 1) - 1, f"signed {sc.length}-bit integer"
        return 0, 2**sc.length - 1, f"{sc.length}-bit integer"
    return None


def _fields_of(fmt: Any) -> dict[str, Any]:
    """The named subcons of a record's format (through BitStruct's and IfThenElse's
    wrappers); for a field both branches of an IfThenElse name, the first."""
    out: dict[str, Any] = {}
    for sub in (getattr(fmt, "thensubcon", None), getattr(fmt, "elsesubcon", None)):
        if sub is not None:
            for name, sc in _fields_of(sub).items():
                out.setdefault(name, sc)
    while not hasattr(fmt, "subcons") and hasattr(fmt, "subcon"):
        fmt = fmt.subcon
    for sc in getattr(fmt, "subcons", ()):
        if sc.name:
            out.setdefault(sc.name, sc)
    return out


def param_value_from_json(param_id: int, value: Any) -> Any:
    """A parameter's value from JSON, checked against its type (``PARAM_TYPES``): an integer
    in its width's range, a string GBK can hold, an object of a structure's fields, or
    ``{"hex": "..."}`` for the bytes as they are (any id; the only form for an id of no
    known type). FieldError names the parameter and says what it takes."""
    what = f"parameter {param_name(param_id)}"
    if isinstance(value, dict) and set(value) == {"hex"}:
        try:
            raw = bytes.fromhex(value["hex"])
        except (TypeError, ValueError):
            raise FieldError(f"{what}: hex must be a string of hex digits") from None
        if len(raw) > 255:
            raise FieldError(f"{what} is longer than 255 bytes")
        return raw
    fmt = PARAM_TYPES.get(param_id)
    if fmt is None:
        raise FieldError(f"{what} has no known type: give its value as {{\"hex\": \"...\"}}")
    bounds = _range(fmt)
    if bounds is not None:
        low, high, name = bounds
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise FieldError(f"{what} is a {name}: {low}..{high}, got {_shown(value)}")
        return value
    if fmt is STRING:
        if not isinstance(value, str):
            raise FieldError(f"{what} is a string, got {_shown(value)}")
        try:
            size = len(value.encode(TEXT_ENCODING))
        except UnicodeEncodeError:
            raise FieldError(f"{what}: {_shown(value)} cannot be written as GBK") from None
        if size > 255:
            raise FieldError(f"{what} is longer than 255 bytes")
        return value
    if isinstance(fmt, RecordAdapter):
        return record_from_json(fmt.cls, value, what)
    item = _items_record(fmt) if isinstance(fmt, Tuple) else None
    if item is not None:
        cls = item.cls
        if not isinstance(value, list) or len(value) > 255:
            raise FieldError(f"{what} is a list of at most 255 objects ({_names(cls)})")
        return tuple(record_from_json(cls, v, f"{what} item {i + 1}") for i, v in enumerate(value))
    return value  # a type this check does not know: encoding checks it


def _items_record(fmt: Any, depth: int = 4) -> RecordAdapter | None:
    """The record of a list parameter's items (``Tuple(PrefixedArray(n, X.CODEC))``)."""
    if isinstance(fmt, RecordAdapter):
        return fmt
    if depth == 0:
        return None
    for sub in (getattr(fmt, "subcon", None), *getattr(fmt, "subcons", ())):
        if sub is not None and (found := _items_record(sub, depth - 1)) is not None:
            return found
    return None


def params_from_json(value: Any, what: str = "params") -> tuple[tuple[int, Any], ...]:
    """A parameter table from JSON: ``{"0x0001": 30}`` or ``[["0x0001", 30], [19, "h"]]``
    (pairs: one id may come more than once)."""
    if isinstance(value, dict):
        pairs: list[Any] = list(value.items())
    elif isinstance(value, list):
        pairs = value
        for pair in pairs:
            if not isinstance(pair, list) or len(pair) != 2:
                raise FieldError(f"{what} as a list holds [id, value] pairs, got {_shown(pair)}")
    else:
        raise FieldError(f"{what} must be an object {{id: value}} or a list of [id, value] pairs")
    if len(pairs) > 255:
        raise FieldError(f"{what}: at most 255 parameters")
    out = []
    for k, v in pairs:
        pid = param_id_from_json(k)
        out.append((pid, param_value_from_json(pid, v)))
    return tuple(out)


def _names(cls: type) -> str:
    return ", ".join(f.name for f in attrs.fields(cls))


#: What a field of a plain type takes, in words.
_TYPE_WORDS: dict[Any, str] = {
    int: "an integer", str: "a string", bytes: "hex digits", float: "a number",
    datetime: "an ISO 8601 time", date: "an ISO 8601 date",
}  # fmt: skip


def _describe(hint: Any) -> str:
    """What a field of this type takes, in words."""
    options = [h for h in get_args(hint) if h is not type(None)] if _is_union(hint) else [hint]
    words = []
    for h in options:
        if h in _TYPE_WORDS:
            words.append(_TYPE_WORDS[h])
        elif get_origin(h) is tuple:
            words.append("a list")
        elif attrs.has(h):
            words.append(f"an object ({_names(h)})")
        else:
            words.append("a value")
    return " or ".join(dict.fromkeys(words))


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _value(value: Any, hint: Any, what: str, sc: Any = None) -> Any:
    """``value`` (JSON) as a ``hint`` for the field ``what``; FieldError if it is not."""
    if _is_union(hint):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _value(value, option, what, sc)
            except FieldError:
                continue
        raise FieldError(f"{what} must be {_describe(hint)}, got {_shown(value)}")
    origin = get_origin(hint)
    if hint is int:
        number = int_from_json(value, what, -(2**63), 2**64)
        bounds = _range(sc) if sc is not None else None
        if bounds is not None and not bounds[0] <= number <= bounds[1]:
            raise FieldError(f"{what} is a {bounds[2]}: {bounds[0]}..{bounds[1]}, got {_shown(value)}")
        return number
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldError(f"{what} must be a number, got {_shown(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise FieldError(f"{what} must be a string, got {_shown(value)}")
        return value
    if hint is bytes:
        try:
            return bytes.fromhex(value)
        except (TypeError, ValueError):
            raise FieldError(f"{what} must be hex digits, got {_shown(value)}") from None
    if hint in (datetime, date):
        try:
            return hint.fromisoformat(value)
        except (TypeError, ValueError):
            raise FieldError(f"{what} must be {_describe(hint)}, got {_shown(value)}") from None
    if origin is tuple:
        args = get_args(hint)
        if not isinstance(value, list):
            raise FieldError(f"{what} must be a list, got {_shown(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(v, args[0], f"{what} item {i + 1}") for i, v in enumerate(value))
        if len(value) != len(args):
            raise FieldError(f"{what} must be a list of {len(args)}, got {_shown(value)}")
        return tuple(_value(v, a, f"{what} item {i + 1}") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise FieldError(f"{what} must be an object, got {_shown(value)}")
        key, item = get_args(hint)
        return {_value(k, key, f"{what} key"): _value(v, item, f"{what} {k}") for k, v in value.items()}
    if attrs.has(hint):
        return record_from_json(hint, value, what)
    return value  # Any, or a type this check does not know: encoding checks it


def record_from_json(cls: type, value: Any, what: str) -> Any:
    """An instance of the attrs class ``cls`` from a JSON object of its fields: unknown and
    missing fields, and values of the wrong type, are a FieldError naming them."""
    fields = attrs.fields(cls)
    if not isinstance(value, dict):
        raise FieldError(f"{what} must be an object of its fields ({_names(cls)}), got {_shown(value)}")
    unknown = [k for k in value if k not in {f.name for f in fields}]
    if unknown:
        raise FieldError(f"{what} has no field {', '.join(map(repr, unknown))} (its fields: {_names(cls)})")
    hints = get_type_hints(cls)
    missing = [f"{f.name} ({_describe(hints[f.name])})" for f in fields
               if f.default is attrs.NOTHING and f.name not in value]  # fmt: skip
    if missing:
        raise FieldError(f"{what} needs {', '.join(missing)}")
    formats = _fields_of(getattr(cls, "FORMAT", None))
    args = {}
    for name, v in value.items():
        if name == "params" and hints[name] == tuple[tuple[int, Any], ...]:
            args[name] = params_from_json(v, f"{what} params")
        else:
            args[name] = _value(v, hints[name], f"{what} {name}", formats.get(name))
    try:
        return cls(**args)
    except (TypeError, ValueError) as e:
        raise FieldError(f"{what}: {e}") from None


def body_from_json(msg_id: int, value: Any) -> Any:
    """The body of message ``msg_id`` from a JSON object of its fields (``cmsv6 send --json``):
    FieldError, in words, if it has no format, or the fields are not its fields."""
    cls = MESSAGES.get(msg_id)
    if cls is None:
        raise FieldError(f"0x{msg_id:04x} has no format here: give its body as hex")
    return record_from_json(cls, value, f"0x{msg_id:04x}")
