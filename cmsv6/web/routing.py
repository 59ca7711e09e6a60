"""A small JSON router on twisted.web: routes as ``METHOD /path/{param}`` templates, handlers
as coroutines, one error policy, bounded request bodies and JSON nesting.

Every response is JSON (but a ``FileResponse``, a file streamed as it is); every error is an
HTTP status with ``{"error": {"code", "message"}}``.
No exception escapes a handler: ``ApiError`` is the intended answer, ``DatabaseUnavailable``
becomes 503, anything else is logged and becomes 500.
"""

from __future__ import annotations

import json
import re
from io import BytesIO
from typing import Any, Awaitable, BinaryIO, Callable

from attrs import frozen
from twisted.internet import defer
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web import resource, server

from cmsv6.db.service import DatabaseUnavailable

_log = Logger()

#: Request bodies larger than this are refused with 413 (and not kept in memory).
MAX_BODY = 64 * 1024
#: JSON nested deeper than this (arrays and objects) is refused before it is parsed.
MAX_JSON_DEPTH = 32

# Strings (skipped whole, so brackets inside them do not count) and brackets.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class TooDeep(ValueError):
    """JSON nested deeper than allowed."""


def json_depth_ok(text: str, max_depth: int) -> bool:
    """``text`` nests arrays and objects at most ``max_depth`` deep (checked without
    parsing: ``json.loads`` recurses once per level, and 50,000 ``[`` exhaust the stack)."""
    if text.count("[") + text.count("{") <= max_depth:
        return True
    depth = 0
    for m in _JSON_TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif c in "]}":
            depth -= 1
    return True


