"""The OpenAPI 3 document of the Open API, served at ``/api/openapi.json``.

It is data (a Python literal, so it installs with the package without package-data rules);
``tests/web/test_openapi.py`` keeps it true: every route the site serves is here with its
methods, and every path here is served.
"""

from __future__ import annotations

from typing import Any

from cmsv6.rpc.commands import MAX_COMMAND_TIMEOUT
from cmsv6.webhooks import EVENTS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK", example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"description": description, "content": {"application/json": media}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _body(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {"application/json": media}}


#: Every operation that reads a request body answers 413 to one over the bound.
_TOO_LARGE = _error("The request body is over `[web] max_body` (64 KiB) (too_large)")
#: Ids of messages and parameters: written "0x0001" in answers, taken so or as a number.
_IDS = ("Message and parameter ids are written as hex strings, \"0x0001\", in every answer;"
        " requests may give them so or as numbers (1, \"1\")")


_PHONE = {
    "name": "phone", "in": "path", "required": True,
    "description": "Terminal phone number (leading zeros optional)",
    "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{1,20}$"},
}  # fmt: skip
_FROM = {
    "name": "from", "in": "query",
    "description": "ISO 8601 time (UTC if no offset); default: a day ago",
    "schema": {"type": "string", "format": "date-time"},
}  # fmt: skip
_ALARMS_FROM = {
    **_FROM,
    "description": "ISO 8601 time (UTC if no offset); default: a day ago, but with `state`"
                   " no start (every alarm in that state, however old)",
}  # fmt: skip
_TO = {
    "name": "to", "in": "query", "description": "ISO 8601 time, exclusive; default: no end",
    "schema": {"type": "string", "format": "date-time"},
}  # fmt: skip
_LIMIT = {
    "name": "limit", "in": "query", "description": "Page size (default 100)",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
}  # fmt: skip
_AFTER = {
    "name": "after", "in": "query",
    "description": "The previous page's `next` (for positions also a plain time)",
    "schema": {"type": "string"},
}  # fmt: skip

_UNAUTHORIZED = _error("No valid bearer token")
_ADMINS = _error("The user is not an admin (forbidden)")
_NOT_FOUND = _error("No such device (or not one this user may see)")
_BAD = _error("Bad request (bad JSON, bad arguments)")

_TIME = {"type": "string", "format": "date-time"}
_NTIME = {"type": "string", "format": "date-time", "nullable": True}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error answer: an HTTP status and this body",
        "required": ["error"],
        "properties": {"error": _ref("ErrorDetail")},
        "example": {"error": {"code": "not_found", "message": "no such device"}},
    },
    "ErrorDetail": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "Stable, for programs (docs/api.md's"
                     " list): bad_request, unauthorized, not_found, device_offline, ..."},
            "message": {"type": "string", "description": "For people: what was wrong, in words"},
        },
    },
    "Position": {
        "type": "object",
        "properties": {
            "time": _TIME,
            "received": _TIME,
            "latitude": {"type": "number", "description": "Signed degrees (south negative)"},
            "longitude": {"type": "number", "description": "Signed degrees (west negative)"},
            "altitude": {"type": "integer", "description": "m"},
            "speed": {"type": "number", "description": "km/h"},
            "direction": {"type": "integer", "description": "degrees"},
            "alarm": {"type": "integer", "description": "0x0200 alarm bits"},
            "status": {"type": "integer", "description": "0x0200 status bits"},
            "extras": {"type": "object", "nullable": True,
                       "description": "Additional-information items by id (\"0x01\"...)"},
            "blind": {"type": "boolean", "description": "From a blind-area upload"},
        },
    },
    "Device": {
        "type": "object",
        "properties": {
            "phone": {"type": "string"},
            "plate": {"type": "string", "nullable": True},
            "fleet": {"type": "string", "nullable": True},
            "online": {"type": "boolean"},
            "gateway": {"type": "string", "nullable": True},
            "protocol": {"type": "integer", "nullable": True, "enum": [2013, 2019, None]},
            "channels": {"type": "integer"},
            "last_position": {"allOf": [_ref("Position")], "nullable": True},
            "disabled": {**_NTIME, "description": "When an admin disabled it (cmsv6 device"
                         " disable): it is refused when it connects. null: enabled"},
        },
    },
    "Alarm": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "phone": {"type": "string"},
            "kind": {"type": "string", "description": "e.g. bit:emergency, video:..., adas:..."},
            "started": _TIME,
            "ended": _NTIME,
            "latitude": {"type": "number", "nullable": True},
            "longitude": {"type": "number", "nullable": True},
            "details": {"type": "object", "nullable": True},
            "state": {"type": "string", "enum": ["new", "acknowledged", "handled", "dismissed"]},
            "handled": _NTIME,
            "handled_by": {"type": "string", "nullable": True},
            "note": {"type": "string", "nullable": True},
        },
    },
    "Command": {
        "type": "object",
        "required": ["type"],
        "description": (
            "text → 0x8300 (text, flag, text_type); query_parameters → 0x8104, or 0x8106 with"
            " ids; set_parameters → 0x8103 (params: {id: value} or [[id, value], ...]; each"
            " value is checked against its parameter's type, e.g. 0x0001 is a DWORD"
            " 0..4294967295, and one that does not fit is a 400 naming the parameter; a value"
            " {\"hex\": ...} is sent as those bytes, the only form for ids of no known type);"
            " query_position → 0x8201; take_photo → 0x8801 (channel, count, interval, save,"
            " resolution, quality, brightness, contrast, saturation, chroma; a channel"
            " beyond the device's `channels` is a 400 bad_channel); terminal_control → 0x8105"
            " (command, parameters); query_recordings → 0x9205 (channel, from, to, alarm,"
            " media, stream, storage, as GET .../recordings); ptz → 0x9301-0x9306 (as POST"
            " .../ptz); query_av_attributes → 0x9003; av_control → 0x9102 (as POST"
            " .../av-control). Optional timeout in seconds. " + _IDS + "."
            " terminal_control, and set_parameters with a server, APN, port or reset-number"
            " parameter, are for admins only unless [web] device_control_role says otherwise."
        ),
        "properties": {
            "type": {"type": "string", "enum": [
                "text", "query_parameters", "set_parameters", "query_position", "take_photo",
                "terminal_control", "query_recordings", "ptz", "query_av_attributes",
                "av_control",
            ]},  # fmt: skip
            "text": {"type": "string"},
            "flag": {"type": "integer"},
            "text_type": {"type": "integer"},
            "ids": {"type": "array", "items": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                    "description": "Parameter ids, e.g. [\"0x0001\", \"0x0013\"]"},
            "params": {"type": "object", "additionalProperties": True,
                       "description": "{\"0x0029\": 30}: parameter id → value (the API also"
                                      " takes [[\"0x0029\", 30], ...])"},
            "channel": {"type": "integer"},
            "count": {"type": "integer"},
            "command": {"type": "integer"},
            "parameters": {"type": "string"},
            "timeout": {"type": "number", "minimum": 1, "maximum": MAX_COMMAND_TIMEOUT},
        },
    },
    "CommandResult": {
        "type": "object",
        "properties": {
            "command": {"type": "integer", "description": "The command's id"},
            "status": {"type": "string", "enum": ["replied"]},
            "reply": _ref("CommandReply"),
        },
    },
    "CommandReply": {
        "type": "object",
        "description": "The device's reply, decoded",
        "properties": {
            "msg_id": {"type": "string", "example": "0x0001"},
            "version": {"type": "integer", "example": 2013},
            "body": {"type": "object", "additionalProperties": True, "description": (
                "The decoded reply body. Message ids in it (reply_id) and parameter"
                " ids (0x0104 params: [[\"0x0001\", 30], ...]) are \"0x0001\" strings")},
        },
    },
}

