"""The OpenAPI 3 document of the Open API, served at ``/api/openapi.json``.

It is data (a Python literal, so it installs with the package without package-data rules);
``tests/web/test_openapi.py`` keeps it true: every route the site serves is here with its
methods, and every path here is served.
"""

from __future__ import annotations

from typing import Any

from cmsv6.rpc.commands import MAX_COMMAND_TIMEOUT


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


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
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
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
            " (command, parameters). Optional timeout in seconds. " + _IDS + "."
            " terminal_control, and set_parameters with a server, APN, port or reset-number"
            " parameter, are for admins only unless [web] device_control_role says otherwise."
        ),
        "properties": {
            "type": {"type": "string", "enum": [
                "text", "query_parameters", "set_parameters", "query_position", "take_photo",
                "terminal_control",
            ]},  # fmt: skip
            "text": {"type": "string"},
            "flag": {"type": "integer"},
            "text_type": {"type": "integer"},
            "ids": {"type": "array", "items": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                    "description": "Parameter ids, e.g. [\"0x0001\", \"0x0013\"]"},
            "params": {"oneOf": [{"type": "object"}, {"type": "array"}],
                       "description": "{\"0x0029\": 30} or [[\"0x0029\", 30]]"},
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
            "reply": {
                "type": "object",
                "properties": {
                    "msg_id": {"type": "string", "example": "0x0001"},
                    "version": {"type": "integer"},
                    "body": {"type": "object", "description": (
                        "The decoded reply body. Message ids in it (reply_id) and parameter"
                        " ids (0x0104 params: [[\"0x0001\", 30], ...]) are \"0x0001\" strings")},
                },
            },
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

#: What a file download may be.
_MEDIA_TYPES = ("image/jpeg", "image/tiff", "audio/mpeg", "audio/wav", "video/x-ms-wmv",
                "application/octet-stream")  # fmt: skip

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "cmsv6 Open API",
        "version": "1",
        "description": (
            "Devices, positions, alarms, commands, live video, the devices' photos and files"
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
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": _SCHEMAS,
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"})},
            }
        },
        "/api/v1/login": {
            "post": {
                "summary": "Log in: a token, its expiry and the media server to use",
                "security": [],
                "requestBody": _body({
                    "type": "object", "required": ["username", "password"],
                    "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
                }),  # fmt: skip
                "responses": {
                    "200": _json({
                        "type": "object",
                        "properties": {
                            "token": {"type": "string"},
                            "expires": _TIME,
                            "user": {"type": "object", "properties": {
                                "name": {"type": "string"}, "role": {"type": "string"}}},
                            "media": {"type": "object", "properties": {
                                "web": {"type": "string", "nullable": True}}},
                        },
                    }),  # fmt: skip
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
                "responses": {"200": _json({"type": "object"}), "401": _UNAUTHORIZED},
            }
        },
        "/api/v1/me": {
            "get": {
                "summary": "The user of this token",
                "responses": {
                    "200": _json({"type": "object", "properties": {
                        "name": {"type": "string"}, "role": {"type": "string"}}}),
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
                    "200": {**_json({"type": "array", "items": _ref("Device")}),
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
                "responses": {"200": _json(_ref("Device")), "401": _UNAUTHORIZED,
                              "404": _NOT_FOUND},
            }
        },
        "/api/v1/devices/{phone}/positions": {
            "get": {
                "summary": "A device's positions in [from, to), oldest first, paged",
                "parameters": [_PHONE, _FROM, _TO, _LIMIT, _AFTER],
                "responses": {
                    "200": _json({
                        "type": "object",
                        "properties": {
                            "phone": {"type": "string"},
                            "positions": {"type": "array", "items": _ref("Position")},
                            "next": {"type": "string", "nullable": True,
                                     "description": "Pass as `after` for the next page"},
                        },
                    }),  # fmt: skip
                    "400": _BAD, "401": _UNAUTHORIZED, "404": _NOT_FOUND,
                },
            }
        },
        "/api/v1/devices/{phone}/commands": {
            "post": {
                "summary": "Send a command to an online device and wait for its reply",
                "parameters": [_PHONE],
                "requestBody": _body(_ref("Command")),
                "responses": {
                    "200": _json(_ref("CommandResult")),
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
                    "503": _error("The device's gateway is unavailable"),
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
                "requestBody": _body({"type": "object", "properties": {
                    "channel": {"type": "integer", "minimum": 1, "maximum": 64, "default": 1},
                    "stream": {"type": "string", "enum": ["main", "sub"], "default": "main"},
                }}),  # fmt: skip
                "responses": {
                    "200": _json({"type": "object", "properties": {
                        "ws_flv": {"type": "string", "description": "ws:// (wss://) URL"},
                        "http_flv": {"type": "string", "description": "http:// (https://) URL"},
                        "codec": {"type": "string", "nullable": True, "enum": ["h264", "h265", None],
                                  "description": "The video codec the device's audio/video"
                                                 " attributes (0x1003) announce, null when not"
                                                 " known: login asks them (0x9003) when a"
                                                 " stream of the device opens and remembers"
                                                 " them; this answer never waits for them, and"
                                                 " many devices never say"},
                        "audio": {"type": "string", "nullable": True, "enum": ["aac", None],
                                  "description": "\"aac\" when the device's attributes announce"
                                                 " audio the media server gives browsers (as"
                                                 " AAC, transcoded from G.711, G.726 or"
                                                 " ADPCM); null when they announce none, or"
                                                 " are not known (audio may still come)"},
                        "expires": {"type": "string", "format": "date-time",
                                    "description": "When the URLs' token stops working"},
                    }, "required": ["ws_flv", "http_flv", "codec", "audio", "expires"]}),
                    "400": _error("A channel that is not 1 to 64, or beyond the device's"
                                  " `channels` (bad_channel), or a stream not main or sub"),
                    "401": _UNAUTHORIZED, "404": _NOT_FOUND, "413": _TOO_LARGE,
                    "409": _error("The device is offline (device_offline)"),
                    "503": _error("No media server is available (media_unavailable)"),
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
                    "200": _json({"type": "object", "properties": {
                        "alarms": {"type": "array", "items": _ref("Alarm")},
                        "next": {"type": "string", "nullable": True}}}),
                    "400": _BAD, "401": _UNAUTHORIZED, "404": _NOT_FOUND,
                },  # fmt: skip
            }
        },
        "/api/v1/alarms/{alarm_id}": {
            "post": {
                "summary": "Handle an alarm: set its state with a note (recorded with user and time)",
                "parameters": [{"name": "alarm_id", "in": "path", "required": True,
                                "schema": {"type": "integer"}}],
                "requestBody": _body({
                    "type": "object", "required": ["state"],
                    "properties": {
                        "state": {"type": "string", "enum": ["acknowledged", "handled", "dismissed"]},
                        "note": {"type": "string", "maxLength": 2000},
                    },
                }),  # fmt: skip
                "responses": {
                    "200": _json(_ref("Alarm")), "400": _BAD, "401": _UNAUTHORIZED,
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
                    "200": _json({"type": "object", "properties": {
                        "audit": {"type": "array", "items": _ref("AuditEntry")},
                        "next": {"type": "string", "nullable": True}}}),
                    "400": _BAD, "401": _UNAUTHORIZED, "403": _ADMINS,
                },  # fmt: skip
            }
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