def loads_bounded(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of ``data``: ValueError if it is not UTF-8 JSON, ``TooDeep`` (a
    ValueError) if it nests deeper than ``max_depth``."""
    text = data.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if not json_depth_ok(text, max_depth):
        raise TooDeep(f"JSON nested more than {max_depth} deep")
    try:
        return json.loads(text)
    except RecursionError:  # the check above makes this unreachable; never a 500
        raise TooDeep(f"JSON nested more than {max_depth} deep") from None


class ApiError(Exception):
    """An answer that is an error: HTTP status, a stable code, a message for people."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def not_found(message: str = "not found") -> ApiError:
    return ApiError(404, "not_found", message)


@frozen
class Response:
    """A JSON answer with a status other than 200."""

    status: int
    body: Any


@frozen
class FileResponse:
    """An answer that is a file, streamed from ``file`` (an open binary file the router
    closes) rather than JSON: ``length`` bytes of ``content_type``."""

    file: BinaryIO
    content_type: str
    length: int
    filename: str


Handler = Callable[..., Awaitable[Any]]


@frozen
class Route:
    method: str
    template: str  # "/api/v1/devices/{phone}"
    handler: Handler

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        return re.compile(f"^{regex}$")


class BoundedRequest(server.Request):
    """A request whose body is kept only up to ``max_body`` bytes; past that, ``too_large``
    is set and the rest is discarded (the handler answers 413)."""

    max_body = MAX_BODY
    max_json_depth = MAX_JSON_DEPTH
    too_large = False
    _body_size = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802
        self.too_large = length is not None and length > self.max_body
        self._body_size = 0
        if self.too_large:
            self.content = BytesIO()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
        self._body_size += len(data)
        if self._body_size > self.max_body:
            self.too_large = True
        if not self.too_large:
            super().handleContentChunk(data)


def bounded_request_factory(max_body: int, max_json_depth: int = MAX_JSON_DEPTH) -> type[BoundedRequest]:
    return type("BoundedRequest", (BoundedRequest,),
                {"max_body": max_body, "max_json_depth": max_json_depth})  # fmt: skip


def json_body(request: server.Request) -> dict[str, Any]:
    """The request's JSON object; 413 if it is too large, 400 if it is not a JSON object
    (``too_deep`` if it nests deeper than the request's ``max_json_depth``)."""
    if getattr(request, "too_large", False):
        raise ApiError(413, "too_large", "the request body is too large")
    request.content.seek(0)
    raw = request.content.read()
    max_depth = getattr(request, "max_json_depth", MAX_JSON_DEPTH)
    try:
        value = loads_bounded(raw, max_depth)
    except TooDeep:
        raise bad_request(f"the request body nests JSON more than {max_depth} deep",
                          "too_deep") from None
    except ValueError:
        raise bad_request("the request body is not JSON", "bad_json") from None
    if not isinstance(value, dict):
        raise bad_request("the request body must be a JSON object", "bad_json")
    return value


def query_arg(request: server.Request, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    try:
        return values[-1].decode("utf-8")  # type: ignore[no-any-return]
    except UnicodeDecodeError:
        raise bad_request(f"{name} is not UTF-8") from None


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def write_json(request: server.Request, status: int, body: Any) -> None:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"content-length", str(len(data)).encode())
    request.write(data)
    request.finish()


class Router(resource.Resource):
    """Serves ``routes`` below the point where it is mounted (it sees the whole path)."""

    isLeaf = True

    def __init__(self, routes: list[Route]) -> None:
        super().__init__()
        self.routes = routes
        self._compiled = [(r, r.pattern) for r in routes]

    def render(self, request: server.Request) -> Any:
        try:
            path = request.path.decode("utf-8")
        except UnicodeDecodeError:
            write_json(request, 404, error_body("no_route", "no such resource"))
            return server.NOT_DONE_YET
        method = request.method.decode("ascii", "replace").upper()
        allowed = []
        for route, pattern in self._compiled:
            m = pattern.match(path)
            if m is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            self._run(request, route, m.groupdict())
            return server.NOT_DONE_YET
        if allowed:
            request.setHeader(b"allow", ", ".join(sorted(set(allowed))).encode())
            write_json(request, 405, error_body("method_not_allowed",
                                                f"{method} is not allowed on {path}"))
        else:
            write_json(request, 404, error_body("no_route", f"no such resource: {path}"))
        return server.NOT_DONE_YET

    def _run(self, request: server.Request, route: Route, params: dict[str, str]) -> None:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = defer.ensureDeferred(route.handler(request, **params))

        def done(result: Any) -> None:
            if gone:
                if isinstance(result, FileResponse):
                    result.file.close()
                return
            if isinstance(result, FileResponse):
                send_file(request, result)
            elif isinstance(result, Response):
                write_json(request, result.status, result.body)
            else:
                write_json(request, 200, result)

        def failed(failure: Failure) -> None:
            if gone:
                return
            if failure.check(ApiError):
                e = failure.value
                for name, value in e.headers.items():
                    request.setHeader(name.encode(), value.encode())
                write_json(request, e.status, error_body(e.code, e.message))
            elif failure.check(DatabaseUnavailable):
                write_json(request, 503, error_body("unavailable", "the database is unavailable"))
            else:
                _log.failure("{method} {path} failed", failure, method=route.method,
                             path=request.path.decode("utf-8", "replace"))
                write_json(request, 500, error_body("internal", "internal error"))

        d.addCallbacks(done, failed).addErrback(
            lambda f: _log.failure("answering {path} failed", f, path=route.template)
        )


def send_file(request: server.Request, answer: FileResponse) -> None:
    """Stream ``answer``'s file as the response (a producer: the file is read as fast as
    the client takes it, never whole into memory) and close it, also if the client goes."""
    request.setResponseCode(200)
    request.setHeader(b"content-type", answer.content_type.encode("ascii"))
    request.setHeader(b"content-length", str(answer.length).encode())
    # What a device uploaded is not trusted to be what its format says: never sniffed.
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"content-disposition",
                      f'inline; filename="{answer.filename}"'.encode("ascii"))  # fmt: skip
    request.setHeader(b"cache-control", b"private, max-age=3600")
    d = FileSender().beginFileTransfer(answer.file, request)

    def sent(_: Any) -> None:
        answer.file.close()
        request.finish()

    def stopped(failure: Failure) -> None:  # the client went away: nothing to finish
        answer.file.close()

    d.addCallbacks(sent, stopped)


class NotFound(resource.Resource):
    """A JSON 404 in the API's error shape, for any path nothing else serves (rather than
    twisted.web's HTML page)."""

    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        write_json(request, 404, error_body("no_route", "no such resource"))
        return server.NOT_DONE_YET  # type: ignore[no-any-return]


class Root(resource.Resource):
    """The site's root: its children, and a JSON 404 for everything else."""

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:  # noqa: N802
        return NotFound()

    def render(self, request: server.Request) -> bytes:
        return NotFound().render(request)