_SCHEMAS["MediaFile"] = {
    "type": "object",
    "description": "A file a device uploaded (0x0801): a photo, a recording or a video",
    "properties": {
        "id": {"type": "integer", "description": "This file's id: GET /api/v1/media/{id}"},
        "phone": {"type": "string"},
        "media_id": {"type": "integer", "description": "The device's multimedia id"},
        "media_type": {"type": "integer", "description": "0 image, 1 audio, 2 video"},
        "format": {"type": "integer", "description": "0 JPEG, 1 TIF, 2 MP3, 3 WAV, 4 WMV"},
        "content_type": {"type": "string", "example": "image/jpeg"},
        "event": {"type": "integer", "description": (
            "Why it was taken: 0 a platform command, 1 timed, 2 robbery alarm, 3 collision or"
            " rollover; 2019 adds 4 door opened, 5 door closed, 6 door closed with speed"
            " over 20 km/h, 7 fixed distance")},
        "channel": {"type": "integer"},
        "time": _NTIME,
        "latitude": {"type": "number", "nullable": True},
        "longitude": {"type": "number", "nullable": True},
        "size": {"type": "integer", "description": "Bytes"},
        "received": _TIME,
        "url": {"type": "string", "example": "/api/v1/media/12"},
    },
}
_SCHEMAS["AuditEntry"] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "time": _TIME,
        "user": {"type": "string", "nullable": True, "description": (
            "The Open API user; null for the command line and the gateways (details.by"
            " says who)")},
        "action": {"type": "string", "example": "command"},
        "details": {"type": "object", "nullable": True},
    },
}

_SCHEMAS["Recording"] = {
    "type": "object",
    "description": "One recording on the device (an item of its 0x1205)",
    "properties": {
        "channel": {"type": "integer"},
        "start": {**_NTIME, "description": "In the device's time, +08:00 explicit"},
        "end": {**_NTIME, "description": "In the device's time, +08:00 explicit"},
        "alarm": {"type": "string", "example": "0x0000000200000001",
                  "description": "The 64-bit alarm flags: bits 0-31 JT/T 808's, 32-63 the"
                                 " video alarms (JT/T 1078 table 14)"},
        "alarms": {"type": "array", "items": {"type": "string"},
                   "description": "The set bits by name (emergency, overspeed, ...,"
                                  " video_signal_loss, ...); a bit of no name as \"bit N\""},
        "media": {"type": "string", "enum": ["audio_video", "audio", "video"]},
        "stream": {"type": "string", "enum": ["main", "sub", "any"]},
        "storage": {"type": "string", "enum": ["main", "backup", "any"]},
        "size": {"type": "integer", "description": "Bytes"},
    },
}
_SCHEMAS["AvAttributes"] = {
    "type": "object",
    "description": "The device's audio/video attributes (its 0x1003)",
    "properties": {
        "audio_codec": {"type": "string", "example": "g711a",
                        "description": "g711a, g711u, g726, adpcm, aac, ... or \"code N\""},
        "audio_channels": {"type": "integer"},
        "audio_sample_rate": {"type": "integer", "nullable": True, "example": 8000},
        "audio_sample_bits": {"type": "integer", "nullable": True, "example": 16},
        "audio_frame_length": {"type": "integer"},
        "audio_output": {"type": "boolean", "description": "Whether it can play audio"
                         " (talk-back, broadcast)"},
        "video_codec": {"type": "string", "example": "h264",
                        "description": "h264, h265, or \"code N\""},
        "max_audio_channels": {"type": "integer"},
        "max_video_channels": {"type": "integer"},
        "command": {"type": "integer", "description": "The 0x9003 command's id"},
    },
}
_SCHEMAS["Acknowledged"] = {
    "type": "object",
    "properties": {"command": {"type": "integer", "description": "The command's id"},
                   "ok": {"type": "boolean", "enum": [True]}},
}


# -- the bodies of requests and answers, named (generated clients get a type for each) -----

