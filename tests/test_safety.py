"""docs/operations.md's "Running it safely", followed as written on this machine: the database set
up by its owner with ``cmsv6 db upgrade --app-role``, the servers connected as that role
(which may read and write rows and nothing more), login's web endpoint on ``ssl:`` with a
certificate made by the README's ``openssl`` command (HTTPS with HSTS, no plain HTTP), and
``/metrics`` only on the private ``metrics`` endpoint."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import psycopg2
import pytest
import pytest_twisted

from cmsv6.cli import main
from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.db.upgrade import RoleError, grant_app_role
from cmsv6.db.users import add_user
from tests.support.device import connect, location
from tests.support.process import GatewayProcess, LoginProcess, free_port, wait_port
from tests.support.ready import database_connected

#: A guard against hanging, for each wait.
WAIT = 30.0


def _connect(dsn: str) -> Any:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def _one(dsn: str, query: str, args: tuple[Any, ...] = ()) -> Any:
    conn = _connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchone()
    finally:
        conn.close()


def _refused(dsn: str, statement: str) -> bool:
    """``statement`` run as ``dsn``'s role is refused for want of privilege."""
    conn = _connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    except psycopg2.errors.InsufficientPrivilege:
        return True
    finally:
        conn.close()
    return False


@pytest.fixture
def operator_db(pg_cluster: EmbeddedPostgres) -> Iterator[tuple[str, str]]:
    """(owner's DSN, servers' DSN) of a database set up as the README says: the superuser
    makes the two roles and the database, the owner runs ``cmsv6 db upgrade --app-role``."""
    suffix = f"{time.monotonic_ns() % 10**9}"
    db, owner, app = f"safe_{suffix}", f"owner_{suffix}", f"app_{suffix}"
    pg_cluster.psql(f"CREATE ROLE {owner} LOGIN")
    pg_cluster.psql(f"CREATE ROLE {app} LOGIN")
    pg_cluster.psql(f"CREATE DATABASE {db} OWNER {owner}")
    base = f"host=127.0.0.1 port={pg_cluster.port} dbname={db}"
    try:
        assert main(["db", "upgrade", "--dsn", f"{base} user={owner}", "--app-role", app]) == 0
        yield f"{base} user={owner}", f"{base} user={app}"
    finally:
        pg_cluster.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        pg_cluster.psql(f"DROP ROLE IF EXISTS {app}")
        pg_cluster.psql(f"DROP ROLE {owner}")


def test_servers_role_has_rows_only(operator_db: tuple[str, str]) -> None:
    """The role ``--app-role`` made is no superuser, owns nothing, cannot create roles,
    databases or tables, alter or truncate the schema, or rewrite its version; it reads and
    writes rows, uses sequences and has a month's positions partition made (owned by the
    owner)."""
    owner, app = operator_db
    name = _one(app, "SELECT current_user")[0]
    assert _one(app, "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
                " FROM pg_roles WHERE rolname = current_user") == (False,) * 5  # fmt: skip
    for statement in (
        "CREATE ROLE intruder LOGIN SUPERUSER", "CREATE ROLE intruder", "CREATE DATABASE intruder",
        "CREATE TABLE intruder (x int)", "ALTER TABLE devices ADD COLUMN intruder int",
        "DROP TABLE audit", "TRUNCATE audit", "UPDATE schema_version SET name = name",
        "CREATE TABLE positions_2031_05 PARTITION OF positions"
        " FOR VALUES FROM ('2031-05-01 00:00+00') TO ('2031-06-01 00:00+00')",
    ):  # fmt: skip
        assert _refused(app, statement), statement
    assert _one(app, "SELECT count(*) FROM pg_class WHERE relowner = current_user::regrole")[0] == 0
    assert _one(app, "INSERT INTO fleets (name) VALUES ('f') RETURNING id")[0] > 0
    assert _one(app, "SELECT count(*) FROM schema_version")[0] > 0
    # The positions' day partitions are made by the owner's function, which the servers'
    # role may run: the tables it makes are the owner's, never the servers' role's.
    assert _one(app, "SELECT count(*) FROM cmsv6_position_maintain(now(), 14, 180)")[0] >= 0
    today = _one(owner, "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM_DD')")[0]
    assert _one(owner, "SELECT pg_get_userbyid(relowner) FROM pg_class"
                " WHERE relname = %s", (f"positions_{today}",))[0] != name  # fmt: skip
    with pytest.raises(psycopg2.errors.InvalidParameterValue):
        _one(app, "SELECT cmsv6_position_partition(2031, 13)")


