"""The OpenAPI document is one generators love: it validates, every operation has an id
and a tag, every body is a named type, errors have their schema, the main operations have
examples; openapi-python-client turns it into a client without a warning, and that client
logs in and reads devices and a track from a running site."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import pytest_twisted
from twisted.internet import threads

from cmsv6.web.openapi import DOCUMENT
from tests.web.support import NORTH, PASSWORD, Web, call, login, position_row, store_positions, T0

METHODS = {"get", "put", "post", "delete", "patch"}
#: The operations a new integrator calls first: each shows an example answer.
MAIN = {"login", "list_devices", "get_device", "list_device_positions", "get_device_track",
        "list_alarms", "handle_alarm", "get_live_video", "send_command"}  # fmt: skip
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def _json_schemas(op: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, schema) of the operation's JSON request body and answers."""
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        yield "request", body["schema"]
    for status, response in op["responses"].items():
        media = response.get("content", {}).get("application/json")
        if media is not None:
            yield status, media["schema"]


def test_document_validates() -> None:
    """openapi-spec-validator finds nothing wrong with the document."""
    validator = pytest.importorskip("openapi_spec_validator",
                                    reason="pip install openapi-spec-validator (a test dependency)")  # fmt: skip
    validator.validate(json.loads(json.dumps(DOCUMENT)))


def test_every_operation_has_a_unique_id_and_a_declared_tag() -> None:
    """operationIds are snake_case and unique; every operation has one tag, declared in the
    document's tags."""
    declared = {t["name"] for t in DOCUMENT["tags"]}
    ids = []
    for path, method, op in operations():
        assert re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", op.get("operationId", "")), (path, method)
        assert len(op["tags"]) == 1 and op["tags"][0] in declared, (path, method)
        ids.append(op["operationId"])
    assert len(ids) == len(set(ids))
    assert {"list_devices", "list_device_positions", "get_device_track", "create_webhook"} <= set(ids)


def test_bodies_are_named_types() -> None:
    """Every JSON request body and answer is a named schema (or a list of one): no
    anonymous object where a type is meant."""
    for path, method, op in operations():
        for where, schema in _json_schemas(op):
            if schema.get("type") == "array":
                schema = schema["items"]
            assert set(schema) == {"$ref"}, (path, method, where, schema)


def test_errors_have_the_error_schema() -> None:
    """Every 4xx/5xx answer and the default (any other status) is an Error, and the bearer
    scheme is declared and required but where an operation says not."""
    assert DOCUMENT["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert DOCUMENT["security"] == [{"bearer": []}]
    for path, method, op in operations():
        if path == "/ws":
            continue
        errors = {s: r for s, r in op["responses"].items() if s == "default" or s[0] in "45"}
        assert "default" in errors, (path, method)
        for status, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (path, method, status)


def test_main_operations_have_examples() -> None:
    """The operations a new integrator calls first show an example answer (and request, if
    they take a body), and each example has the keys of its schema."""
    schemas = DOCUMENT["components"]["schemas"]
    seen = set()
    for path, method, op in operations():
        if op["operationId"] not in MAIN:
            continue
        seen.add(op["operationId"])
        ok = next(r for s, r in op["responses"].items() if s.startswith("2"))
        media = ok["content"]["application/json"]
        assert "example" in media, op["operationId"]
        schema, example = media["schema"], media["example"]
        if schema.get("type") == "array":
            schema, example = schema["items"], example[0]
        named = schemas[schema["$ref"].rsplit("/", 1)[1]]
        assert set(example) == set(named["properties"]) - {"blind"}, op["operationId"]
        if "requestBody" in op:
            assert "example" in op["requestBody"]["content"]["application/json"], op["operationId"]
    assert seen == MAIN


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client openapi-python-client generates from the document (its output checked
    for warnings): the directory holding the ``cmsv6_client`` package."""
    pytest.importorskip("openapi_python_client",
                        reason="pip install openapi-python-client (a test dependency)")  # fmt: skip
    if not GENERATOR.exists():
        pytest.skip(f"no {GENERATOR}")
    work = tmp_path_factory.mktemp("client")
    (work / "openapi.json").write_text(json.dumps(DOCUMENT, ensure_ascii=False), encoding="utf-8")
    (work / "config.yaml").write_text("package_name_override: cmsv6_client\n"
                                      "project_name_override: cmsv6-client\n"
                                      "post_hooks: []\n")  # fmt: skip
    out = work / "out"
    out.mkdir()
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", "../openapi.json", "--config", "../config.yaml",
         "--meta", "none"], cwd=out, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert "warning" not in text.lower() and "error" not in text.lower(), text
    return out


def test_generated_client_names_operations(generated: Path) -> None:
    """The generated client has a module per tag and a function per operationId (not
    ``get_api_v1_devices_phone_positions``)."""
    package = generated / "cmsv6_client" / "api"
    for path, method, op in operations():
        assert (package / op["tags"][0] / f"{op['operationId']}.py").exists(), op["operationId"]
    assert not list(package.rglob("*api_v1*"))


@pytest_twisted.inlineCallbacks
def test_generated_client_talks_to_the_site(generated: Path, web: Web) -> None:
    """The generated package imports, logs in, lists devices and reads a track (GeoJSON, a
    LineString and Points) from a running site, in typed objects."""
    sys.path.insert(0, str(generated))
    try:
        client_mod = importlib.import_module("cmsv6_client")
        login_op = importlib.import_module("cmsv6_client.api.session.login")
        devices_op = importlib.import_module("cmsv6_client.api.devices.list_devices")
        track_op = importlib.import_module("cmsv6_client.api.positions.get_device_track")
        models = importlib.import_module("cmsv6_client.models")
    finally:
        sys.path.remove(str(generated))
    device_id = web.device_id(NORTH)
    yield store_positions(web, [position_row(device_id, T0.replace(second=s), lon=114 + s / 1000)
                                for s in (0, 10, 20)])  # fmt: skip
    base = f"http://127.0.0.1:{web.port}"

    def use() -> Any:  # blocking (httpx): in a thread, while the reactor serves
        anonymous = client_mod.Client(base_url=base, raise_on_unexpected_status=True)
        answer = login_op.sync(client=anonymous, body=models.LoginRequest(username="root", password=PASSWORD))
        assert isinstance(answer, models.LoginResponse), answer
        authed = client_mod.AuthenticatedClient(base_url=base, token=answer.token)
        devices = devices_op.sync(client=authed)
        track = track_op.sync(NORTH, client=authed, from_=T0, limit=10)
        wrong = track_op.sync_detailed("13899999999", client=authed)
        return devices, track, wrong

    devices, track, wrong = yield threads.deferToThread(use)
    assert NORTH in {d.phone for d in devices}
    assert isinstance(track, models.Track) and track.phone == NORTH
    line, *points = track.features
    assert isinstance(line, models.TrackLine) and line.properties.points == 3
    assert [p.geometry.coordinates for p in points] == [[114.0, 22.5], [114.01, 22.5], [114.02, 22.5]]
    assert wrong.status_code == 404 and isinstance(wrong.parsed, models.Error)
    assert wrong.parsed.error.code == "not_found"


@pytest_twisted.inlineCallbacks
def test_other_errors_are_errors(web: Web) -> None:
    """An answer no operation lists (405) is in the documented Error shape (the default)."""
    token = yield login(web, "root")
    reply = yield call(web, "DELETE", "/api/v1/devices", token=token)
    assert reply.status == 405 and set(reply.body) == {"error"}
    assert set(reply.body["error"]) == {"code", "message"}