_SCHEMAS["LoginRequest"] = {
    "type": "object", "required": ["username", "password"],
    "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
}  # fmt: skip
_SCHEMAS["UserInfo"] = {
    "type": "object", "required": ["name", "role"],
    "properties": {"name": {"type": "string"},
                   "role": {"type": "string", "enum": ["admin", "operator"]}},
}  # fmt: skip
_SCHEMAS["MediaServer"] = {
    "type": "object",
    "properties": {"web": {"type": "string", "nullable": True, "description": (
        "The media server's public web address (where live and playback URLs point), null"
        " while none is connected")}},
}  # fmt: skip
_SCHEMAS["LoginResponse"] = {
    "type": "object", "required": ["token", "expires", "user", "media"],
    "properties": {
        "token": {"type": "string", "description": "Send as `Authorization: Bearer TOKEN`"},
        "expires": _TIME,
        "user": _ref("UserInfo"),
        "media": _ref("MediaServer"),
    },
}  # fmt: skip
_SCHEMAS["Empty"] = {"type": "object", "description": "Nothing to say: {}", "properties": {}}
_SCHEMAS["OpenApiDocument"] = {
    "type": "object", "additionalProperties": True,
    "description": "An OpenAPI 3.0 document (this one)",
}  # fmt: skip
_SCHEMAS["PositionPage"] = {
    "type": "object", "required": ["phone", "positions", "next"],
    "properties": {
        "phone": {"type": "string"},
        "positions": {"type": "array", "items": _ref("Position")},
        "next": {"type": "string", "nullable": True,
                 "description": "Pass as `after` for the next page; null on the last"},
    },
}  # fmt: skip
_SCHEMAS["AlarmPage"] = {
    "type": "object", "required": ["alarms", "next"],
    "properties": {"alarms": {"type": "array", "items": _ref("Alarm")},
                   "next": {"type": "string", "nullable": True}},
}  # fmt: skip
_SCHEMAS["AuditPage"] = {
    "type": "object", "required": ["audit", "next"],
    "properties": {"audit": {"type": "array", "items": _ref("AuditEntry")},
                   "next": {"type": "string", "nullable": True}},
}  # fmt: skip
_SCHEMAS["AlarmUpdate"] = {
    "type": "object", "required": ["state"],
    "properties": {
        "state": {"type": "string", "enum": ["acknowledged", "handled", "dismissed"]},
        "note": {"type": "string", "maxLength": 2000},
    },
}  # fmt: skip
_SCHEMAS["LiveRequest"] = {
    "type": "object",
    "properties": {
        "channel": {"type": "integer", "minimum": 1, "maximum": 64, "default": 1},
        "stream": {"type": "string", "enum": ["main", "sub"], "default": "main"},
    },
}  # fmt: skip
_SCHEMAS["LiveVideo"] = {
    "type": "object", "required": ["ws_flv", "http_flv", "codec", "audio", "expires"],
    "properties": {
        "ws_flv": {"type": "string", "description": "ws:// (wss://) URL"},
        "http_flv": {"type": "string", "description": "http:// (https://) URL"},
        "codec": {"type": "string", "nullable": True, "enum": ["h264", "h265", None],
                  "description": "The video codec the device's audio/video attributes (0x1003)"
                                 " announce, null when not known: login asks them (0x9003)"
                                 " when a stream of the device opens and remembers them; this"
                                 " answer never waits for them, and many devices never say"},
        "audio": {"type": "string", "nullable": True, "enum": ["aac", None],
                  "description": "\"aac\" when the device's attributes announce audio the"
                                 " media server gives browsers (as AAC, transcoded from G.711,"
                                 " G.726 or ADPCM); null when they announce none, or are not"
                                 " known (audio may still come)"},
        "expires": {**_TIME, "description": "When the URLs' token stops working"},
    },
}  # fmt: skip
_SCHEMAS["RecordingList"] = {
    "type": "object", "required": ["recordings", "device_time_zone", "command"],
    "properties": {
        "recordings": {"type": "array", "items": _ref("Recording")},
        "device_time_zone": {"type": "string", "enum": ["+08:00"]},
        "command": {"type": "integer", "description": "The 0x9205 command's id"},
    },
}  # fmt: skip
_SPEEDS = {"type": "integer", "enum": [1, 2, 4, 8, 16], "description": "Times normal speed"}
_SCHEMAS["PlaybackRequest"] = {
    "type": "object", "required": ["channel", "from"],
    "properties": {
        "channel": {"type": "integer", "minimum": 1, "maximum": 64},
        "from": {**_TIME, "description": "UTC if no offset"},
        "to": {**_NTIME, "description": "null or absent: play on"},
        "mode": {"type": "string", "enum": ["normal", "fast_forward", "rewind", "keyframes",
                                            "single_frame"], "default": "normal"},
        "speed": {**_SPEEDS, "default": 1},
        "media": {"type": "string", "enum": ["audio_video", "audio", "video"],
                  "default": "audio_video"},
        "stream": {"type": "string", "enum": ["any", "main", "sub"], "default": "any"},
        "storage": {"type": "string", "enum": ["any", "main", "backup"], "default": "any"},
    },
}  # fmt: skip
_SCHEMAS["Playback"] = {
    "type": "object",
    "required": ["ws_flv", "http_flv", "playback", "control", "codec", "expires"],
    "properties": {
        "ws_flv": {"type": "string", "description": "ws:// (wss://) URL"},
        "http_flv": {"type": "string", "description": "http:// (https://) URL"},
        "playback": {"type": "string", "description": "The session's id"},
        "control": {"type": "string", "example": "/api/v1/playback/ID/control"},
        "codec": {"type": "string", "nullable": True, "enum": ["h264", "h265", None],
                  "description": "As live's: from login's memory of the device's 0x1003, null"
                                 " when not known"},
        "expires": {**_TIME, "description": "When the URLs' token stops working"},
    },
}  # fmt: skip
_SCHEMAS["PlaybackControl"] = {
    "type": "object", "required": ["action"],
    "properties": {
        "action": {"type": "string", "enum": ["pause", "resume", "play", "stop", "fast_forward",
                                              "rewind", "keyframes", "seek"]},
        "speed": {**_SPEEDS, "description": "Times normal speed; needed by fast_forward and"
                                            " rewind"},
        "time": {**_TIME, "description": "Where to seek to (UTC if no offset)"},
    },
}  # fmt: skip
_SCHEMAS["Ok"] = {"type": "object", "required": ["ok"],
                  "properties": {"ok": {"type": "boolean"}}}  # fmt: skip
_SCHEMAS["TalkRequest"] = {
    "type": "object",
    "properties": {
        "channel": {"type": "integer", "minimum": 1, "maximum": 255, "default": 1,
                    "description": "One of the device's channels, or an audio channel 33-37"
                                   " (JT/T 1078 table 2)"},
        "broadcast": {"type": "boolean", "default": False,
                      "description": "true: broadcast to the vehicle (0x9101 data type 4)"
                                     " rather than talk (type 2)"},
    },
}  # fmt: skip
_SCHEMAS["TalkFormat"] = {
    "type": "object", "required": ["encoding", "rate", "channels", "frame_ms"],
    "properties": {
        "encoding": {"type": "string", "enum": ["pcm_s16le"]},
        "rate": {"type": "integer", "enum": [8000]},
        "channels": {"type": "integer", "enum": [1]},
        "frame_ms": {"type": "array", "items": {"type": "integer"},
                     "description": "Shortest and longest message, ms"},
    },
}  # fmt: skip
_SCHEMAS["TalkSession"] = {
    "type": "object", "required": ["ws", "audio_codec", "format", "expires"],
    "properties": {
        "ws": {"type": "string", "description": "ws:// (wss://) URL"},
        "audio_codec": {"type": "string", "nullable": True,
                        "description": "The device's audio codec as its 0x1003 says (g711a,"
                                       " g711u, g726, adpcm...), null when not known"},
        "format": _ref("TalkFormat"),
        "expires": {**_TIME, "description": "When the URL's token stops working"},
    },
}  # fmt: skip
_SCHEMAS["PtzRequest"] = {
    "type": "object", "required": ["channel", "action"],
    "properties": {
        "channel": {"type": "integer", "minimum": 1},
        "action": {"type": "string", "enum": ["rotate", "focus", "iris", "wiper", "infrared",
                                              "zoom"]},
        "direction": {"type": "string", "enum": ["up", "down", "left", "right", "stop"]},
        "speed": {"type": "integer", "minimum": 0, "maximum": 255, "default": 128},
        "adjust": {"type": "string", "enum": ["increase", "decrease", "in", "out"]},
        "state": {"type": "string", "enum": ["on", "off"]},
    },
}  # fmt: skip
_SCHEMAS["AvControlRequest"] = {
    "type": "object", "required": ["channel", "action"],
    "properties": {
        "channel": {"type": "integer", "minimum": 1},
        "action": {"type": "string", "enum": ["switch_stream", "pause", "resume", "close",
                                              "close_talk"]},
        "stream": {"type": "string", "enum": ["main", "sub"], "default": "main"},
        "close": {"type": "string", "enum": ["audio_video", "audio", "video"],
                  "default": "audio_video"},
    },
}  # fmt: skip

_OFFLINE = _error("The device is offline (device_offline)")
_MEDIA_GONE = _error("No media server is available (media_unavailable)")
_REFUSED = _error("The device answered no (device_refused), or not as it should (bad_reply)")
_NO_ANSWER = _error("The device did not answer within the timeout (timeout)")
_GATEWAY_GONE = _error("The device's gateway is unavailable")
#: What a command sent to a device through the command path may answer besides success.
_DEVICE_COMMAND_ERRORS = {
    "401": _UNAUTHORIZED, "404": _NOT_FOUND, "409": _OFFLINE, "502": _REFUSED,
    "503": _GATEWAY_GONE, "504": _NO_ANSWER,
}  # fmt: skip
_BAD_CHANNEL_FIELD = _error("A bad field, said in words (bad_command), or a channel beyond the"
                            " device's (bad_channel)")  # fmt: skip