def test_app_role_refuses_a_powerful_role(
    pg_cluster: EmbeddedPostgres, operator_db: tuple[str, str]
) -> None:
    """``--app-role`` will not hand the servers a role that may create roles, nor the
    owner's own role."""
    owner, app = operator_db
    name = _one(app, "SELECT current_user")[0]
    pg_cluster.psql(f"ALTER ROLE {name} CREATEROLE")
    with pytest.raises(RoleError, match="may create roles"):
        grant_app_role(owner, name)
    with pytest.raises(RoleError, match="owns the schema"):
        grant_app_role(owner, _one(owner, "SELECT current_user")[0])
    assert main(["db", "upgrade", "--dsn", owner, "--app-role", name]) == 1


@pytest_twisted.inlineCallbacks
def test_gateway_stores_as_the_servers_role(operator_db: tuple[str, str], tmp_path: Path) -> Any:
    """A gateway connected as the servers' role registers a device and stores its position
    in a month no partition existed for (made at run time through the owner's function)."""
    from twisted.internet import reactor

    owner, app = operator_db
    port = free_port()
    gateway = GatewayProcess(app, port, tmp_path)
    gateway.start()
    try:
        yield database_connected(gateway)
        dev = yield connect(reactor, port, "13800000071")
        yield dev.login()
        dev.send(location())
        ack = yield dev.next(0x8001)
        assert ack.body.result == 0
        assert _one(owner, "SELECT count(*) FROM positions")[0] == 1
        dev.transport.loseConnection()
        yield dev.lost.addTimeout(WAIT, reactor)
    finally:
        gateway.stop()
    assert "permission denied" not in (tmp_path / "gateway-1.log").read_text()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """The README's self-signed certificate command, for the names of this machine."""
    key, cert = directory / "web.key", directory / "web.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def _get(connection: http.client.HTTPConnection, path: str, body: Any = None) -> Any:
    connection.request("POST" if body is not None else "GET", path,
                       json.dumps(body) if body is not None else None)  # fmt: skip
    response = connection.getresponse()
    return response, response.read()


def test_login_over_https(operator_db: tuple[str, str], tmp_path: Path) -> None:
    """``twistd login`` with ``--web ssl:...`` and the README's certificate, connected as
    the servers' role: HTTPS answers (the certificate verifies for 127.0.0.1; HSTS sent) and
    a user logs in; plain HTTP on that port gets no HTTP answer; /metrics is 404 there and
    served on the metrics endpoint."""
    owner, app = operator_db
    key, cert = make_certificate(tmp_path)
    add_user(owner, "olga", "a long enough password", admin=True)
    web, metrics = free_port(), free_port()
    login = LoginProcess(
        app, tmp_path, "login",
        "--web", f"ssl:{web}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--metrics", f"tcp:{metrics}:interface=127.0.0.1",
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(cert))
    try:
        login.start()
        wait_port(web)  # start() waits for the device port; the web port may come after it
        wait_port(metrics)
        https = http.client.HTTPSConnection("127.0.0.1", web, context=context, timeout=WAIT)
        response, body = _get(https, "/api/openapi.json")
        assert response.status == 200 and json.loads(body)["openapi"].startswith("3.")
        assert response.getheader("strict-transport-security") == "max-age=31536000"
        response, body = _get(https, "/api/v1/login",
                              {"username": "olga", "password": "a long enough password"})  # fmt: skip
        assert response.status == 200 and json.loads(body)["token"]
        response, body = _get(https, "/metrics")
        assert response.status == 404 and b"cmsv6_" not in body
        https.close()
        plain = http.client.HTTPConnection("127.0.0.1", web, timeout=WAIT)
        with pytest.raises((http.client.HTTPException, OSError)):
            _get(plain, "/api/openapi.json")
        plain.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=WAIT) as r:
            text = r.read().decode()
        assert "cmsv6_login_active 1.0" in text and "cmsv6_web_clients" in text
    finally:
        login.stop()
