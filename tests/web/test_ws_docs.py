"""docs/websocket.md says what the client WebSocket does: its message types, their fields,
its error codes, its close codes and its limits, each read here from the code (constants,
the dict literals the server sends, ``ClientFactory``'s defaults and the [web] settings
``make_site`` gives it), never from a copy in this file."""

from __future__ import annotations

import ast
import inspect
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest

from cmsv6.config import WebConfig
from cmsv6.db.alarms import Alarm
from cmsv6.web import site, ws
from cmsv6.web.api import alarm_json, position_json
from tests.web.support import T0, position_row

DOC = (Path(__file__).parents[2] / "docs" / "websocket.md").read_text(encoding="utf-8")
WS = ast.parse(inspect.getsource(ws))
SITE = ast.parse(inspect.getsource(site))
CLOSE_CODES = {name: value for name, value in vars(ws).items()
               if name.startswith("CLOSE_") and isinstance(value, int)}  # fmt: skip


def _table(heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first table after ``heading``, header excluded."""
    section = DOC.split(f"\n{heading}\n", 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return [row for row in rows[1:] if not set("".join(row)) <= set("-: ")]


def _examples() -> list[Any]:
    """The JSON of every ```json block."""
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOC, re.DOTALL)]


def _sent_types() -> dict[str, tuple[set[str], bool]]:
    """Each ``"type"`` the server code writes in a dict literal: (its constant keys, whether
    it spreads another dict into it)."""
    types: dict[str, tuple[set[str], bool]] = {}
    for node in ast.walk(WS):
        if not isinstance(node, ast.Dict):
            continue
        keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
        for key, value in zip(node.keys, node.values):
            if isinstance(key, ast.Constant) and key.value == "type":
                assert isinstance(value, ast.Constant), ast.unparse(node)
                types[value.value] = (keys, None in node.keys)
    return types


def _self_calls(name: str) -> list[ast.Call]:
    return [node for node in ast.walk(WS) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == name]  # fmt: skip


def test_every_message_type_has_an_example_with_its_fields() -> None:
    """Every message type the server sends has a JSON example in the page with exactly the
    fields it sends (position and alarm: those of the Open API's own encoders)."""
    types = _sent_types()
    assert {"authenticated", "position", "alarm"} <= set(types)
    examples = {m["type"]: m for m in _examples() if isinstance(m, dict) and "type" in m}
    assert set(examples) == set(types)
    position = position_json(attrs.evolve(position_row(1, T0), blind=None))
    alarm = alarm_json(Alarm(1, "13900000000", "bit:emergency", T0, None, 1.0, 2.0, {}, "new",
                             None, None, None, datetime.now(timezone.utc)))  # fmt: skip
    spread = {"position": set(position), "alarm": set(alarm)}
    for kind, (keys, spreads) in types.items():
        expected = keys | spread[kind] if spreads else keys
        assert set(examples[kind]) == expected, kind
        assert f"### `{kind}`" in DOC, kind


def test_every_client_message_has_an_example() -> None:
    """Every key the server reads from a client's message has a section and an example."""
    read = {node.left.value for node in ast.walk(WS)
            if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
            and isinstance(node.ops[0], ast.In)}  # fmt: skip
    read |= {call.args[0].value for call in _self_calls("get")
             if isinstance(call.func.value, ast.Name) and call.func.value.id == "message"}  # fmt: skip
    assert read == {"token", "subscribe", "unsubscribe"}
    sent = {key for m in _examples() if isinstance(m, dict) and "type" not in m for key in m}
    assert read <= sent
    for key in read:
        assert f"### `{key}`" in DOC, key


def test_every_error_code_is_documented() -> None:
    """The error codes of ``error`` messages are the ones in the page's table."""
    codes = set()
    for call in _self_calls("error"):
        assert isinstance(call.args[0], ast.Constant), ast.unparse(call)
        codes.add(call.args[0].value)
    assert codes
    assert {row[0].strip("`") for row in _table("### `error`")} == codes


def test_every_close_code_is_documented() -> None:
    """The page's close-code table lists exactly the CLOSE_ constants of ws.py, and the
    code closes only with those constants (never a bare number)."""
    closers = ("sendClose", "_close", "_close_standard", "sendCloseFrame")
    for function in ast.walk(WS):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        # A closer's own ``code`` argument, handed on, is checked where the closer is called.
        allowed = set(CLOSE_CODES) | ({"code"} if function.name in closers else set())
        for call in ast.walk(function):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr in closers):
                continue
            code = call.args[0] if call.args else next(
                (k.value for k in call.keywords if k.arg == "code"), None)
            assert isinstance(code, ast.Name) and code.id in allowed, ast.unparse(call)
    documented = [int(row[0]) for row in _table("## Close codes")]
    assert sorted(documented) == sorted(CLOSE_CODES.values())


def _given_by_site(callee: str) -> dict[str, str]:
    """{argument: [web] key} of ``make_site``'s call of ``callee``."""
    (call,) = [node for node in ast.walk(SITE) if isinstance(node, ast.Call)
               and isinstance(node.func, ast.Name) and node.func.id == callee]  # fmt: skip
    return {k.arg: k.value.attr for k in call.keywords if k.arg is not None
            and isinstance(k.value, ast.Attribute) and isinstance(k.value.value, ast.Name)
            and k.value.value.id == "web"}  # fmt: skip


def _limits() -> list[tuple[str, int | float]]:
    """(what sets it, its default) of every limit of the socket: ``ClientFactory``'s
    numeric arguments, and the [web] settings make_site gives it or the Hub."""
    out: list[tuple[str, int | float]] = []
    defaults = WebConfig()
    for callee, cls in (("ClientFactory", ws.ClientFactory), ("Hub", ws.Hub)):
        from_config = _given_by_site(callee)
        for name, parameter in inspect.signature(cls).parameters.items():
            if name in from_config:
                key = from_config[name]
                out.append((f"`[web] {key}`", getattr(defaults, key)))
            elif cls is ws.ClientFactory and isinstance(parameter.default, int | float):
                out.append((f"fixed (`{name}`)", parameter.default))
    return out


@pytest.mark.parametrize("setting, default", _limits())
def test_every_limit_is_documented_with_its_value(setting: str, default: float) -> None:
    """Each limit has a row in the page's table, set by what the code sets it by, with
    the value it has by default."""
    rows = [row for row in _table("## Limits") if row[2] == setting]
    assert len(rows) == 1, setting
    assert re.search(rf"(?<![\d.]){re.escape(f'{default:g}')}(?![\d.])", rows[0][1]), rows[0]


def test_every_ws_setting_is_in_the_limits() -> None:
    """Every [web] ws_ setting reaches the socket through make_site and is in the page."""
    keys = {a.name for a in attrs.fields(WebConfig) if a.name.startswith("ws_")}
    given = set(_given_by_site("ClientFactory").values()) | set(_given_by_site("Hub").values())
    assert keys and keys <= given


def test_openapi_names_every_close_code_and_message_type() -> None:
    """The OpenAPI document's /ws description, what an integrator reads first, names every
    close code and every message type the server sends."""
    from cmsv6.web.openapi import DOCUMENT

    text = DOCUMENT["paths"]["/ws"]["get"]["description"]
    for code in CLOSE_CODES.values():
        assert str(code) in text, code
    for kind in _sent_types():
        assert f'"{kind}"' in text, kind