_CHOICE = {"type": "string"}
_TIMEOUT_ARG = {
    "name": "timeout", "in": "query",
    "description": "Seconds the device has to answer each of the gateway's sends (default:"
                   " `[web] command_timeout`)",
    "schema": {"type": "number", "minimum": 1, "maximum": MAX_COMMAND_TIMEOUT},
}  # fmt: skip
# -- a track as GeoJSON (RFC 7946) ----------------------------------------------------------

_SCHEMAS["LineString"] = {
    "type": "object", "required": ["type", "coordinates"],
    "properties": {
        "type": {"type": "string", "enum": ["LineString"]},
        "coordinates": {"type": "array", "minItems": 2, "description": "[longitude, latitude]"
                        " of each position, oldest first (RFC 7946: longitude first)",
                        "items": {"type": "array", "items": {"type": "number"},
                                  "minItems": 2, "maxItems": 2}},
    },
}  # fmt: skip
_SCHEMAS["Point"] = {
    "type": "object", "required": ["type", "coordinates"],
    "properties": {
        "type": {"type": "string", "enum": ["Point"]},
        "coordinates": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                        "maxItems": 2, "description": "[longitude, latitude]"},
    },
}  # fmt: skip
_SCHEMAS["TrackLineProperties"] = {
    "type": "object", "required": ["phone", "from", "to", "points"],
    "properties": {"phone": {"type": "string"}, "from": _TIME, "to": _TIME,
                   "points": {"type": "integer", "description": "Positions in the line"}},
}  # fmt: skip
_SCHEMAS["TrackLine"] = {
    "type": "object", "required": ["type", "geometry", "properties"],
    "description": "The track: the page's positions as one line (only when it has two or more)",
    "properties": {"type": {"type": "string", "enum": ["Feature"]},
                   "geometry": _ref("LineString"), "properties": _ref("TrackLineProperties")},
}  # fmt: skip
_SCHEMAS["TrackPointProperties"] = {
    "type": "object", "required": ["time", "speed", "direction", "altitude", "alarm", "alarms",
                                   "status"],
    "properties": {
        "time": _TIME, "speed": {"type": "number", "description": "km/h"},
        "direction": {"type": "integer", "description": "degrees"},
        "altitude": {"type": "integer", "description": "m"},
        "alarm": {"type": "integer", "description": "0x0200 alarm bits"},
        "alarms": {"type": "array", "items": {"type": "string"},
                   "description": "The set alarm bits by name (emergency, overspeed, ...)"},
        "status": {"type": "integer", "description": "0x0200 status bits"},
    },
}  # fmt: skip
_SCHEMAS["TrackPoint"] = {
    "type": "object", "required": ["type", "geometry", "properties"],
    "description": "One position",
    "properties": {"type": {"type": "string", "enum": ["Feature"]},
                   "geometry": _ref("Point"), "properties": _ref("TrackPointProperties")},
}  # fmt: skip
_SCHEMAS["Track"] = {
    "type": "object", "required": ["type", "features", "phone", "next"],
    "description": "A GeoJSON FeatureCollection (RFC 7946): a LineString feature of the track,"
                   " then a Point feature per position; `phone` and `next` are foreign members",
    "properties": {
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "features": {"type": "array", "items": {"oneOf": [_ref("TrackLine"), _ref("TrackPoint")]}},
        "phone": {"type": "string"},
        "next": {"type": "string", "nullable": True,
                 "description": "Pass as `after` for the next page; null on the last"},
    },
}  # fmt: skip

# -- webhooks ---------------------------------------------------------------------------------

_EVENT_NAMES = {"type": "string", "enum": list(EVENTS)}
_SCHEMAS["WebhookRequest"] = {
    "type": "object", "required": ["url", "events"],
    "properties": {
        "url": {"type": "string", "maxLength": 2000, "example": "https://example.com/cmsv6",
                "description": "http:// or https://: where to POST the events"},
        "events": {"type": "array", "items": _EVENT_NAMES, "minItems": 1,
                   "description": "; ".join(f"{k}: {v}" for k, v in EVENTS.items())},
        "secret": {"type": "string", "minLength": 16, "maxLength": 200,
                   "description": "The HMAC-SHA256 key of the signatures; absent: one is made"
                                  " and answered (once: it is never shown again)"},
        "description": {"type": "string", "maxLength": 200},
    },
}  # fmt: skip
_WEBHOOK_PROPERTIES = {
    "id": {"type": "integer"},
    "url": {"type": "string"},
    "events": {"type": "array", "items": _EVENT_NAMES},
    "description": {"type": "string", "nullable": True},
    "created": _TIME,
    "created_by": {"type": "string", "nullable": True},
    "pending": {"type": "integer", "description": "Deliveries waiting (being retried)"},
    "dropped": {"type": "integer", "description": "Deliveries given up (too many attempts,"
                " too old)"},
    "last_error": {"type": "string", "nullable": True,
                   "description": "Why the last failed attempt failed"},
}  # fmt: skip
_SCHEMAS["Webhook"] = {"type": "object", "required": list(_WEBHOOK_PROPERTIES),
                       "properties": _WEBHOOK_PROPERTIES}  # fmt: skip
_SCHEMAS["WebhookCreated"] = {
    "type": "object", "required": [*_WEBHOOK_PROPERTIES, "secret"],
    "properties": {**_WEBHOOK_PROPERTIES, "secret": {
        "type": "string", "description": "Verify each delivery's X-Cmsv6-Signature with it"}},
}  # fmt: skip
_SCHEMAS["WebhookEvent"] = {
    "type": "object", "required": ["id", "event", "time", "data"],
    "description": "What a webhook receives: the body of a POST with headers X-Cmsv6-Event,"
                   " X-Cmsv6-Delivery (the id), X-Cmsv6-Timestamp (Unix seconds of this"
                   " attempt) and X-Cmsv6-Signature: sha256=HEX, the HMAC-SHA256 with the"
                   " webhook's secret of the timestamp, a dot and the body's bytes",
    "properties": {
        "id": {"type": "string", "format": "uuid", "description": "The event's id: the same"
               " in every attempt and for every webhook; de-duplicate by it"},
        "event": _EVENT_NAMES,
        "time": {**_TIME, "description": "When the fact was recorded"},
        "data": {"type": "object", "additionalProperties": True, "description": (
            "alarm.*: {alarm: Alarm}; device.*: {phone, plate, gateway, time, reason};"
            " command.answered: {command, phone, msg_id, user, status, reply}")},
    },
}  # fmt: skip
_EX_WEBHOOK = {"url": "https://example.com/cmsv6", "events": ["alarm.opened", "device.offline"],
               "secret": "a shared secret of 16+ characters"}  # fmt: skip

# -- examples (the demo's: `make demo`) -----------------------------------------------------

