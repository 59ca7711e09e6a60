"""Login's web endpoint over TLS: an ``ssl:`` endpoint string with a certificate made here
(``cryptography``, which twisted[tls] brings) serves the Open API over HTTPS (with HSTS),
and the video and talk-back URLs are secure when the media server's public_web is."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, endpoints, ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, readBody
from twisted.web.http_headers import Headers

from cmsv6.config import WebConfig
from cmsv6.db.service import Database
from cmsv6.web.site import make_site
from tests.web.support import NORTH, PASSWORD, WAIT, FakeCluster, seed


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_file, cert_file = directory / "web.key", directory / "web.crt"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


@pytest_twisted.inlineCallbacks
def test_open_api_over_an_ssl_endpoint(dsn: str, tmp_path: Path) -> None:
    """``ssl:0:interface=127.0.0.1:privateKey=KEY:certKey=CERT`` serves the Open API: a client
    that trusts the certificate logs in over HTTPS and gets HSTS; the live, playback and
    talk answers are wss:// and https:// on an https media server."""
    from twisted.internet import reactor

    seed(dsn)
    key, cert = certificate(tmp_path)
    db = Database(dsn, reactor, size=2)
    db.startService()
    yield db.ready()
    cluster = FakeCluster()
    cluster.gateways[NORTH] = "gw-1"
    cluster.media = "https://media.example:8443"
    site = make_site(db, cluster, reactor, WebConfig(poll_interval=0.1))
    endpoint = endpoints.serverFromString(
        reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    port = yield endpoint.listen(site)
    base = f"https://127.0.0.1:{port.getHost().port}"
    trust = ssl.Certificate.loadPEM(cert.read_bytes())
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=trust))

    @defer.inlineCallbacks
    def call(method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        from twisted.web.client import FileBodyProducer
        from io import BytesIO

        headers = Headers()
        if token:
            headers.addRawHeader(b"authorization", f"Bearer {token}".encode())
        producer = FileBodyProducer(BytesIO(json.dumps(body).encode())) if body is not None else None
        response = yield agent.request(method.encode(), f"{base}{path}".encode(), headers,
                                       producer).addTimeout(WAIT, reactor)  # fmt: skip
        content = yield readBody(response)
        return response, json.loads(content)

    try:
        response, body = yield call("POST", "/api/v1/login", {"username": "olga", "password": PASSWORD})
        assert response.code == 200, body
        assert response.headers.getRawHeaders(b"strict-transport-security") == [b"max-age=31536000"]
        token = body["token"]
        _, live = yield call("POST", f"/api/v1/devices/{NORTH}/live", {"channel": 1}, token)
        _, play = yield call("POST", f"/api/v1/devices/{NORTH}/playback",
                             {"channel": 1, "from": "2026-11-24T01:00:00Z"}, token)  # fmt: skip
        _, talk = yield call("POST", f"/api/v1/devices/{NORTH}/talk", {"channel": 1}, token)
        for answer in (live, play):
            assert answer["ws_flv"].startswith("wss://media.example:8443/"), answer
            assert answer["http_flv"].startswith("https://media.example:8443/"), answer
        assert talk["ws"].startswith(f"wss://media.example:8443/talk/{NORTH}/1?token="), talk
    finally:
        yield port.stopListening()
        yield site.hub.stop()
        yield db.stopService()
