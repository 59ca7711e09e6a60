"""docs/api.md keeps up with the OpenAPI document: every route it serves has its section,
each section names every status the route answers, and every example calls a route
that exists."""

from __future__ import annotations

import re
from pathlib import Path

from cmsv6.web.openapi import DOCUMENT

PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = {"get", "put", "post", "delete", "patch"}


def operations() -> dict[tuple[str, str], set[str]]:
    """(METHOD, path) → the statuses the document gives it."""
    return {
        (method.upper(), path): set(op["responses"])
        for path, item in DOCUMENT["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def sections() -> dict[tuple[str, str], str]:
    """(METHOD, path) → the text of the page's ``### METHOD path`` section."""
    text = PAGE.read_text(encoding="utf-8")
    parts = re.split(r"^### ([A-Z]+) (\S+)\s*$", text, flags=re.M)
    return {(m, p): body.split("\n## ")[0] for m, p, body in zip(parts[1::3], parts[2::3], parts[3::3])}


def test_every_route_has_its_section() -> None:
    """Each documented method and path has a ``### METHOD path`` section, and the page has
    no section for a route the API does not have."""
    assert set(sections()) == set(operations())


def test_sections_name_every_status() -> None:
    """Each route's section names every status the document gives it (but 200 and 201, and
    101 of the WebSocket's handshake, which the examples show; ``default``, any other
    error, is the page's table of statuses)."""
    found = sections()
    for route, statuses in operations().items():
        missing = {s for s in statuses - {"200", "201", "default"} if not re.search(rf"\b{s}\b", found[route])}
        assert not missing, (route, missing)


def test_examples_call_routes_that_exist() -> None:
    """Every URL of the page's examples is one of the document's paths (ids filled in)."""
    text = PAGE.read_text(encoding="utf-8")
    urls = re.findall(r"http://127\.0\.0\.1:8080(/[^\s\"'?]*)", text)
    assert urls
    patterns = [re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(p)) + "$")
                for p in DOCUMENT["paths"]]  # fmt: skip
    wrong = [u for u in urls if not any(p.match(u) for p in patterns)]
    assert not wrong, wrong