_EX_LOGIN = {"username": "demo", "password": "demo-password"}
_EX_LOGGED_IN = {
    "token": "8jsUVpH9CgCS5YFpnn5V0Lb7HYgaO9Ihp2JAwUd1V5Y",
    "expires": "2026-11-25T14:00:00+00:00",
    "user": {"name": "demo", "role": "admin"},
    "media": {"web": "http://127.0.0.1:8081"},
}
_EX_POSITION = {
    "time": "2026-11-25T02:00:00+00:00", "received": "2026-11-25T02:00:01.250000+00:00",
    "latitude": 22.543096, "longitude": 114.057865, "altitude": 12, "speed": 42.5,
    "direction": 90, "alarm": 0, "status": 3, "extras": {"0x01": 10520},
}  # fmt: skip
_EX_DEVICE = {
    "phone": "13900000000", "plate": "粤B00001", "fleet": "demo buses", "online": True,
    "gateway": "gw-1", "protocol": 2013, "channels": 4, "last_position": _EX_POSITION,
    "disabled": None,
}  # fmt: skip
_EX_POSITIONS = {"phone": "13900000000", "positions": [_EX_POSITION],
                 "next": "2026-11-25T02:00:00.000000Z~8c1f0a9d2b3e4f50"}  # fmt: skip
_EX_ALARM = {
    "id": 17, "phone": "13900000000", "kind": "bit:emergency",
    "started": "2026-11-25T02:00:00+00:00", "ended": None, "latitude": 22.543096,
    "longitude": 114.057865, "details": {"speed": 42.5}, "state": "new", "handled": None,
    "handled_by": None, "note": None,
}  # fmt: skip
_EX_ALARMS = {"alarms": [_EX_ALARM], "next": None}
_EX_LIVE = {
    "ws_flv": "ws://127.0.0.1:8081/live/13900000000/1.flv?stream=main&token=...",
    "http_flv": "http://127.0.0.1:8081/live/13900000000/1.flv?stream=main&token=...",
    "codec": "h264", "audio": "aac", "expires": "2026-11-25T02:02:00+00:00",
}  # fmt: skip
_EX_TEXT = {"type": "text", "text": "Please call the dispatcher", "flag": 8}
_EX_REPLIED = {
    "command": 41, "status": "replied",
    "reply": {"msg_id": "0x0001", "version": 2013,
              "body": {"reply_serial": 7, "reply_id": "0x8300", "result": 0}},
}  # fmt: skip

