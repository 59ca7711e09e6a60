"""Photos and files devices uploaded, through the Open API: listed by device (fleet by
fleet, paged) and downloaded as they were stored, only from the media directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import pytest_twisted
from twisted.internet import defer
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from tests.support.database import query
from tests.web.support import NORTH, SOUTH, Web, call, login


def add_file(web: Web, phone: str, data: bytes, name: str, media_id: int = 1,
             fmt: int = 0, path: str | None = None) -> int:  # fmt: skip
    """A file of ``phone``'s in the site's media directory, laid out as the gateway lays it
    out (or a row naming ``path``); its id."""
    where = Path(web.site.api.media_dir) / phone / "20261125" / name
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_bytes(data)
    return int(query(
        web.dsn, "INSERT INTO media_files (device_id, media_id, media_type, format, event,"
        " channel, path, size, received) VALUES (%s, %s, 0, %s, 1, 2, %s, %s, now())"
        " RETURNING id", (web.device_id(phone), media_id, fmt, path or str(where), len(data)),
    )[0][0])  # fmt: skip


@attrs.frozen
class Download:
    status: int
    data: bytes
    headers: Headers
    length: Any  # the Content-Length (twisted's client takes it out of the headers)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode())
        return values[0].decode() if values else None


@defer.inlineCallbacks
def download(web: Web, file_id: int | str, token: str) -> Any:
    """GET /api/v1/media/ID: the status, the bytes as they came, the headers."""
    from twisted.internet import reactor

    headers = Headers({b"authorization": [f"Bearer {token}".encode()]})
    response = yield Agent(reactor).request(b"GET", web.url(f"/api/v1/media/{file_id}"), headers)
    data = yield readBody(response)
    return Download(response.code, data, response.headers, response.length)


@pytest_twisted.inlineCallbacks
def test_files_listed_newest_first_in_pages(web: Web, tmp_path: Path) -> None:
    """A device's files come newest first; the Link header's next page, followed to the
    end, gives each once; another device's files are not among them."""
    web.site.api.media_dir = tmp_path
    ids = [add_file(web, NORTH, b"x" * (i + 1), f"02000{i}-{i}-2.jpg", media_id=i) for i in range(5)]
    add_file(web, SOUTH, b"south", "020000-9-1.jpg", media_id=9)
    token = yield login(web, "olga")
    seen: list[int] = []
    path: str | None = f"/api/v1/devices/{NORTH}/media?limit=2"
    pages = 0
    while path is not None:
        page = yield call(web, "GET", path, token=token)
        assert page.status == 200, page.body
        pages += 1
        seen += [m["id"] for m in page.body]
        link = page.headers.getRawHeaders(b"link")
        path = link[0].decode().split(">")[0].lstrip("<") if link else None
        assert pages <= 5, "the pages do not end"
    assert seen == sorted(ids, reverse=True)
    whole = yield call(web, "GET", f"/api/v1/devices/{NORTH}/media", token=token)
    first = whole.body[0]
    assert (first["id"], first["phone"], first["media_id"], first["size"]) == (ids[-1], NORTH, 4, 5)
    assert (first["content_type"], first["channel"], first["url"]) == (
        "image/jpeg", 2, f"/api/v1/media/{ids[-1]}")
    for bad in ("limit=0", "limit=x", "after=x", "after=-1", "after=" + "9" * 30):
        reply = yield call(web, "GET", f"/api/v1/devices/{NORTH}/media?{bad}", token=token)
        assert reply.status == 400, bad


@pytest_twisted.inlineCallbacks
def test_other_fleets_files_are_not_there(web: Web, tmp_path: Path) -> None:
    """An operator gets 404 for another fleet's device's list and files, exactly as for
    ones that do not exist; an admin gets them."""
    web.site.api.media_dir = tmp_path
    theirs = add_file(web, SOUTH, b"south photo", "020000-9-1.jpg")
    token = yield login(web, "olga")
    hidden = yield call(web, "GET", f"/api/v1/devices/{SOUTH}/media", token=token)
    assert hidden.status == 404
    hidden = yield download(web, theirs, token)
    missing = yield download(web, theirs + 1000, token)
    assert hidden.status == missing.status == 404
    assert hidden.data == missing.data and b"south photo" not in hidden.data
    for bad in ("abc", "0", "-1", "9" * 30):
        reply = yield download(web, bad, token)
        assert reply.status == 404, bad
    admin = yield login(web, "root")
    reply = yield download(web, theirs, admin)
    assert (reply.status, reply.data) == (200, b"south photo")


@pytest_twisted.inlineCallbacks
def test_download_streams_the_file_as_stored(web: Web, tmp_path: Path) -> None:
    """A file comes back byte for byte, with its format's Content-Type, its
    Content-Length, and never sniffed; one bigger than the transport's buffers too."""
    web.site.api.media_dir = tmp_path
    photo = bytes(range(256)) * 4096 + b"\xff\xd9"  # 1 MiB and a bit
    jpeg = add_file(web, NORTH, photo, "020000-1-2.jpg")
    wav = add_file(web, NORTH, b"RIFF....WAVE", "020001-2-2.wav", fmt=3)
    odd = add_file(web, NORTH, b"<html>", "020002-3-2.bin", fmt=9)
    token = yield login(web, "olga")
    reply = yield download(web, jpeg, token)
    assert reply.status == 200 and reply.data == photo
    assert reply.header("content-type") == "image/jpeg"
    assert reply.length == len(photo)
    assert reply.header("x-content-type-options") == "nosniff"
    reply = yield download(web, wav, token)
    assert (reply.data, reply.header("content-type")) == (b"RIFF....WAVE", "audio/wav")
    reply = yield download(web, odd, token)
    assert (reply.data, reply.header("content-type")) == (b"<html>", "application/octet-stream")


@pytest_twisted.inlineCallbacks
def test_only_files_in_the_media_directory(web: Web, tmp_path: Path) -> None:
    """A row naming a file outside the media directory (directly, through "..", or through
    a link inside it) or a file gone from the disk is a 404, and nothing of it is sent."""
    media = tmp_path / "media"
    media.mkdir()
    web.site.api.media_dir = media
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for devices")
    (media / NORTH).mkdir()
    os.symlink(secret, media / NORTH / "link.jpg")
    rows = [
        add_file(web, NORTH, b"x", "a.jpg", path=str(secret)),
        add_file(web, NORTH, b"x", "b.jpg", path=str(media / NORTH / ".." / ".." / "secret.txt")),
        add_file(web, NORTH, b"x", "c.jpg", path=str(media / NORTH / "link.jpg")),
        add_file(web, NORTH, b"x", "d.jpg", path=str(media / NORTH / "gone.jpg")),
        add_file(web, NORTH, b"x", "e.jpg", path=str(media / NORTH)),  # a directory
    ]
    good = add_file(web, NORTH, b"fine", "f.jpg")
    token = yield login(web, "olga")
    for row in rows:
        reply = yield download(web, row, token)
        assert reply.status == 404, row
        assert b"not for devices" not in reply.data
    reply = yield download(web, good, token)
    assert (reply.status, reply.data) == (200, b"fine")
