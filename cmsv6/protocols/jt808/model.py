"""Message classes: each JT/T 808 body is an attrs value object with its construct format.

A body class is declared once, with typed attributes and a module-level construct
``FORMAT`` whose named fields are exactly those attributes::

    @message(0x0102)
    @frozen
    class Authenticate:
        auth_code: str
        imei: str | None = None
        software_version: str | None = None

        FORMAT = Struct(...)

``message`` registers the class under its id and gives it ``CODEC``, the construct that
parses bytes straight into the class and builds bytes from an instance. The construct
``FORMAT`` is the reference for every format; hand-written fast paths (``fast.py``) are
checked against it.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import attrs
from construct import Adapter, Construct, GreedyBytes, Struct

from cmsv6.protocols.jt808.errors import CodecError

T = TypeVar("T")

#: Every registered body class, by message id.
MESSAGES: dict[int, type] = {}


class RecordAdapter(Adapter):  # type: ignore[misc]
    """Parses a Struct into an attrs class and builds it back from an instance (or a dict)."""

    def __init__(self, subcon: Construct, cls: type) -> None:
        super().__init__(subcon)
        self.cls = cls
        self.names = tuple(f.name for f in attrs.fields(cls))

    def _decode(self, obj: Any, context: Any, path: str) -> Any:
        return self.cls(**{name: obj[name] for name in self.names})

    def _encode(self, obj: Any, context: Any, path: str) -> dict[str, Any]:
        if isinstance(obj, self.cls):
            return {name: getattr(obj, name) for name in self.names}
        if isinstance(obj, dict):
            missing = [name for name in self.names if name not in obj]
            if missing:
                raise CodecError(f"{self.cls.__name__} needs {', '.join(missing)}")
            return obj
        raise CodecError(f"expected {self.cls.__name__}, got {type(obj).__name__}")


def record(cls: type[T]) -> type[T]:
    """Give an attrs class with a ``FORMAT`` its ``CODEC`` (for nested items and bodies)."""
    fmt = cls.__dict__.get("FORMAT")
    if fmt is None:
        raise TypeError(f"{cls.__name__} has no FORMAT")
    struct_names = {sc.name for sc in getattr(fmt, "subcons", ()) if sc.name}
    field_names = {f.name for f in attrs.fields(cls)}  # type: ignore[arg-type]
    if isinstance(fmt, Struct) and not field_names <= struct_names:
        raise TypeError(f"{cls.__name__}: fields {field_names - struct_names} not in FORMAT")
    cls.CODEC = RecordAdapter(fmt, cls)  # type: ignore[attr-defined]
    return cls


def message(msg_id: int) -> Callable[[type[T]], type[T]]:
    """Register an attrs body class with a ``FORMAT`` under ``msg_id``."""

    def register(cls: type[T]) -> type[T]:
        if msg_id in MESSAGES:
            raise TypeError(f"0x{msg_id:04x} registered twice")
        record(cls)
        cls.MSG_ID = msg_id  # type: ignore[attr-defined]
        MESSAGES[msg_id] = cls
        return cls

    return register


@attrs.frozen
class RawBody:
    """The body of a message we have no format for, kept as it came."""

    data: bytes

    FORMAT = Struct("data" / GreedyBytes)


record(RawBody)