#: What a file download may be.
_MEDIA_TYPES = ("image/jpeg", "image/tiff", "audio/mpeg", "audio/wav", "video/x-ms-wmv",
                "application/octet-stream")  # fmt: skip

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "cmsv6 Open API",
        "version": "1",
        "description": (
            "Devices, positions, alarms, commands, live video, recordings on the devices and"
            " their playback, talk-back, PTZ, the devices' photos and files"
            " and the audit log of a cmsv6 cluster. Log in for a token and send it as"
            " `Authorization: Bearer TOKEN`. An operator sees the devices of their fleets only"
            " (another fleet's device is a 404, like one that does not exist); admins see"
            " every device and alone read the audit log. " + _IDS + ". Errors are an HTTP"
            " status with {\"error\": {\"code\", \"message\"}}. Request bodies are at most"
            " 64 KiB (`[web] max_body`; more: 413 too_large) and nest JSON arrays and objects"
            " at most 32 deep (`max_json_depth`; deeper: 400 too_deep). Limits of the endpoint"
            " (`[web]`): at most 2000 open connections (`max_connections`; more are closed at"
            " once), a request's headers within 20 s of the connection's opening or its"
            " previous response (`header_timeout`; else it is closed), at most 10 open"
            " WebSockets per user (`ws_max_per_user`). Live positions and alarms: the"
            " WebSocket at /ws."
        ),
    },
    "components": {
        "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "The token of POST /api/v1/login, as `Authorization: Bearer TOKEN`"}},
        "schemas": _SCHEMAS,
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": _json(_ref("OpenApiDocument"), "This document")},
            }
        },
        "/api/v1/login": {
            "post": {
                "summary": "Log in: a token, its expiry and the media server to use",
                "security": [],
                "requestBody": _body(_ref("LoginRequest"), example=_EX_LOGIN),  # fmt: skip
                "responses": {
                    "200": _json(_ref("LoginResponse"), example=_EX_LOGGED_IN),  # fmt: skip
                    "400": _BAD,
                    "401": _error("Wrong user name or password"),
                    "403": _error("The right password of a disabled user (user_disabled)"),
                    "413": _TOO_LARGE,
                    "429": _error(
                        "Too many failed logins for this name from this address, or for this"
                        " name from all addresses in the hour (too_many_attempts; Retry-After"
                        " says when to try again)"),
                },
            }
        },
        "/api/v1/logout": {
            "post": {
                "summary": "Revoke this token",
                "responses": {"200": _json(_ref("Empty")), "401": _UNAUTHORIZED},
            }
        },
        "/api/v1/me": {
            "get": {
                "summary": "The user of this token",
                "responses": {
                    "200": _json(_ref("UserInfo"), example=_EX_LOGGED_IN["user"]),
                    "401": _UNAUTHORIZED,
                },  # fmt: skip
            }
        },
        "/api/v1/devices": {
            "get": {
                "summary": "The devices this user may see (admins: all; operators: their fleets'),"
                           " by phone, paged",
                "description": "At most `limit` devices (default and maximum: the `max_page`"
                               " setting, 1000). When there may be more, the answer has a"
                               " `Link: </api/v1/devices?after=PHONE&limit=N>; rel=\"next\"`"
                               " header; `after` is the last phone of the previous page.",
                "parameters": [
                    {**_LIMIT, "description": "Page size (default: the maximum)"},
                    {"name": "after", "in": "query", "schema": {"type": "string"},
                     "description": "The last phone of the previous page"},
                ],
                "responses": {
                    "200": {**_json({"type": "array", "items": _ref("Device")},
                                    example=[_EX_DEVICE]),
                            "headers": {"Link": {"schema": {"type": "string"},
                                                 "description": "The next page, if any"}}},
                    "401": _UNAUTHORIZED,
                },
            }
        },
        "/api/v1/devices/{phone}": {
            "get": {
                "summary": "One device",
                "parameters": [_PHONE],
                "responses": {"200": _json(_ref("Device"), example=_EX_DEVICE),
                              "401": _UNAUTHORIZED,
                              "404": _NOT_FOUND},
            }
        },
        "/api/v1/devices/{phone}/positions": {
            "get": {
                "summary": "A device's positions in [from, to), oldest first, paged",
                "parameters": [_PHONE, _FROM, _TO, _LIMIT, _AFTER],
                "responses": {
                    "200": _json(_ref("PositionPage"), example=_EX_POSITIONS),  # fmt: skip
                    "400": _BAD, "401": _UNAUTHORIZED, "404": _NOT_FOUND,
                },
            }
        },
        "/api/v1/devices/{phone}/commands": {
            "post": {
                "summary": "Send a command to an online device and wait for its reply",
                "parameters": [_PHONE],
                "requestBody": _body(_ref("Command"), example=_EX_TEXT),
                "responses": {
                    "200": _json(_ref("CommandResult"), example=_EX_REPLIED),
                    "400": _error(
                        "Not a command, a field missing or of the wrong type, a parameter value"
                        " that does not fit its type (bad_command), or a channel beyond the"
                        " device's (bad_channel)"),
                    "413": _TOO_LARGE,
                    "401": _UNAUTHORIZED,
                    "403": _error(
                        "A command that can take the device off the platform (0x8103 setting a"
                        " server, APN, port or reset-number parameter, 0x8105, 0x8108) from a"
                        " user whose role may not send it; recorded in the audit (forbidden)"),
                    "404": _NOT_FOUND,
                    "409": _error("The device is offline (device_offline)"),
                    "503": _GATEWAY_GONE,
                    "504": _error("The device did not answer (timeout)"),
                },
            }
        },
        "/api/v1/devices/{phone}/live": {
            "post": {
                "summary": "Where to play a channel's live video",
                "description": "Picks a media server (the one the stream goes to already, else"
                               " the one with the fewest streams and viewers) and answers its"
                               " WS-FLV and HTTP-FLV URLs for the stream. The URLs carry a"
                               " viewing token (`token=`) that grants exactly this device,"
                               " channel and stream on that media server until `expires`"
                               " (two minutes): open the URL before then; the media server"
                               " refuses a URL without a valid token. The device is asked to"
                               " open its stream (0x9101) when the first viewer connects.",
                "parameters": [_PHONE],
                "requestBody": _body(_ref("LiveRequest"), example={"channel": 1, "stream": "main"}),  # fmt: skip
                "responses": {
                    "200": _json(_ref("LiveVideo"), example=_EX_LIVE),
                    "400": _error("A channel that is not 1 to 64, or beyond the device's"
                                  " `channels` (bad_channel), or a stream not main or sub"),
                    "401": _UNAUTHORIZED, "404": _NOT_FOUND, "413": _TOO_LARGE,
                    "409": _error("The device is offline (device_offline)"),
                    "503": _error("No media server is available (media_unavailable)"),
                },  # fmt: skip
            }
        },
        "/api/v1/devices/{phone}/recordings": {
            "get": {
                "summary": "The recordings on the device (0x9205 → its 0x1205)",
                "description": "Asks the device now; its answer (sub-packaged when long: the"
                               " gateway reassembles it and asks again for missing packets)"
                               " comes back as JSON, recorded in `commands`. The device keeps"
                               " time in +08:00 (the BCD times of JT/T 1078 carry no zone):"
                               " `from` and `to` are sent to it in +08:00 and its times are"
                               " answered in +08:00, the offset explicit, unlike the UTC of"
                               " the rest of the API, so that they are the times the device"
                               " knows its files by.",
                "parameters": [
                    _PHONE,
                    {"name": "channel", "in": "query", "schema": {"type": "integer",
                     "minimum": 0, "maximum": 255}, "description": "0 or absent: every channel"},
                    {**_FROM, "description": "ISO 8601 (UTC if no offset); default: a day before `to`"},
                    {**_TO, "description": "ISO 8601 (UTC if no offset); default: now"},
                    {"name": "alarm", "in": "query", "schema": {"type": "string"},
                     "description": "Alarm mask, \"0x...\" or a number (bits 0-31 JT/T 808's,"
                                    " 32-63 the video alarms); default 0: any"},
                    {"name": "media", "in": "query", "schema": {"type": "string", "enum": [
                        "audio_video", "audio", "video", "any"], "default": "any"},
                     "description": "any: video, with or without audio"},
                    {"name": "stream", "in": "query", "schema": {"type": "string", "enum": [
                        "any", "main", "sub"], "default": "any"}},
                    {"name": "storage", "in": "query", "schema": {"type": "string", "enum": [
                        "any", "main", "backup"], "default": "any"}},
                    _TIMEOUT_ARG,
                ],  # fmt: skip
                "responses": {
                    "200": _json(_ref("RecordingList")),
                    "400": _error("A bad argument, said in words (bad_request, bad_command), or"
                                  " a channel beyond the device's (bad_channel)"),
                    "401": _UNAUTHORIZED, "404": _NOT_FOUND, "409": _OFFLINE,
                    "502": _error("The device refused (device_refused), acknowledged without"
                                  " the list (no_list), or answered what does not decode"
                                  " (bad_reply)"),
                    "503": _GATEWAY_GONE,
                    "504": _error("The device did not answer the recording query within the"
                                  " timeout (timeout)"),
                },  # fmt: skip
            }
        },
        "/api/v1/devices/{phone}/playback": {
            "post": {
                "summary": "Play a recording back: where, and a session to control it by",
                "description": "Picks the least-loaded media server and makes a playback"
                               " session on it: the URLs carry a viewing token for exactly"
                               " this device, channel and session (opened before `expires`);"
                               " the device is asked to play back (0x9201) when the first"
                               " viewer connects, and every viewer of the session shares it."
                               " Control it with `control` or the viewer's WebSocket.",
                "parameters": [_PHONE],
                "requestBody": _body(_ref("PlaybackRequest")),  # fmt: skip
                "responses": {
                    "200": _json(_ref("Playback")),
                    "400": _error("A bad field, said in words, or a channel beyond the device's"
                                  " (bad_channel)"),
                    "401": _UNAUTHORIZED, "404": _NOT_FOUND, "409": _OFFLINE,
                    "413": _TOO_LARGE, "503": _MEDIA_GONE,
                },  # fmt: skip
            }
        },
        "/api/v1/playback/{session}/control": {
            "post": {
                "summary": "Control a playback session (0x9202 through its media server)",
                "parameters": [{"name": "session", "in": "path", "required": True,
                                "description": "A playback answer's `playback`",
                                "schema": {"type": "string"}}],
                "requestBody": _body(_ref("PlaybackControl"), example={"action": "pause"}),  # fmt: skip
                "responses": {
                    "200": _json(_ref("Ok")),
                    "400": _BAD, "401": _UNAUTHORIZED,
                    "404": _error("No such session (never made, over, made by another login"
                                  " server, or of a device this user may not see)"),
                    "409": _OFFLINE, "413": _TOO_LARGE,
                    "502": _error("The device refused the control (device_refused)"),
                    "503": _error("The media server holding the session is gone or does not"
                                  " answer (media_unavailable)"),
                    "504": _NO_ANSWER,
                },  # fmt: skip
            }
        },
        "/api/v1/devices/{phone}/talk": {
            "post": {
                "summary": "Talk to the driver (or broadcast to the vehicle): where, and how",
                "description": "The media server's talk-back WebSocket with a token for a new"
                               " session. Send it PCM as `format` says (binary messages); it"
                               " sends the device's audio back as FLV (AAC). A browser needs a"
                               " secure context (https) for the microphone: serve the web"
                               " endpoints over TLS.",
                "parameters": [_PHONE],
                "requestBody": _body(_ref("TalkRequest")),  # fmt: skip
                "responses": {
                    "200": _json(_ref("TalkSession")),
                    "400": _BAD, "401": _UNAUTHORIZED, "404": _NOT_FOUND, "413": _TOO_LARGE,
                    "409": _error("The device is offline (device_offline), or has no audio"
                                  " output as its 0x1003 says (no_audio_output)"),
                    "503": _MEDIA_GONE,
                },  # fmt: skip
            }
        },
        "/api/v1/devices/{phone}/ptz": {
            "post": {
                "summary": "Turn, focus or zoom a camera; its iris, wiper, infrared light",
                "description": "rotate → 0x9301 (direction up, down, left, right or stop;"
                               " speed 0-255, default 128); focus → 0x9302 and iris → 0x9303"
                               " (adjust increase or decrease); zoom → 0x9306 (adjust in or"
                               " increase, out or decrease); wiper → 0x9304 and infrared →"
                               " 0x9305 (state on or off). Recorded in `commands`. Also"
                               " `POST .../commands` with `\"type\": \"ptz\"`.",
                "parameters": [_PHONE],
                "requestBody": _body(_ref("PtzRequest"), example={"channel": 1, "action": "rotate", "direction": "left"}),  # fmt: skip
                "responses": {
                    "200": _json(_ref("Acknowledged")), "400": _BAD_CHANNEL_FIELD,
                    "413": _TOO_LARGE, **_DEVICE_COMMAND_ERRORS,
                },  # fmt: skip
            }
        },
        "/api/v1/devices/{phone}/av-attributes": {
            "get": {
                "summary": "The device's audio/video attributes (0x9003 → its 0x1003)",
                "description": "Asked now; login remembers the answer (the live and talk"
                               " answers say its codecs).",
                "parameters": [_PHONE, _TIMEOUT_ARG],
                "responses": {
                    "200": _json(_ref("AvAttributes")), "400": _BAD, **_DEVICE_COMMAND_ERRORS,
                },  # fmt: skip
            }
        },
        "/api/v1/devices/{phone}/av-control": {
            "post": {
                "summary": "Control a running stream (0x9102)",
                "description": "switch_stream to `stream` main or sub; pause; resume; close"
                               " (`close`: audio_video, audio or video); close_talk. Recorded"
                               " in `commands`. Also `POST .../commands` with"
                               " `\"type\": \"av_control\"`.",
                "parameters": [_PHONE],
                "requestBody": _body(_ref("AvControlRequest"), example={"channel": 1, "action": "pause"}),  # fmt: skip
                "responses": {
                    "200": _json(_ref("Acknowledged")), "400": _BAD_CHANNEL_FIELD,
                    "413": _TOO_LARGE, **_DEVICE_COMMAND_ERRORS,
                },  # fmt: skip
            }
        },
        "/api/v1/alarms": {
            "get": {
                "summary": "Alarms that started in [from, to), oldest first, paged",
                "description": "Without `from`, alarms of the last day; with `state` (e.g."
                               " `state=new`), every alarm in that state however old.",
                "parameters": [
                    _ALARMS_FROM, _TO, _LIMIT, _AFTER,
                    {"name": "device", "in": "query", "description": "A device's phone",
                     "schema": {"type": "string"}},
                    {"name": "state", "in": "query", "schema": {
                        "type": "string", "enum": ["new", "acknowledged", "handled", "dismissed"]}},
                ],  # fmt: skip
                "responses": {
                    "200": _json(_ref("AlarmPage"), example=_EX_ALARMS),
                    "400": _BAD, "401": _UNAUTHORIZED, "404": _NOT_FOUND,
                },  # fmt: skip
            }
        },
        "/api/v1/alarms/{alarm_id}": {
            "post": {
                "summary": "Handle an alarm: set its state with a note (recorded with user and time)",
                "parameters": [{"name": "alarm_id", "in": "path", "required": True,
                                "schema": {"type": "integer"}}],
                "requestBody": _body(_ref("AlarmUpdate"), example={"state": "acknowledged", "note": "driver called"}),  # fmt: skip
                "responses": {
                    "200": _json(_ref("Alarm"), example={
                        **_EX_ALARM, "state": "acknowledged",
                        "handled": "2026-11-25T02:05:00+00:00", "handled_by": "demo",
                        "note": "driver called"}),
                    "400": _BAD, "401": _UNAUTHORIZED,
                    "404": _error("No such alarm (or not one this user may see)"),
                    "413": _TOO_LARGE,
                },  # fmt: skip
            }
        },
        "/api/v1/devices/{phone}/media": {
            "get": {
                "summary": "The photos and files a device uploaded, newest first, paged",
                "description": "At most `limit` files (default 100, at most the `max_page`"
                               " setting, 1000). When there may be more, the answer has a"
                               " `Link: </api/v1/devices/PHONE/media?after=ID&limit=N>;"
                               " rel=\"next\"` header; `after` is the last id of the previous"
                               " page.",
                "parameters": [
                    _PHONE, {**_LIMIT, "description": "Page size (default 100)"},
                    {"name": "after", "in": "query", "schema": {"type": "integer"},
                     "description": "The last id of the previous page"},
                ],  # fmt: skip
                "responses": {
                    "200": {**_json({"type": "array", "items": _ref("MediaFile")}),
                            "headers": {"Link": {"schema": {"type": "string"},
                                                 "description": "The next page, if any"}}},
                    "400": _BAD, "401": _UNAUTHORIZED, "404": _NOT_FOUND,
                },  # fmt: skip
            }
        },
        "/api/v1/media/{file_id}": {
            "get": {
                "summary": "A file a device uploaded, as it was uploaded",
                "description": "The bytes, with the file's Content-Type and Content-Length"
                               " (never sniffed: `X-Content-Type-Options: nosniff`).",
                "parameters": [{"name": "file_id", "in": "path", "required": True,
                                "description": "A MediaFile's id",
                                "schema": {"type": "integer"}}],
                "responses": {
                    "200": {
                        "description": "The file",
                        "headers": {"Content-Length": {"schema": {"type": "integer"}}},
                        "content": {t: {"schema": {"type": "string", "format": "binary"}}
                                    for t in _MEDIA_TYPES},
                    },
                    "401": _UNAUTHORIZED,
                    "404": _error("No such file, one of a device this user may not see, or a"
                                  " file no longer on the server's disk"),
                },  # fmt: skip
            }
        },
        "/api/v1/audit": {
            "get": {
                "summary": "The audit log, newest first, paged (admins only)",
                "description": "Commands sent (and refused), alarms handled, devices and users"
                               " changed on the command line, with who and when. Without"
                               " `from`, from the beginning.",
                "parameters": [
                    {**_FROM, "description": "ISO 8601 time (UTC if no offset); default: no start"},
                    _TO, _LIMIT,
                    {"name": "after", "in": "query", "schema": {"type": "string"},
                     "description": "The previous page's `next`"},
                    {"name": "user", "in": "query", "schema": {"type": "string", "maxLength": 64},
                     "description": "Rows of this user (or whose details name them as `by`)"},
                    {"name": "device", "in": "query", "schema": {"type": "string"},
                     "description": "Rows about this device (details.phone)"},
                    {"name": "action", "in": "query", "schema": {"type": "string", "maxLength": 64},
                     "description": "e.g. command, command_refused, alarm.handle"},
                ],  # fmt: skip
                "responses": {
                    "200": _json(_ref("AuditPage")),
                    "400": _BAD, "401": _UNAUTHORIZED, "403": _ADMINS,
                },  # fmt: skip
            }
        },
        "/api/v1/devices/{phone}/track": {
            "get": {
                "summary": "A device's track in [from, to) as GeoJSON, paged as positions are",
                "description": "A GeoJSON FeatureCollection (RFC 7946, coordinates longitude"
                               " first): a LineString feature of the page's positions (when"
                               " there are two or more), then a Point feature per position"
                               " with its time, speed, direction, altitude and alarms. The"
                               " same arguments, page size and `next` as GET .../positions;"
                               " load it as it is into Leaflet, OpenLayers, QGIS or geojson.io.",
                "parameters": [_PHONE, _FROM, _TO, _LIMIT, _AFTER],
                "responses": {
                    "200": _json(_ref("Track"), example={
                        "type": "FeatureCollection", "phone": "13900000000", "next": None,
                        "features": [
                            {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [
                                [114.057865, 22.543096], [114.058312, 22.543101]]},
                             "properties": {"phone": "13900000000", "from": "2026-11-25T02:00:00+00:00",
                                            "to": "2026-11-25T02:00:10+00:00", "points": 2}},
                            {"type": "Feature", "geometry": {"type": "Point",
                                                             "coordinates": [114.057865, 22.543096]},
                             "properties": {"time": "2026-11-25T02:00:00+00:00", "speed": 42.5,
                                            "direction": 90, "altitude": 12, "alarm": 1,
                                            "alarms": ["emergency"], "status": 3}},
                        ]}),
                    "400": _BAD, "401": _UNAUTHORIZED, "404": _NOT_FOUND,
                },  # fmt: skip
            }
        },
        "/api/v1/webhooks": {
            "get": {
                "summary": "The webhooks (admins only)",
                "description": "Each with its deliveries waiting and given up, and the last"
                               " error; never its secret.",
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Webhook")}),
                    "401": _UNAUTHORIZED, "403": _ADMINS,
                },  # fmt: skip
            },
            "post": {
                "summary": "Register a webhook (admins only): events POSTed to a URL, signed",
                "description": "From now on each event of `events` is POSTed to `url` as a"
                               " WebhookEvent, signed with `secret` (X-Cmsv6-Signature), until"
                               " it answers 2xx: retried with exponential back-off for a"
                               " bounded time (docs/integration/webhooks.md), at least"
                               " once, so de-duplicate by the event's id.",
                "requestBody": _body(_ref("WebhookRequest"), example=_EX_WEBHOOK),
                "responses": {
                    "201": _json(_ref("WebhookCreated"), "Registered"),
                    "400": _error("A bad url, event, secret or description, said in words"
                                  " (bad_request)"),
                    "401": _UNAUTHORIZED, "403": _ADMINS, "413": _TOO_LARGE,
                },  # fmt: skip
            },
        },
        "/api/v1/webhooks/{webhook_id}": {
            "delete": {
                "summary": "Remove a webhook and its undelivered events (admins only)",
                "parameters": [{"name": "webhook_id", "in": "path", "required": True,
                                "schema": {"type": "integer"}}],
                "responses": {
                    "200": _json(_ref("Webhook"), "Removed: what it was"),
                    "401": _UNAUTHORIZED, "403": _ADMINS,
                    "404": _error("No such webhook (not_found)"),
                },  # fmt: skip
            },
        },
        "/ws": {
            "get": {
                "summary": "Client WebSocket: live positions and alarms of subscribed devices",
                "description": (
                    "First message {\"token\": ...}; then {\"subscribe\": [phones]} and"
                    " {\"unsubscribe\": [phones]}, answered in the order sent. The server sends"
                    " {\"type\": \"authenticated\"|\"subscribed\"|\"unsubscribed\"|\"position\"|"
                    "\"alarm\"|\"dropped\"|\"error\", ...}. Close codes (with a reason): 4000"
                    " server going away (reconnect), 4001 no valid token, 4002 not JSON text or"
                    " nested deeper than `max_json_depth`, 4003 the user already has"
                    " `ws_max_per_user` open sockets, 4004 too many messages waiting for their"
                    " answer, 1002 not a valid WebSocket frame, 1007 text that is not UTF-8,"
                    " 1009 a message over 64 KiB, 1011 a bug on our side, 1013 database"
                    " unavailable (try later). Everything, with examples and limits: the"
                    " project's docs/websocket.md."
                ),
                "security": [],
                "responses": {"101": {"description": "Switching to the WebSocket protocol"}},
            }
        },
    },
}


