"""Login's web endpoint serves the web client: its files at ``/`` (by default the one
installed with cmsv6) with the types and cache headers browsers need, its settings at
``/client/config.json``, the API's JSON 404 for what is not there, and a 503 in words for
its third-party files when ``make client`` never ran. Over a real loopback port, without a
database (nothing here reads one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from cmsv6.config import PACKAGED_CLIENT, WebConfig
from cmsv6.web.site import PACKAGED_CLIENT_DIR, make_site
from tests.web.support import FakeCluster, Web, call

ROOT = Path(__file__).resolve().parents[2]
INDEX = b"<!doctype html><title>cmsv6</title><script type=module src=app.js></script>\n"
APP = b"export const answer = 42;\n"


def _client(directory: Path, vendor: bool = True) -> Path:
    """A web client's files in ``directory`` (with its vendor/ or not)."""
    directory.mkdir(exist_ok=True)
    (directory / "index.html").write_bytes(INDEX)
    (directory / "app.js").write_bytes(APP)
    (directory / "style.css").write_bytes(b"body { margin: 0 }\n")
    if vendor:
        (directory / "vendor" / "leaflet").mkdir(parents=True)
        (directory / "vendor" / "leaflet" / "leaflet.js").write_bytes(b"window.L = {};\n")
        (directory / "vendor" / ".installed").write_bytes(b"")
    return directory


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(WebConfig)``: a site on a loopback port (its hub on a clock that never moves:
    no database is polled); a ``Web`` for ``tests.web.support.call``."""
    from twisted.internet import reactor

    ports = []

    def start(web: WebConfig, media: str | None = None) -> Web:
        cluster = FakeCluster()
        cluster.media = media
        site = make_site(None, cluster, task.Clock(), web)  # type: ignore[arg-type]
        port = reactor.listenTCP(0, site, interface="127.0.0.1")  # at once: called in tests
        ports.append(port)
        return Web("", None, cluster, site, port.getHost().port)  # type: ignore[arg-type]

    yield start
    for port in ports:
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


def _header(reply: Any, name: str) -> str:
    (value,) = reply.headers.getRawHeaders(name.encode())
    return str(value.decode())


@pytest_twisted.inlineCallbacks
def test_client_files_are_served_at_the_root(serve: Any, tmp_path: Path) -> None:
    """``/`` is the client's index.html; a JavaScript module is ``text/javascript``, a style
    sheet ``text/css``; every file says ``no-cache`` and ``nosniff`` and is revalidated (304
    while unchanged); the API and the WebSocket's path are still the API's."""
    web = serve(WebConfig(static=str(_client(tmp_path / "client"))))
    index = yield call(web, "GET", "/")
    assert index.status == 200 and index.body == INDEX.decode()
    assert _header(index, "content-type") == "text/html; charset=utf-8"
    app = yield call(web, "GET", "/app.js")
    assert app.status == 200 and app.body == APP.decode()
    assert _header(app, "content-type") == "text/javascript; charset=utf-8"
    assert _header(app, "cache-control") == "no-cache"
    assert _header(app, "x-content-type-options") == "nosniff"
    css = yield call(web, "GET", "/style.css")
    assert _header(css, "content-type") == "text/css; charset=utf-8"
    vendor = yield call(web, "GET", "/vendor/leaflet/leaflet.js")
    assert vendor.status == 200 and vendor.body == "window.L = {};\n"
    from twisted.internet import reactor

    since = Headers({b"if-modified-since": [_header(app, "last-modified").encode()]})
    response = yield Agent(reactor).request(b"GET", web.url("/app.js"), since)
    assert response.code == 304 and (yield readBody(response)) == b""
    api = yield call(web, "GET", "/api/v1/nothing")
    assert api.status == 404 and api.body["error"]["code"] == "no_route"


@pytest_twisted.inlineCallbacks
def test_what_is_not_a_file_is_the_apis_404(serve: Any, tmp_path: Path) -> None:
    """A path that names no file, a directory (no listing), a hidden file, or a way out of
    the client's directory is the API's JSON 404, and nothing of the disk is sent."""
    client = _client(tmp_path / "client")
    (tmp_path / "secret.txt").write_text("not for you")
    web = serve(WebConfig(static=str(client)))
    for path in ("/nothing.js", "/vendor", "/vendor/", "/vendor/leaflet/", "/vendor/.installed",
                 "/%2e%2e/secret.txt", "/vendor/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt",
                 "/%ff.js", "/metrics"):  # fmt: skip
        reply = yield call(web, "GET", path)
        assert reply.status == 404, path
        assert reply.body["error"]["code"] == "no_route", path


@pytest_twisted.inlineCallbacks
def test_missing_vendor_files_say_what_to_run(serve: Any, tmp_path: Path) -> None:
    """Without vendor/ (``make client`` never ran where cmsv6 was installed from), the page
    still loads and every ``/vendor/...`` file is a 503 whose words name the command."""
    web = serve(WebConfig(static=str(_client(tmp_path / "client", vendor=False))))
    index = yield call(web, "GET", "/")
    assert index.status == 200
    reply = yield call(web, "GET", "/vendor/mpegts.js/mpegts.js")
    assert reply.status == 503
    assert _header(reply, "content-type") == "text/plain; charset=utf-8"
    assert "make client" in reply.body and "not installed" in reply.body


@pytest_twisted.inlineCallbacks
def test_client_config(serve: Any, tmp_path: Path) -> None:
    """``/client/config.json`` gives ``[web] tiles`` and ``tiles_attribution`` and whether
    the media server is reached over https (none: false)."""
    settings = WebConfig(static="", tiles="https://tiles.example/{z}/{x}/{y}.png",
                         tiles_attribution="© Example")  # fmt: skip
    web = serve(settings, media="https://media.example:8443")
    reply = yield call(web, "GET", "/client/config.json")
    assert reply.status == 200
    assert reply.body == {"tiles": "https://tiles.example/{z}/{x}/{y}.png",
                          "attribution": "© Example", "media_https": True}  # fmt: skip
    web = serve(WebConfig(static="", tiles=""), media="http://127.0.0.1:8081")
    reply = yield call(web, "GET", "/client/config.json")
    assert reply.body == {"tiles": "", "attribution": WebConfig().tiles_attribution,
                          "media_https": False}  # fmt: skip
    web = serve(WebConfig(static=""), media=None)
    reply = yield call(web, "GET", "/client/config.json")
    assert reply.body["tiles"] == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert reply.body["media_https"] is False
    none = yield call(web, "GET", "/")  # static "": no client, the API's 404
    assert none.status == 404 and none.body["error"]["code"] == "no_route"


@pytest_twisted.inlineCallbacks
def test_default_is_the_packaged_client(serve: Any) -> None:
    """``[web] static`` is ``"packaged"`` by default: cmsv6/web/client, whose index.html
    is served at ``/``."""
    assert WebConfig().static == PACKAGED_CLIENT
    if not (PACKAGED_CLIENT_DIR / "index.html").is_file():
        pytest.skip("the web client has no index.html yet")
    web = serve(WebConfig())
    index = yield call(web, "GET", "/")
    assert index.status == 200
    assert index.body == (PACKAGED_CLIENT_DIR / "index.html").read_text(encoding="utf-8")


@pytest.mark.timeout(600)
def test_the_wheel_carries_the_client_and_the_schema(tmp_path: Path) -> None:
    """A wheel built from the tree (what ``pip install .`` installs) holds every file of the
    web client, its vendor/ files when ``make client`` has copied them, the schema's SQL and
    the Twisted plugin."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "var", "node_modules", "*.egg-info", "__pycache__"))
    client = source / "cmsv6" / "web" / "client"
    (client / "vendor" / "x").mkdir(parents=True, exist_ok=True)
    (client / "vendor" / "x" / "x.js").write_text("// a vendor file\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(tmp_path / "dist"), f"{source}/"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("cmsv6-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"cmsv6/web/client/{p.relative_to(client).as_posix()}"
                for p in client.rglob("*") if p.is_file() and not p.name.startswith(".")}  # fmt: skip
    assert "cmsv6/web/client/vendor/x/x.js" in expected
    assert expected <= names, sorted(expected - names)
    schema = {f"cmsv6/db/schema/{p.name}" for p in (ROOT / "cmsv6" / "db" / "schema").glob("*.sql")}
    assert schema and schema <= names, sorted(schema - names)
    assert "twisted/plugins/cmsv6_servers.py" in names
