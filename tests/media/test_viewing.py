"""Viewing tokens: a URL grants one stream of one device's channel on one media server,
for a short while, and nothing else."""

from __future__ import annotations

import pytest

from cmsv6.media.viewing import MAX_TOKEN, View, ViewRefused, allows, sign_view, verify_view, view_key
from cmsv6.rpc.keys import derive

MASTER = bytes(range(32))
KEY = view_key(derive(MASTER, "media-1"))
VIEW = View("media-1", "13900000000", 2, "sub", 1_000_120)


def test_login_signs_what_the_media_server_verifies() -> None:
    """Login derives the media server's key from the master; the media server has it from
    its own key file: the same view comes out, and it allows only what it names."""
    token = sign_view(KEY, VIEW)
    assert len(token) < 200 and token.isascii() and "/" not in token and "+" not in token
    view = verify_view(KEY, token, 1_000_000, "media-1")
    assert view == VIEW
    assert allows(view, "13900000000", 2, "sub")
    assert not allows(view, "13900000000", 2, "main")
    assert not allows(view, "13900000000", 1, "sub")
    assert not allows(view, "13900000001", 2, "sub")


@pytest.mark.parametrize(
    ("token", "now", "media", "why"),
    [
        ("", 1_000_000, "media-1", "no viewing token"),
        ("x" * (MAX_TOKEN + 1), 1_000_000, "media-1", "too long"),
        ("not a token", 1_000_000, "media-1", "malformed"),
        (sign_view(view_key(derive(MASTER, "media-2")), VIEW), 1_000_000, "media-1", "not signed"),
        (sign_view(view_key(derive(bytes(32), "media-1")), VIEW), 1_000_000, "media-1", "not signed"),
        (sign_view(KEY, VIEW), 1_000_121, "media-1", "expired"),
        (sign_view(KEY, View("media-2", "1", 1, "main", 2_000_000)), 1_000_000, "media-1", "media-2"),
    ],
)
def test_what_is_refused_says_why(token: str, now: int, media: str, why: str) -> None:
    with pytest.raises(ViewRefused, match=why):
        verify_view(KEY, token, now, media)


def test_a_changed_grant_is_refused() -> None:
    """Changing any byte of the grant (another phone, a later expiry) breaks the signature."""
    token = sign_view(KEY, VIEW)
    grant, mac = token.split(".")
    other = sign_view(KEY, View("media-1", "13900000001", 2, "sub", 1_000_120)).split(".")[0]
    with pytest.raises(ViewRefused, match="not signed"):
        verify_view(KEY, f"{other}.{mac}", 1_000_000, "media-1")
    assert verify_view(KEY, f"{grant}.{mac}", 1_000_000, "media-1") == VIEW
