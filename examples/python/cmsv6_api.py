"""A tiny client of the cmsv6 Open API with nothing but the standard library: the helper
the examples here share. Copy it into your project, or use a client generated from the
OpenAPI document (GET /api/openapi.json).

Settings come from the environment: CMSV6_URL (default http://127.0.0.1:8080, what
`make demo` serves), CMSV6_USER and CMSV6_PASSWORD (default the demo's user).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

URL = os.environ.get("CMSV6_URL", "http://127.0.0.1:8080").rstrip("/")
USER = os.environ.get("CMSV6_USER", "demo")
PASSWORD = os.environ.get("CMSV6_PASSWORD", "demo-password")


class ApiError(Exception):
    """An error answer: its HTTP status and the API's stable code (docs/api.md)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def call(method: str, path: str, body: Any = None, token: str | None = None,
         query: dict[str, Any] | None = None, timeout: float = 70) -> Any:
    """One request; the decoded JSON answer, or ApiError. ``timeout`` is longer than the
    longest a command may wait for its device (60 s)."""
    url = URL + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:  # every error is {"error": {"code", "message"}}
        error = json.load(e).get("error", {})
        raise ApiError(e.code, error.get("code", "?"), error.get("message", "")) from None


def login() -> str:
    """Log in; the bearer token (valid for hours: keep it, do not log in per request)."""
    return call("POST", "/api/v1/login", {"username": USER, "password": PASSWORD})["token"]
