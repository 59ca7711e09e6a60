"""How a webhook delivery is signed, and how a receiver checks it.

The signature is ``sha256=HEX``: the HMAC-SHA256, keyed with the webhook's secret, of the
attempt's Unix timestamp (``X-Cmsv6-Timestamp``), a dot, and the body's exact bytes. The
timestamp is signed so that a captured delivery cannot be replayed later: a receiver
refuses one whose timestamp is further than ``tolerance`` seconds from its own clock (and
de-duplicates by the event id within that window).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE = "X-Cmsv6-Signature"
TIMESTAMP = "X-Cmsv6-Timestamp"
EVENT = "X-Cmsv6-Event"
DELIVERY = "X-Cmsv6-Delivery"
#: How far a receiver accepts a timestamp from its clock, by default (seconds).
TOLERANCE = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Cmsv6-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signed: str, now: float,
           tolerance: float = TOLERANCE) -> bool:  # fmt: skip
    """Whether ``signed`` is the signature of ``body`` at ``timestamp``, and that timestamp
    within ``tolerance`` seconds of ``now``."""
    if not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), signed)
