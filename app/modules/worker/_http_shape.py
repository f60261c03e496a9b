"""An http task's request as the decider rendered it, and its answer as the task output."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from treadle.domain.errors import TreadleError
from treadle.domain.state import ErrorInfo

_METHOD = re.compile(r"[A-Z]{1,16}")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name is an RFC 9110 token."""
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
"""A header value httpx can send: visible ASCII, spaces and tabs (it encodes as ASCII)."""
_MAX_PORT = 65_535
_SNIPPET_CHARS = 300
"""How much of an unexpected answer's body an HttpStatusError message quotes."""


class HttpRequestInvalid(TreadleError):
    """The rendered request cannot be sent (a bad URL, header or body)."""


class HttpRedirectRefused(TreadleError):
    """A redirect would re-send the request's body to another origin; it is not followed."""

    def __init__(self, method: str, status: int, origin: str) -> None:
        self.method = method
        self.status = status
        self.origin = origin
        super().__init__(
            f"answered {status}, a redirect of the {method} to another origin ({origin}); "
            "a request body is never re-sent to another origin (list the status in "
            "`expect` to take the redirect as the answer)"
        )


class HttpResponseTooLarge(TreadleError):
    """The answer's body is larger than `http.max_response_bytes`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"the response body is larger than {limit} bytes (http.max_response_bytes)"
        )


@dataclass(frozen=True, kw_only=True)
class HttpCall:
    """One request to make, checked: every field has the type httpx wants."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    """`{"json": value}`, `{"data": form}` or empty: keyword arguments for httpx."""
    timeout: float
    expect: frozenset[int] | None = None
    retry_on: frozenset[int] = frozenset()

    def accepts(self, status: int) -> bool:
        """Whether `status` is a success: one of `expect`, or any 2xx by default."""
        return status in self.expect if self.expect else 200 <= status < 300


def parse_call(data: Any, default_timeout: float) -> HttpCall:
    """Check the rendered request (expressions may have produced anything)."""
    if not isinstance(data, Mapping):
        raise HttpRequestInvalid(f"the request must be an object, got {type(data).__name__}")
    method = str(data.get("method", "GET")).upper()
    if not _METHOD.fullmatch(method):
        raise HttpRequestInvalid(f"{method!r} is not an HTTP method")
    url = data.get("url")
    if not isinstance(url, str) or not url:
        raise HttpRequestInvalid(f"the url must be a string, got {type(url).__name__}")
    checked_url(url)
    if data.get("json") is not None and data.get("form") is not None:
        raise HttpRequestInvalid("a request has a json body or a form body, not both")
    body: dict[str, Any] = {}
    if data.get("json") is not None:
        body = {"json": data["json"]}
    elif data.get("form") is not None:
        body = {"data": _string_map(data["form"], "form")}
    return HttpCall(
        method=method,
        url=url,
        headers=_headers(data.get("headers")),
        query=_query(data.get("query")),
        body=body,
        timeout=_seconds(data.get("timeout"), default_timeout),
        expect=_codes(data.get("expect"), "expect") or None,
        retry_on=_codes(data.get("retry_on"), "retry_on"),
    )


def _seconds(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default


def checked_url(url: str | httpx.URL, what: str = "the url") -> httpx.URL:
    """`url` parsed, or `HttpRequestInvalid` when it cannot be sent (a bad IDNA host, a
    port out of range): raised here, not from deep inside httpx or the resolver."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        _ = parsed.host  # decodes an IDNA host (`xn--...`) lazily, so may raise only here
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:  # IDNAError and UnicodeError are ValueErrors
        raise HttpRequestInvalid(f"{what} is not a valid URL: {exc}") from None
    if port is not None and not 0 < port <= _MAX_PORT:
        raise HttpRequestInvalid(f"{what} has port {port}, outside 1-{_MAX_PORT}")
    return parsed


def _headers(value: Any) -> dict[str, str]:
    headers = _string_map(value, "headers")
    for name, text in headers.items():
        if any(c in text or c in name for c in "\r\n\0"):
            raise HttpRequestInvalid(f"header {name!r} contains a line break")
        if not _HEADER_NAME.fullmatch(name):
            raise HttpRequestInvalid(f"header name {name!r} is not a valid HTTP token")
        if not _HEADER_VALUE.fullmatch(text):
            # The value is not quoted: it may hold a secret.
            raise HttpRequestInvalid(
                f"header {name!r} has a character that is not visible ASCII "
                "(percent-encode or base64 other text)"
            )
    return headers


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise HttpRequestInvalid(f"{what} must be an object, got {type(value).__name__}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if item is None:
            continue  # an optional value an expression left out
        if isinstance(item, dict | list):
            raise HttpRequestInvalid(f"{what}.{key} must be a string, number or boolean")
        out[str(key)] = _scalar_text(item)
    return out


def _query(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise HttpRequestInvalid(f"query must be an object, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, list):
            out[str(key)] = [_scalar_text(i) for i in item if i is not None]
        elif isinstance(item, dict):
            raise HttpRequestInvalid(f"query.{key} must be a value or a list of values")
        elif item is not None:
            out[str(key)] = _scalar_text(item)
    return out


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _codes(value: Any, what: str) -> frozenset[int]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise HttpRequestInvalid(f"{what} must be a list of status codes")
    return frozenset(value)


# --- the answer -----------------------------------------------------------------------


def shape_output(
    status: int, headers: list[tuple[str, str]], body: bytes, encoding: str | None
) -> dict[str, Any]:
    """`{status, headers, json}` when the answer is JSON, else `{status, headers, text}`."""
    out: dict[str, Any] = {"status": status, "headers": _header_dict(headers)}
    content_type = out["headers"].get("content-type", "")
    if body and "json" in content_type.lower():
        try:
            out["json"] = msgspec.json.decode(body)
        except msgspec.DecodeError:
            pass  # mislabelled: fall back to the text
        else:
            return out
    out["text"] = body.decode(encoding or "utf-8", errors="replace")
    return out


def _header_dict(headers: list[tuple[str, str]]) -> dict[str, str]:
    # Lower-case names; repeated headers joined as HTTP allows (RFC 9110 section 5.3).
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def status_error(call: HttpCall, shown_url: str, output: Mapping[str, Any]) -> ErrorInfo:
    """The failure for an answer `call` does not accept: 5xx, 429 and `retry_on` retry."""
    status = int(output["status"])
    wanted = ", ".join(str(s) for s in sorted(call.expect)) if call.expect else "2xx"
    body = output.get("text")
    if body is None:
        body = msgspec.json.encode(output.get("json")).decode()
    snippet = body[:_SNIPPET_CHARS] + ("..." if len(body) > _SNIPPET_CHARS else "")
    message = f"{call.method} {shown_url} answered {status}, expected {wanted}"
    if snippet:
        message += f": {snippet}"
    retryable = status >= 500 or status == 429 or status in call.retry_on
    return ErrorInfo(type="HttpStatusError", message=message, retryable=retryable)
