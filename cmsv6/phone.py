"""Terminal phone numbers: one canonical form for the 2013 BCD[6] and 2019 BCD[10] fields."""

from __future__ import annotations

import re

_VALID = re.compile(r"^[0-9a-f]{1,20}$")


def canonical_phone(phone: str) -> str:
    """The number without leading zeros (``013812345678`` and ``00000000013812345678`` are one
    device); ``0`` for all zeros. Letters (units that put hex in the field) are kept."""
    return phone.strip().lower().lstrip("0") or "0"


def valid_phone(phone: str) -> bool:
    return bool(_VALID.match(canonical_phone(phone)))
