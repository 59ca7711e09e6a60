"""Driving recorder (tachograph) messages: 0x8700 data collection, 0x8701 parameter download,
0x0700 data upload.

Each carries a GB/T 19056 data block: ``0x55 0x7A · command BYTE · length WORD · reserved
BYTE · data · XOR check`` (or, for an error answer, ``0x55 0x7A · 0xFA/0xFB · reserved ·
XOR``). A block that is exactly one well-formed packet is read as ``RecorderPacket`` or
``RecorderError``; anything else (an empty block, a bad check, a vendor's layout) stays raw
bytes. Either way the block re-encodes to the bytes it came from. The data inside a packet
(GB/T 19056 tables A.8 onwards) is left as bytes.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

from attrs import frozen
from construct import Adapter, GreedyBytes, Int8ub, Int16ub, Struct

from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.model import message

_HEAD = b"\x55\x7a"
#: GB/T 19056 error flags: data collection (upload) failed, parameter setting failed.
RECORDER_COLLECT_ERROR = 0xFA
RECORDER_SETTING_ERROR = 0xFB


def _xor(data: bytes) -> int:
    return reduce(lambda a, b: a ^ b, data, 0)


@frozen
class RecorderPacket:
    """One GB/T 19056 packet; the length and check are computed when it is written."""

    command: int
    data: bytes = b""
    reserved: int = 0


@frozen
class RecorderError:
    """A GB/T 19056 error answer (``RECORDER_COLLECT_ERROR`` or ``RECORDER_SETTING_ERROR``)."""

    command: int
    reserved: int = 0


RecorderBlock = RecorderPacket | RecorderError | bytes


def recorder_block_decode(raw: bytes) -> RecorderBlock:
    """The packet in a data block, or the bytes themselves when they are not exactly one."""
    if len(raw) >= 5 and raw[:2] == _HEAD and _xor(raw[:-1]) == raw[-1]:
        if len(raw) >= 7 and int.from_bytes(raw[3:5], "big") == len(raw) - 7:
            return RecorderPacket(raw[2], bytes(raw[6:-1]), raw[5])
        if len(raw) == 5 and raw[2] in (RECORDER_COLLECT_ERROR, RECORDER_SETTING_ERROR):
            return RecorderError(raw[2], raw[3])
    return bytes(raw)


def recorder_block_encode(block: RecorderBlock) -> bytes:
    if isinstance(block, (bytes, bytearray)):
        return bytes(block)
    if isinstance(block, RecorderPacket):
        if len(block.data) > 0xFFFF:
            raise CodecError(f"a recorder packet holds at most 65535 bytes, not {len(block.data)}")
        body = (
            _HEAD
            + bytes([block.command])
            + len(block.data).to_bytes(2, "big")
            + bytes([block.reserved])
            + block.data
        )
    elif isinstance(block, RecorderError):
        body = _HEAD + bytes([block.command, block.reserved])
    else:
        raise CodecError(f"a recorder block is a packet, an error or bytes, not {type(block).__name__}")
    return body + bytes([_xor(body)])


class _Block(Adapter):  # type: ignore[misc]
    """The rest of the body as a recorder block."""

    def __init__(self) -> None:
        super().__init__(GreedyBytes)

    def _decode(self, obj: bytes, context: Any, path: str) -> RecorderBlock:
        return recorder_block_decode(obj)

    def _encode(self, obj: RecorderBlock, context: Any, path: str) -> bytes:
        return recorder_block_encode(obj)


# GB/T 19056-2012 command words (collection 0x00-0x15, setting 0x82-0xC4).
RECORDER_VERSION = 0x00
RECORDER_DRIVER_INFO = 0x01
RECORDER_REAL_TIME = 0x02
RECORDER_MILEAGE = 0x03
RECORDER_PULSE_FACTOR = 0x04
RECORDER_VEHICLE_INFO = 0x05
RECORDER_SIGNAL_CONFIG = 0x06
RECORDER_UNIQUE_ID = 0x07
RECORDER_SET_VEHICLE_INFO = 0x82
RECORDER_SET_INSTALL_DATE = 0x83
RECORDER_SET_SIGNAL_CONFIG = 0x84
RECORDER_SET_TIME = 0xC2
RECORDER_SET_PULSE_FACTOR = 0xC3
RECORDER_SET_INITIAL_MILEAGE = 0xC4


@message(0x8700)
@frozen
class RecorderCollect:
    """The platform asks the recorder for data: the command word and its parameter block
    (which may be empty)."""

    command: int
    block: RecorderBlock = b""

    FORMAT = Struct("command" / Int8ub, "block" / _Block())


@message(0x8701)
@frozen
class RecorderSetParameters:
    """The platform sends recorder parameters: the command word and the parameter block."""

    command: int
    block: RecorderBlock = b""

    FORMAT = Struct("command" / Int8ub, "block" / _Block())


@message(0x0700)
@frozen
class RecorderUpload:
    """The recorder's answer: the request's serial, the command word and the data block."""

    reply_serial: int
    command: int
    block: RecorderBlock = b""

    FORMAT = Struct("reply_serial" / Int16ub, "command" / Int8ub, "block" / _Block())
