"""Salted scrypt password hashes (hashlib's scrypt; no extra dependency).

A hash is ``scrypt$N$r$p$salt$digest`` (salt and digest in base64), so a hash keeps the
parameters it was made with: raising them leaves old hashes verifying, and
``needs_rehash`` tells the login to store a new one (``cmsv6.web.auth``).

The parameters are OWASP's current recommendation for scrypt (Password Storage Cheat
Sheet: N=2^17, r=8, p=1), which costs 128 MiB and a few hundred milliseconds a check.
Hashes made before issue 9 have N=2^14.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P = 2**17, 8, 1
#: scrypt needs 128·N·r bytes; OpenSSL's default ceiling (32 MiB) is below OWASP's N.
#: Twice what N=2^17 needs: a stored hash asking for more is refused, not computed.
MAX_MEMORY = 2 * 128 * N * R


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32,
                            maxmem=MAX_MEMORY)  # fmt: skip
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            dklen=len(want), maxmem=MAX_MEMORY,
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with other parameters than today's (a weaker N)."""
    parts = stored.split("$")
    return len(parts) != 6 or parts[0] != "scrypt" or parts[1:4] != [str(N), str(R), str(P)]
