"""Client commands (JSON) → JT/T 808 platform messages, encoded with the codec.

``{"type": "text", "text": "...", "flag": 4, "text_type": 1}`` → 0x8300
``{"type": "query_parameters"}`` → 0x8104; with ``"ids": ["0x0001", "0x0013"]`` → 0x8106
``{"type": "set_parameters", "params": {"0x0029": 30, "0x0013": "host:7611"}}`` → 0x8103
   (a value ``{"hex": "0102"}`` is sent as those bytes; each value is checked against its
   parameter's type, and one that does not fit is refused in words naming the parameter)
``{"type": "query_position"}`` → 0x8201
``{"type": "take_photo", "channel": 1, "count": 1, ...}`` → 0x8801
``{"type": "terminal_control", "command": 4, "parameters": ""}`` → 0x8105

JT/T 1078 (the Open API's ``recordings``, ``ptz``, ``av-attributes`` and ``av-control``
routes send these, and so may ``POST .../commands``):

``{"type": "query_recordings", "channel": 0, "from": ISO, "to": ISO, "alarm": "0x0",
"media": "any", "stream": "any", "storage": "any"}`` → 0x9205 (times go to the device in its
own +08:00)
``{"type": "ptz", "channel": 1, "action": "rotate", "direction": "up", "speed": 128}`` →
0x9301; ``"action": "focus"|"iris"|"zoom", "adjust": "increase"|"decrease"`` (zoom also
"in"|"out") → 0x9302/0x9303/0x9306; ``"action": "wiper"|"infrared", "state": "on"|"off"``
→ 0x9304/0x9305
``{"type": "query_av_attributes"}`` → 0x9003
``{"type": "av_control", "channel": 1, "action": "switch_stream", "stream": "sub"}`` →
0x9102 (actions close, switch_stream, pause, resume, close_talk; ``close``:
"audio_video"|"audio"|"video" for close)

Bodies are built in the device's protocol version (2019 text messages carry a text type).

Some commands can take a device off the platform or brick it: ``needs_control`` names
them, and only users of the ``[web] device_control_role`` (admins by default) may send
them (``cmsv6.web.api``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from attrs import frozen

from cmsv6.protocols.jt808.codec import encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.jsonable import (
    FieldError,
    int_from_json,
    param_id_from_json,
    params_from_json,
)
from cmsv6.protocols.jt808.messages.jt1078 import (
    ControlCommand,
    MediaType,
    PtzAdjust,
    PtzDirection,
    PtzSwitch,
    RecordStream,
    StorageType,
)
from cmsv6.protocols.jt808.model import MESSAGES


class BadCommand(Exception):
    pass


@frozen
class Encoded:
    msg_id: int
    fields: dict[str, Any]
    body: bytes


def _int(value: Any, name: str, low: int = 0, high: int = 0xFFFFFFFF) -> int:
    try:
        return int_from_json(value, name, low, high)
    except FieldError as e:
        raise BadCommand(str(e)) from None


def _text(command: dict[str, Any], version: int) -> tuple[int, dict[str, Any]]:
    text = command.get("text")
    if not isinstance(text, str) or not text:
        raise BadCommand("text must be a non-empty string")
    if len(text) > 1000:
        raise BadCommand("text is longer than 1000 characters")
    fields: dict[str, Any] = {"flag": _int(command.get("flag", 0x04), "flag", 0, 0xFF), "text": text}
    if version == 2019:
        fields["text_type"] = _int(command.get("text_type", 1), "text_type", 0, 0xFF)
    return 0x8300, fields


def _query_parameters(command: dict[str, Any], version: int) -> tuple[int, dict[str, Any]]:
    ids = command.get("ids")
    if ids is None:
        return 0x8104, {}
    if not isinstance(ids, list) or not 1 <= len(ids) <= 255:
        raise BadCommand("ids must be a list of 1 to 255 parameter ids")
    return 0x8106, {"ids": [param_id_from_json(i) for i in ids]}


def _set_parameters(command: dict[str, Any], version: int) -> tuple[int, dict[str, Any]]:
    params = command.get("params")
    if not isinstance(params, (dict, list)) or not 1 <= len(params) <= 255:
        raise BadCommand("params must be an object of 1 to 255 parameters (id: value)")
    return 0x8103, {"params": list(params_from_json(params))}


def _query_position(command: dict[str, Any], version: int) -> tuple[int, dict[str, Any]]:
    return 0x8201, {}


_PHOTO_DEFAULTS = {
    "command": 1, "interval": 0, "save": 0, "resolution": 1, "quality": 5, "brightness": 128,
    "contrast": 64, "saturation": 64, "chroma": 128,
}  # fmt: skip


def _take_photo(command: dict[str, Any], version: int) -> tuple[int, dict[str, Any]]:
    fields: dict[str, Any] = {"channel": _int(command.get("channel"), "channel", 0, 0xFF)}
    if "count" in command and "command" not in command:
        command = {**command, "command": command["count"]}
    for name, default in _PHOTO_DEFAULTS.items():
        high = 0xFFFF if name in ("command", "interval") else 0xFF
        fields[name] = _int(command.get(name, default), name, 0, high)
    return 0x8801, fields


def _terminal_control(command: dict[str, Any], version: int) -> tuple[int, dict[str, Any]]:
    parameters = command.get("parameters", "")
    if not isinstance(parameters, str) or len(parameters) > 1000:
        raise BadCommand("parameters must be a string")
    return 0x8105, {
        "command": _int(command.get("command"), "command", 0, 0xFF), "parameters": parameters
    }


def _choice(command: dict[str, Any], name: str, names: dict[str, int], default: str | None = None) -> int:
    """The code of ``command[name]``, one of ``names``' keys; BadCommand naming them."""
    value = command.get(name, default)
    if not isinstance(value, str) or value not in names:
        allowed = ", ".join(f'"{n}"' for n in names)
        raise BadCommand(f"{name} must be one of {allowed}, got {_shown(value)}")
    return names[value]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _time(command: dict[str, Any], name: str) -> datetime:
    """An ISO 8601 time of the command (UTC if it has no offset)."""
    value = command.get(name)
    if not isinstance(value, str):
        raise BadCommand(f"{name} must be an ISO 8601 time, got {_shown(value)}")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise BadCommand(f"{name} is not an ISO 8601 time: {_shown(value)}") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


