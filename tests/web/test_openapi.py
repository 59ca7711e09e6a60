"""The OpenAPI document stays true: what the site serves is documented, and what is
documented is served."""

from __future__ import annotations

import re
import pytest_twisted

from cmsv6.web.openapi import DOCUMENT
from tests.web.support import Web, call, login

#: Resources mounted beside the router (each documented too).
OTHER_RESOURCES = {("/ws", "GET"), ("/metrics", "GET")}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def documented() -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def test_document_is_openapi_3() -> None:
    """The document names OpenAPI 3, and every operation has responses and declares each of
    its path's parameters."""
    assert DOCUMENT["openapi"].startswith("3.")
    for path, item in DOCUMENT["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            assert op["responses"], (path, method)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, (path, method)


def test_every_route_is_documented(web: Web) -> None:
    """The router's routes and the resources beside it are exactly the documented paths and
    methods."""
    served = {(r.template, r.method) for r in web.site.api.routes()} | OTHER_RESOURCES
    assert served == documented()


@pytest_twisted.inlineCallbacks
def test_every_documented_route_is_served(web_with_metrics: Web) -> None:
    """A request to each documented path and method reaches a handler (no 404 no_route, no
    405), and the document served at /api/openapi.json is this one."""
    web = web_with_metrics
    token = yield login(web)
    # Logging out last: it revokes the token the others use.
    for path, method in sorted(documented(), key=lambda pm: (pm[0] == "/api/v1/logout", pm)):
        concrete = path.replace("{phone}", "13800000001").replace("{alarm_id}", "1")
        body = {} if method == "POST" else None
        reply = yield call(web, method, concrete, body, token=token)
        assert reply.status != 405, (path, method)
        if reply.status == 404:
            assert reply.body["error"]["code"] != "no_route", (path, method)
    reply = yield call(web, "GET", "/api/openapi.json")
    assert reply.status == 200 and reply.body == DOCUMENT


def test_site_built_twice_on_one_registry(dsn: str) -> None:
    """Building the site again with the same registry replaces its metrics collector."""
    from twisted.internet import task

    from cmsv6.metrics import make_registry
    from cmsv6.web.site import make_site
    from tests.web.support import FakeCluster

    registry = make_registry(process=False)
    first = make_site(None, FakeCluster(), task.Clock(), {"registry": registry})  # type: ignore[arg-type]
    second = make_site(None, FakeCluster(), task.Clock(), {"registry": registry})  # type: ignore[arg-type]
    assert first is not second
    assert registry._cmsv6_web_collector.hub is second.hub
