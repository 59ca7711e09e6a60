"""Viewing tokens: what a video URL carries so that the media server serves it without a
database or a user session.

Login checks that the user may see the vehicle and signs a short-lived grant for one
device, channel and stream on one media server; the media server checks the signature and
the expiry and serves exactly that. The signing key is derived from the media server's
cluster key (``cmsv6 cluster key ID``), which login can derive from the master key, so no
other key is handed out, and a grant for one media server is worthless on another::

    token = base64url(JSON grant) "." base64url(HMAC-SHA256(view key, JSON grant))

The token is short (a few hundred characters at most) and URL-safe: it goes in the query string
(``?token=``), which a browser's WebSocket and ``ffplay`` can both send.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from attrs import frozen

#: How long login makes a grant live by default: enough to open the URL, not to share it.
DEFAULT_LIFETIME = 120

#: Longest token accepted (longer is refused before any work).
MAX_TOKEN = 512

STREAMS = ("main", "sub")


class ViewRefused(Exception):
    """A token that does not grant what was asked; the message says why, in words."""


@frozen
class View:
    """What a token grants: ``stream`` of ``channel`` of device ``phone``, on media server
    ``media``, until ``expires`` (Unix seconds).

    ``stream`` is "main" or "sub" for live video, "playback" for a recording played back,
    "talk" for talk-back. ``params`` (JSON-able, signed with the rest) says what exactly
    for those: a playback's session id, time range, mode and speed; a talk-back's session
    id and whether it is a broadcast."""

    media: str
    phone: str
    channel: int
    stream: str
    expires: int
    params: dict[str, Any] | None = None


def view_key(server_key: bytes) -> bytes:
    """The key that signs viewing tokens for the media server whose cluster key is
    ``server_key`` (separate from the key that proves it on cluster links)."""
    return hmac.new(server_key, b"cmsv6 viewing tokens", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_view(key: bytes, view: View) -> str:
    """The token for ``view``, signed with ``key`` (``view_key`` of the media server's)."""
    fields: dict[str, Any] = {"m": view.media, "p": view.phone, "c": view.channel,
                              "s": view.stream, "e": view.expires}  # fmt: skip
    if view.params is not None:
        fields["x"] = view.params
    grant = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return f"{_b64(grant)}.{_b64(hmac.new(key, grant, hashlib.sha256).digest())}"


def verify_view(key: bytes, token: str, now: float, media: str) -> View:
    """The view ``token`` grants on media server ``media`` at time ``now``; ViewRefused
    (saying why) if it is malformed, not signed with ``key``, for another media server, or
    expired. The caller still checks that the view is the one asked for (``allows``)."""
    if not token:
        raise ViewRefused("no viewing token (ask the Open API for the URL: POST .../live)")
    if len(token) > MAX_TOKEN:
        raise ViewRefused("viewing token too long")
    grant_text, _, mac_text = token.partition(".")
    try:
        grant, mac = _unb64(grant_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise ViewRefused("malformed viewing token") from None
    if not hmac.compare_digest(mac, hmac.new(key, grant, hashlib.sha256).digest()):
        raise ViewRefused("viewing token not signed for this media server")
    try:
        fields: Any = json.loads(grant)
        params = fields.get("x")
        if params is not None and not isinstance(params, dict):
            raise TypeError("params")
        view = View(str(fields["m"]), str(fields["p"]), int(fields["c"]), str(fields["s"]),
                    int(fields["e"]), params)  # fmt: skip
    except (ValueError, KeyError, TypeError):
        raise ViewRefused("malformed viewing token") from None
    if view.media != media:
        raise ViewRefused(f"viewing token for media server {view.media}, not this one ({media})")
    if view.expires < now:
        raise ViewRefused("viewing token expired (ask the Open API for a new URL)")
    return view


def allows(view: View, phone: str, channel: int, stream: str) -> bool:
    """Whether ``view`` grants exactly ``stream`` of ``channel`` of ``phone``."""
    return (view.phone, view.channel, view.stream) == (phone, channel, stream)