#: Recording media types (0x9205, 0x1205), by the Open API's names: "any" is the
#: standard's 3, video with or without audio (queries only).
RECORD_MEDIA = {"audio_video": MediaType.AUDIO_VIDEO, "audio": MediaType.AUDIO,
                "video": MediaType.VIDEO, "any": MediaType.VIDEO_OR_AUDIO_VIDEO}  # fmt: skip
RECORD_STREAMS = {"any": RecordStream.ANY, "main": RecordStream.MAIN, "sub": RecordStream.SUB}
RECORD_STORAGE = {"any": StorageType.ANY, "main": StorageType.MAIN, "backup": StorageType.BACKUP}


def _query_recordings(command: dict[str, Any], version: int) -> tuple[int, dict[str, Any]]:
    start, end = _time(command, "from"), _time(command, "to")
    if start >= end:
        raise BadCommand("from must be before to")
    return 0x9205, {
        "channel": _int(command.get("channel", 0), "channel", 0, 0xFF),
        "start": start, "end": end,
        "alarm_flags": _int(command.get("alarm", 0), "alarm", 0, 2**64 - 1),
        "media_type": _choice(command, "media", RECORD_MEDIA, "any"),
        "stream_type": _choice(command, "stream", RECORD_STREAMS, "any"),
        "storage_type": _choice(command, "storage", RECORD_STORAGE, "any"),
    }  # fmt: skip


#: PTZ actions: their message, and the field the action's value is in.
PTZ_ACTIONS = {"rotate": 0x9301, "focus": 0x9302, "iris": 0x9303, "wiper": 0x9304,
               "infrared": 0x9305, "zoom": 0x9306}  # fmt: skip
PTZ_DIRECTIONS = {"stop": PtzDirection.STOP, "up": PtzDirection.UP, "down": PtzDirection.DOWN,
                  "left": PtzDirection.LEFT, "right": PtzDirection.RIGHT}  # fmt: skip
#: 0x9302/0x9303/0x9306: 0 turns it up (zoom in), 1 down (zoom out).
PTZ_ADJUST = {"increase": PtzAdjust.INCREASE, "decrease": PtzAdjust.DECREASE}
PTZ_ZOOM = {**PTZ_ADJUST, "in": PtzAdjust.INCREASE, "out": PtzAdjust.DECREASE}
PTZ_SWITCH = {"on": PtzSwitch.START, "off": PtzSwitch.STOP}


def _ptz(command: dict[str, Any], version: int) -> tuple[int, dict[str, Any]]:
    msg_id = PTZ_ACTIONS[_action(command, PTZ_ACTIONS)]
    fields: dict[str, Any] = {"channel": _int(command.get("channel"), "channel", 1, 0xFF)}
    if msg_id == 0x9301:
        fields["direction"] = _choice(command, "direction", PTZ_DIRECTIONS)
        fields["speed"] = _int(command.get("speed", 128), "speed", 0, 255)
    elif msg_id in (0x9304, 0x9305):
        fields["action"] = _choice(command, "state", PTZ_SWITCH)
    else:
        fields["adjust"] = _choice(command, "adjust", PTZ_ZOOM if msg_id == 0x9306 else PTZ_ADJUST)
    return msg_id, fields


def _action(command: dict[str, Any], names: dict[str, Any]) -> str:
    action = command.get("action")
    if not isinstance(action, str) or action not in names:
        allowed = ", ".join(f'"{n}"' for n in names)
        raise BadCommand(f"action must be one of {allowed}, got {_shown(action)}")
    return action


def _query_av_attributes(command: dict[str, Any], version: int) -> tuple[int, dict[str, Any]]:
    return 0x9003, {}