#: Every operation's id (what a generated client names its function) and tag (its module).
OPERATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("/api/openapi.json", "get"): ("get_openapi_document", "meta"),
    ("/api/v1/login", "post"): ("login", "session"),
    ("/api/v1/logout", "post"): ("logout", "session"),
    ("/api/v1/me", "get"): ("get_me", "session"),
    ("/api/v1/devices", "get"): ("list_devices", "devices"),
    ("/api/v1/devices/{phone}", "get"): ("get_device", "devices"),
    ("/api/v1/devices/{phone}/positions", "get"): ("list_device_positions", "positions"),
    ("/api/v1/devices/{phone}/track", "get"): ("get_device_track", "positions"),
    ("/api/v1/devices/{phone}/commands", "post"): ("send_command", "commands"),
    ("/api/v1/devices/{phone}/live", "post"): ("get_live_video", "video"),
    ("/api/v1/devices/{phone}/recordings", "get"): ("list_recordings", "video"),
    ("/api/v1/devices/{phone}/playback", "post"): ("start_playback", "video"),
    ("/api/v1/playback/{session}/control", "post"): ("control_playback", "video"),
    ("/api/v1/devices/{phone}/talk", "post"): ("start_talk", "video"),
    ("/api/v1/devices/{phone}/ptz", "post"): ("control_ptz", "video"),
    ("/api/v1/devices/{phone}/av-attributes", "get"): ("get_av_attributes", "video"),
    ("/api/v1/devices/{phone}/av-control", "post"): ("control_av", "video"),
    ("/api/v1/alarms", "get"): ("list_alarms", "alarms"),
    ("/api/v1/alarms/{alarm_id}", "post"): ("handle_alarm", "alarms"),
    ("/api/v1/devices/{phone}/media", "get"): ("list_device_media", "media"),
    ("/api/v1/media/{file_id}", "get"): ("get_media_file", "media"),
    ("/api/v1/audit", "get"): ("list_audit", "audit"),
    ("/api/v1/webhooks", "get"): ("list_webhooks", "webhooks"),
    ("/api/v1/webhooks", "post"): ("create_webhook", "webhooks"),
    ("/api/v1/webhooks/{webhook_id}", "delete"): ("delete_webhook", "webhooks"),
    ("/ws", "get"): ("open_websocket", "websocket"),
}

