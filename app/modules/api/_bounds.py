"""Bounds every request is held to before a route sees it.

A NUL character in a path, query or header value, a query parameter the route does not
know, a JSON body nested past the limit, a name or key longer than its column: each is a
clear 4xx here, where otherwise a database driver (PostgreSQL refuses NUL in text), the
recursion limit of a decoder, or a silently ignored filter would answer for us.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from weakref import WeakKeyDictionary

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import ParameterKwarg
from litestar.types import ASGIApp, Receive, Scope, Send

from treadle.domain.limits import text_problem
from treadle.modules.api._errors import InvalidParameter, JsonTooDeep, ValueRefused

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[{]}"))


# --- NUL characters ---------------------------------------------------------------------


def refuse_nul(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: a NUL in the path, the query string or a header is refused.

    On `/v1` it is a bad request (400); any other path (the dashboard's static files)
    names no file, so it is not found (404) — never the 500 a file system or PostgreSQL
    would otherwise cause.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            _check_nul(scope)
        await app(scope, receive, send)

    return middleware


def _check_nul(scope: Scope) -> None:
    path: str = scope.get("path", "")
    if "\x00" in path:
        if not path.startswith("/v1/"):
            raise NotFoundException(f"no file has a NUL character in its name: {path!r}")
        raise InvalidParameter("path", "must not contain a NUL character")
    query: bytes = scope.get("query_string", b"")
    if b"\x00" in query or b"%00" in query:
        raise InvalidParameter("query", "must not contain a NUL character")
    for name, value in scope.get("headers", ()):
        if b"\x00" in value:
            raise InvalidParameter(name.decode("latin-1"), "must not contain a NUL character")


# --- query parameters ---------------------------------------------------------------------

_KNOWN: WeakKeyDictionary[BaseRouteHandler, frozenset[str]] = WeakKeyDictionary()


def known_query_only(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Guard: a query parameter the route does not declare is an error (400), not ignored.

    `?tag=foo` would otherwise list every run, as though the filter had matched them all.
    """
    known = _KNOWN.get(handler)
    if known is None:
        known = _KNOWN[handler] = _declared_query(handler)
    for name in connection.query_params:
        if name not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise InvalidParameter(
                name, f"is not a query parameter of this route (allowed: {allowed})"
            )


def _declared_query(handler: BaseRouteHandler) -> frozenset[str]:
    names = set()
    for name, parameter in handler.parsed_fn_signature.parameters.items():
        kwarg = parameter.kwarg_definition
        if isinstance(kwarg, ParameterKwarg) and kwarg.header is None and kwarg.cookie is None:
            # `Parameter(...)` without a location is a query parameter unless it is a
            # dependency (litestar's `services` marker) or a path parameter.
            if name == "services" or _is_path(handler, name):
                continue
            names.add(kwarg.query or name)
    return frozenset(names)


def _is_path(handler: BaseRouteHandler, name: str) -> bool:
    return any(f"{{{name}:" in path or f"{{{name}}}" in path for path in handler.paths)


# --- JSON nesting ---------------------------------------------------------------------------


def json_depth_check(most: int) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A `before_request` hook: a JSON body nested deeper than `most` is refused (400).

    Decoding (msgspec), then validation and expressions all recurse per level; past about
    a thousand levels Python's recursion limit would end the request in a 500.
    """

    async def check(request: Request[Any, Any, Any]) -> None:
        if request.method not in _BODY_METHODS:
            return
        body = await request.body()
        depth = json_depth(body, most)
        if depth > most:
            raise JsonTooDeep(most)

    return check


def json_depth(body: bytes, most: int) -> int:
    """How deeply `body` nests arrays and objects, counted up to `most + 1`.

    Done in C-speed passes: drop strings, keep only brackets, then peel one innermost
    level per pass; a body that is not JSON gets whatever count and fails to decode later.
    """
    brackets = _JSON_STRING.sub(b"", body).translate(_BRACKETS, _NOT_BRACKETS)
    depth = 0
    while brackets and depth <= most:
        peeled = brackets.replace(b"()", b"")
        if len(peeled) == len(brackets):
            break  # unbalanced: not JSON
        brackets, depth = peeled, depth + 1
    return depth


# --- text that goes into a column -----------------------------------------------------------


def check_text(name: str, value: str | None, most: int) -> None:
    """Raise `ValueRefused` (422) when `value` does not fit a column of `most` characters."""
    if value is None:
        return
    problem = text_problem(value, most)
    if problem is not None:
        raise ValueRefused(name, problem)
