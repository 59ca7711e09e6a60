"""Session messages: responses, heartbeat, registration, authentication, time, re-send."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from attrs import field, frozen
from construct import (
    Computed,
    Construct,
    GreedyBytes,
    If,
    IfThenElse,
    Int8ub,
    Int16ub,
    PrefixedArray,
    Struct,
    this,
)
from construct.core import stream_size, stream_tell

from cmsv6.protocols.jt808.fields import V2019, BcdTimeUTC, PrefixedText, Text, Tuple
from cmsv6.protocols.jt808.model import message

# Result codes of 0x0001 / 0x8001.
RESULT_OK = 0
RESULT_FAILED = 1
RESULT_BAD_MESSAGE = 2
RESULT_UNSUPPORTED = 3
RESULT_ALARM_CONFIRMED = 4  # 0x8001 only


@message(0x0001)
@frozen
class TerminalResponse:
    """Terminal general response: the device's answer to a platform message. ``rest``
    keeps bytes a unit sends after the result (a vendor field), as 0x0200 does."""

    reply_serial: int
    reply_id: int
    result: int = RESULT_OK
    rest: bytes = b""

    FORMAT = Struct(
        "reply_serial" / Int16ub, "reply_id" / Int16ub, "result" / Int8ub, "rest" / GreedyBytes
    )


@message(0x8001)
@frozen
class PlatformResponse:
    """Platform general response (``rest`` as in 0x0001)."""

    reply_serial: int
    reply_id: int
    result: int = RESULT_OK
    rest: bytes = b""

    FORMAT = TerminalResponse.FORMAT


@message(0x0002)
@frozen
class Heartbeat:
    FORMAT = Struct()


@message(0x0003)
@frozen
class Logout:
    FORMAT = Struct()


@message(0x0004)
@frozen
class QueryServerTime:
    """2019: the terminal asks for the platform's time."""

    FORMAT = Struct()


@message(0x8004)
@frozen
class ServerTime:
    """2019: the platform's time, in UTC."""

    time: datetime | None

    FORMAT = Struct("time" / BcdTimeUTC)


_ResendIds = IfThenElse(V2019, PrefixedArray(Int16ub, Int16ub), PrefixedArray(Int8ub, Int16ub))


@message(0x8003)
@frozen
class ResendRequest:
    """Platform asks for sub-packages again: the first packet's serial and the indexes.

    The count is a BYTE in 2013 and a WORD in 2019.
    """

    first_serial: int
    indexes: tuple[int, ...] = field(converter=tuple)

    FORMAT = Struct("first_serial" / Int16ub, "indexes" / Tuple(_ResendIds))


@message(0x0005)
@frozen
class TerminalResendRequest:
    """2019: the terminal asks for sub-packages of a platform message again."""

    first_serial: int
    indexes: tuple[int, ...] = field(converter=tuple)

    FORMAT = ResendRequest.FORMAT


# Plate colours (JT/T 415): 0 = no plate (VIN in the plate field).
PLATE_COLOR_NONE = 0


def _register_layout(layout: int, manufacturer: int, model: int, terminal_id: int) -> Struct:
    return Struct(
        "layout" / Computed(layout),
        "province" / Int16ub,
        "city" / Int16ub,
        "manufacturer" / Text(manufacturer),
        "model" / Text(model),
        "terminal_id" / Text(terminal_id),
        "plate_color" / Int8ub,
        "plate" / Text(),
    )


class _RegisterFormat(Construct):  # type: ignore[misc]
    """2019 from the header; 2011 and 2013 share a header, so they are told apart by size:
    a 2013 body has 37 bytes before the plate, a 2011 one 25."""

    LAYOUTS = {
        2011: _register_layout(2011, 5, 8, 7),
        2013: _register_layout(2013, 5, 20, 7),
        2019: _register_layout(2019, 11, 30, 30),
    }

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        if context._params.version == 2019:
            layout = 2019
        elif stream_size(stream) - stream_tell(stream, path) < 37:
            layout = 2011
        else:
            layout = 2013
        return self.LAYOUTS[layout]._parsereport(stream, context, path)

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        layout = obj.get("layout") or (2019 if context._params.version == 2019 else 2013)
        return self.LAYOUTS[layout]._build(obj, stream, context, path)


@message(0x0100)
@frozen
class Register:
    """Terminal registration. 2011: 8-byte model; 2013: 20; 2019: 11/30/30-byte ids.

    ``plate`` holds the VIN when ``plate_color`` is 0. ``layout`` says which of the three
    was read or is to be written (2011 and 2013 share a header).
    """

    province: int
    city: int
    manufacturer: str
    model: str
    terminal_id: str
    plate_color: int
    plate: str
    layout: int | None = None

    FORMAT = _RegisterFormat()


REGISTER_OK = 0
REGISTER_VEHICLE_TAKEN = 1
REGISTER_NO_VEHICLE = 2
REGISTER_TERMINAL_TAKEN = 3
REGISTER_NO_TERMINAL = 4


@message(0x8100)
@frozen
class RegisterResponse:
    """The platform's answer to 0x0100; the auth code comes only with result 0."""

    reply_serial: int
    result: int
    auth_code: str | None = None

    FORMAT = Struct(
        "reply_serial" / Int16ub,
        "result" / Int8ub,
        "auth_code" / If(this.result == REGISTER_OK, Text()),
    )


@message(0x0102)
@frozen
class Authenticate:
    """Terminal authentication. 2019 adds a length byte, the IMEI and software version."""

    auth_code: str
    imei: str | None = None
    software_version: str | None = None

    FORMAT = IfThenElse(
        V2019,
        Struct(
            "auth_code" / PrefixedText(Int8ub),
            "imei" / Text(15),
            "software_version" / Text(20),
        ),
        Struct(
            "auth_code" / Text(),
            "imei" / Computed(None),
            "software_version" / Computed(None),
        ),
    )