#: Any status an operation does not list (405 method_not_allowed, 500 internal, 503 the
#: database unavailable) is still an Error.
_OTHER = _error("Any other error, in the same shape: 405 method_not_allowed, 500 internal,"
                " 503 unavailable (the database)")

DOCUMENT["tags"] = [
    {"name": "session", "description": "Log in and out"},
    {"name": "devices", "description": "The vehicles' DVRs and their last positions"},
    {"name": "positions", "description": "Where a vehicle was: positions, and its track as GeoJSON"},
    {"name": "alarms", "description": "Alarms and their handling"},
    {"name": "commands", "description": "JT/T 808 commands to a device, and its reply"},
    {"name": "video", "description": "Live video, recordings and their playback, talk-back,"
                                     " PTZ (JT/T 1078)"},
    {"name": "media", "description": "Photos and files the devices uploaded"},
    {"name": "audit", "description": "Who did what (admins)"},
    {"name": "webhooks", "description": "Events pushed to other systems (admins)"},
    {"name": "websocket", "description": "Live positions and alarms"},
    {"name": "meta", "description": "This document"},
]  # fmt: skip
for (_path, _method), (_operation_id, _tag) in OPERATIONS.items():
    _op = DOCUMENT["paths"][_path][_method]
    _op["operationId"] = _operation_id
    _op["tags"] = [_tag]
    if _path != "/ws":
        _op["responses"]["default"] = _OTHER