#: 0x9102 commands by the Open API's names.
AV_ACTIONS = {"close": ControlCommand.CLOSE, "switch_stream": ControlCommand.SWITCH_STREAM,
              "pause": ControlCommand.PAUSE, "resume": ControlCommand.RESUME,
              "close_talk": ControlCommand.CLOSE_TALK}  # fmt: skip
AV_CLOSE = {"audio_video": 0, "audio": 1, "video": 2}
LIVE_STREAMS = {"main": 0, "sub": 1}


def _av_control(command: dict[str, Any], version: int) -> tuple[int, dict[str, Any]]:
    action = AV_ACTIONS[_action(command, AV_ACTIONS)]
    return 0x9102, {
        "channel": _int(command.get("channel"), "channel", 1, 0xFF),
        "command": action,
        "close_type": _choice(command, "close", AV_CLOSE, "audio_video"),
        "switch_stream": _choice(command, "stream", LIVE_STREAMS, "main"),
    }


BUILDERS: dict[str, Callable[[dict[str, Any], int], tuple[int, dict[str, Any]]]] = {
    "text": _text,
    "query_parameters": _query_parameters,
    "set_parameters": _set_parameters,
    "query_position": _query_position,
    "take_photo": _take_photo,
    "terminal_control": _terminal_control,
    "query_recordings": _query_recordings,
    "ptz": _ptz,
    "query_av_attributes": _query_av_attributes,
    "av_control": _av_control,
}


#: 0x8103 parameters that point the device at a server or a network: set wrongly (or by an
#: attacker) the device leaves the platform, and nobody can reach it to set them back.
#: JT/T 808-2013 §8.8 table 12 and JT/T 808-2019 §8.9 table 14 (the 2019 ids for the slave
#: server, 0x0023-0x0026), with 0x0041/0x0042: a call from these numbers resets or
#: factory-resets the terminal. Vendor ids (0xF000 up) are not known here.
DANGEROUS_PARAMETERS: dict[int, str] = {
    0x0010: "main server APN",
    0x0011: "main server dial-up user",
    0x0012: "main server dial-up password",
    0x0013: "main server address",
    0x0014: "backup server APN",
    0x0015: "backup server dial-up user",
    0x0016: "backup server dial-up password",
    0x0017: "backup server address",
    0x0018: "server TCP port",
    0x0019: "server UDP port",
    0x001A: "IC card authentication main server address",
    0x001B: "IC card authentication main server TCP port",
    0x001C: "IC card authentication main server UDP port",
    0x001D: "IC card authentication backup server address",
    0x0023: "slave server APN",
    0x0024: "slave server dial-up user",
    0x0025: "slave server dial-up password",
    0x0026: "slave server backup address",
    0x0041: "reset phone number",
    0x0042: "factory-reset phone number",
}

#: Messages every form of which can take a device off the platform or brick it: 0x8105
#: (upgrade from a URL, connect to a given server, power off, reset, factory reset, radio
#: off) and 0x8108 (an upgrade package).
CONTROL_MESSAGES: dict[int, str] = {0x8105: "terminal control", 0x8108: "terminal upgrade"}


def channel_of(encoded: Encoded) -> int | None:
    """The camera channel a command addresses (0x8801 take photo, 0x9205 recordings of one
    channel, PTZ, 0x9102), or None (0x9205 of every channel: channel 0)."""
    if encoded.msg_id == 0x9205 and encoded.fields["channel"] == 0:
        return None
    if encoded.msg_id in (0x8801, 0x9102, 0x9205) or encoded.msg_id in PTZ_ACTIONS.values():
        return int(encoded.fields["channel"])
    return None


def needs_control(encoded: Encoded) -> str | None:
    """Why this command needs the device-control role (a sentence), or None if any user
    who sees the device may send it."""
    if encoded.msg_id in CONTROL_MESSAGES:
        return f"0x{encoded.msg_id:04x} ({CONTROL_MESSAGES[encoded.msg_id]})"
    if encoded.msg_id == 0x8103:
        named = [f"0x{pid:04x} ({DANGEROUS_PARAMETERS[pid]})"
                 for pid, _ in encoded.fields["params"] if pid in DANGEROUS_PARAMETERS]
        if named:
            return f"0x8103 setting {', '.join(named)}"
    return None


def encode_command(command: dict[str, Any], version: int) -> Encoded:
    """The message id, fields and body bytes of a client command; BadCommand if it is not
    one or does not encode."""
    kind = command.get("type")
    builder = BUILDERS.get(kind) if isinstance(kind, str) else None
    if builder is None:
        raise BadCommand(f"type must be one of {', '.join(sorted(BUILDERS))}")
    try:
        msg_id, fields = builder(command, version)
    except FieldError as e:  # a value said wrong, in words naming it
        raise BadCommand(str(e)) from None
    cls = MESSAGES[msg_id]
    try:
        body = encode_body(cls(**fields), version)
    except (CodecError, TypeError, ValueError) as e:
        raise BadCommand(f"the command does not encode: {e}") from None
    return Encoded(msg_id, fields, body)
