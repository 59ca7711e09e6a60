"""The JT/T 808 message header, 2011/2013 and 2019 layouts.

::

    msg_id        WORD
    properties    WORD   bit 15 reserved · 14 version flag (2019) · 13 sub-package
                         12-10 encryption · 9-0 body length
    [protocol version BYTE]          2019 only
    phone         BCD[6] (2013) or BCD[10] (2019)
    serial        WORD
    [total WORD, index WORD]         when the sub-package bit is set

Real units set the 2019 bit on a 2013 layout, or send the 2019 layout without it. Which
layout a frame has is therefore decided from its length (``detect_layout``): the header
length plus the declared body length must account for every byte, and the version flag only
says which layout to try first.
"""

from __future__ import annotations

from struct import Struct as _Packer
from typing import Any

from attrs import frozen
from construct import (
    Adapter,
    BitsInteger,
    BitStruct,
    Flag,
    If,
    IfThenElse,
    Int8ub,
    Int16ub,
    Struct,
    this,
)

from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fields import Bcd, bcd_encode

MAX_BODY = 0x3FF
VERSION_FLAG = 0x4000
SUBPACKAGE_FLAG = 0x2000
RESERVED_FLAG = 0x8000
ENCRYPTION_MASK = 0x1C00
ENCRYPTION_RSA = 1


@frozen
class Packet:
    """Sub-package position: ``index`` of ``total``, counted from 1."""

    total: int
    index: int


@frozen
class Header:
    msg_id: int
    phone: str
    serial: int
    #: The header layout: 2013 (also 2011) or 2019.
    version: int = 2013
    #: The 2019 protocol-version byte (1 for JT/T 808-2019), None in a 2013 layout.
    protocol_version: int | None = None
    #: Encryption bits (10-12): 0 none, 1 RSA.
    encryption: int = 0
    packet: Packet | None = None
    #: Property bit 15, reserved; some units set it.
    reserved: bool = False

    def reply_header(self, msg_id: int, serial: int) -> Header:
        """A platform→terminal header for this terminal, in its version."""
        return Header(
            msg_id=msg_id,
            phone=self.phone,
            serial=serial,
            version=self.version,
            protocol_version=self.protocol_version,
        )


def header_length(version: int, subpackage: bool) -> int:
    return (17 if version == 2019 else 12) + (4 if subpackage else 0)


def detect_layout(properties: int, length: int) -> int:
    """The layout (2013 or 2019) that makes ``length`` bytes (header + body) add up.

    When neither does, the layout the version flag names, negated: the frame's body length
    field is wrong (units do send such frames) and the body is whatever bytes there are.
    """
    body = properties & MAX_BODY
    sub = bool(properties & SUBPACKAGE_FLAG)
    order = (2019, 2013) if properties & VERSION_FLAG else (2013, 2019)
    for version in order:
        if header_length(version, sub) + body == length:
            return version
    return -order[0]


# -- the construct reference -------------------------------------------------------------

Properties = BitStruct(
    "reserved" / Flag,
    "version_flag" / Flag,
    "subpackage" / Flag,
    "encryption" / BitsInteger(3),
    "body_length" / BitsInteger(10),
)

_is2019 = this._params.layout == 2019

HeaderStruct = Struct(
    "msg_id" / Int16ub,
    "properties" / Properties,
    "protocol_version" / If(_is2019, Int8ub),
    "phone" / IfThenElse(_is2019, Bcd(10), Bcd(6)),
    "serial" / Int16ub,
    "packet" / If(this.properties.subpackage, Struct("total" / Int16ub, "index" / Int16ub)),
)


class _HeaderAdapter(Adapter):  # type: ignore[misc]
    """HeaderStruct ⇄ (Header, body length). Build takes ``(header, body_length)``."""

    def _decode(self, obj: Any, context: Any, path: str) -> tuple[Header, int]:
        p = obj.properties
        packet = Packet(obj.packet.total, obj.packet.index) if obj.packet else None
        header = Header(
            msg_id=obj.msg_id,
            phone=obj.phone,
            serial=obj.serial,
            version=context._params.layout,
            protocol_version=obj.protocol_version,
            encryption=p.encryption,
            packet=packet,
            reserved=p.reserved,
        )
        return header, p.body_length

    def _encode(self, obj: tuple[Header, int], context: Any, path: str) -> dict[str, Any]:
        header, body_length = obj
        if body_length > MAX_BODY:
            raise CodecError(f"a body of {body_length} bytes needs sub-packages")
        if context._params.layout != header.version:
            raise CodecError("layout parameter disagrees with the header's version")
        v2019 = header.version == 2019
        return dict(
            msg_id=header.msg_id,
            properties=dict(
                reserved=header.reserved,
                version_flag=v2019,
                subpackage=header.packet is not None,
                encryption=header.encryption,
                body_length=body_length,
            ),
            protocol_version=(1 if header.protocol_version is None else header.protocol_version)
            if v2019
            else None,
            phone=header.phone,
            serial=header.serial,
            packet=dict(total=header.packet.total, index=header.packet.index)
            if header.packet
            else None,
        )


#: The reference header codec. Parse and build with ``layout=2013|2019``.
HEADER = _HeaderAdapter(HeaderStruct)


# -- the fast path -----------------------------------------------------------------------

_WW = _Packer(">HH")
_W = _Packer(">H")
_H2013 = _Packer(">HH6sH")
_H2019 = _Packer(">HHB10sH")


def parse_header(data: bytes, layout: int) -> tuple[Header, int, int]:
    """Fast parse: ``(header, body_length, header_length)``; ``data`` must be long enough."""
    if layout == 2013:
        msg_id, props, phone, serial = _H2013.unpack_from(data)
        pv = None
        offset = 12
    else:
        msg_id, props, pv, phone, serial = _H2019.unpack_from(data)
        offset = 17
    packet = None
    if props & SUBPACKAGE_FLAG:
        packet = Packet(*_WW.unpack_from(data, offset))
        offset += 4
    header = Header(
        msg_id,
        phone.hex(),
        serial,
        layout,
        pv,
        (props & ENCRYPTION_MASK) >> 10,
        packet,
        bool(props & RESERVED_FLAG),
    )
    return header, props & MAX_BODY, offset


def build_header(header: Header, body_length: int) -> bytes:
    """Fast build of the header bytes for a body of ``body_length`` bytes."""
    if body_length > MAX_BODY:
        raise CodecError(f"a body of {body_length} bytes needs sub-packages")
    props = body_length | (header.encryption << 10)
    if header.reserved:
        props |= RESERVED_FLAG
    if header.packet is not None:
        props |= SUBPACKAGE_FLAG
    if header.version == 2019:
        props |= VERSION_FLAG
        pv = 1 if header.protocol_version is None else header.protocol_version
        out = _H2019.pack(header.msg_id, props, pv, bcd_encode(header.phone, 10), header.serial)
    else:
        out = _H2013.pack(header.msg_id, props, bcd_encode(header.phone, 6), header.serial)
    if header.packet is not None:
        out += _WW.pack(header.packet.total, header.packet.index)
    return out
