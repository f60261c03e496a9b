"""The one place where errors become `application/problem+json` (RFC 9457) responses.

Domain errors carry their facts as attributes; this module picks the status, a stable
`type` URI and a title for each, and adds the facts as extension members. Litestar's
own errors (validation, malformed JSON, unknown route, oversize body) go through the
same handler, and anything unexpected is logged and answered 500 without internals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from treadle.domain.errors import (
    DefinitionInvalid,
    ExpressionError,
    IdempotencyConflict,
    InputInvalid,
    InvalidCursor,
    LimitExceeded,
    RunNotActive,
    RunNotFound,
    SignalNotAccepted,
    TaskNotFound,
    TreadleError,
    ValidationIssue,
    WorkflowNotFound,
)
from treadle.domain.schedules import (
    BackfillInProgress,
    ScheduleExists,
    ScheduleInvalid,
    ScheduleNotFound,
)
from treadle.domain.tags import TagsInvalid

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:treadle:problem:"

log = logging.getLogger("treadle.api")


# --- errors the API itself raises -------------------------------------------------------


class InvalidParameter(TreadleError):
    """A query parameter or header has a value the API does not accept."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


class ValueRefused(TreadleError):
    """A name, key or id cannot be kept by the store (too long for its column, a NUL)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


class JsonTooDeep(TreadleError):
    """A JSON request body nests arrays and objects deeper than the limit."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        super().__init__(
            f"the JSON body nests arrays and objects more than {maximum} levels deep "
            "(limits.max_json_depth)"
        )


class UnsupportedMediaType(TreadleError):
    """A request body was sent with a content type other than JSON."""

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        shown = content_type or "none"
        super().__init__(f"the request body must be application/json, not {shown}")


class SchedulesUnavailable(TreadleError):
    """The API was built without a schedule service (an embedding that does not offer it)."""

    def __init__(self) -> None:
        super().__init__("this server does not offer schedules")


class WorkersUnavailable(TreadleError):
    """The API was built without a workers registry (an embedding that does not offer it)."""

    def __init__(self) -> None:
        super().__init__("this server does not offer the workers registry")


class Unauthenticated(TreadleError):
    """The request carries no API key, or one that is malformed, unknown or revoked."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Forbidden(TreadleError):
    """The request's API key is valid but lacks the scope the route needs."""

    def __init__(self, key_id: str, scope: str) -> None:
        self.key_id = key_id
        self.scope = scope
        super().__init__(f"API key {key_id} lacks the {scope!r} scope this request needs")


class HostNotAllowed(TreadleError):
    """An open (keyless) loopback API got a request naming another host (DNS rebinding?)."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            f"this API serves loopback names without keys; {host!r} is not one of them. "
            "Add it to api.allowed_hosts (TREADLE_API__ALLOWED_HOSTS) if it is this machine"
        )


class CrossSiteRequestRefused(TreadleError):
    """An open (keyless) API got a change a cross-site web page could have sent."""

    def __init__(self, content_type: str) -> None:
        self.content_type = content_type
        shown = content_type or "no content type"
        super().__init__(
            f"a request that changes something must send Content-Type: application/json "
            f"or an X-Treadle-Request header when no API key is required, not {shown}"
        )


# --- the mapping ------------------------------------------------------------------------


class _Kind(msgspec.Struct, frozen=True):
    status: int
    slug: str
    title: str


_KINDS: dict[type[TreadleError], _Kind] = {
    DefinitionInvalid: _Kind(422, "definition-invalid", "Workflow definition is not valid"),
    InputInvalid: _Kind(422, "input-invalid", "Run input does not match the input schema"),
    ExpressionError: _Kind(422, "expression-invalid", "Expression is not valid"),
    WorkflowNotFound: _Kind(404, "workflow-not-found", "Workflow not found"),
    RunNotFound: _Kind(404, "run-not-found", "Run not found"),
    TaskNotFound: _Kind(404, "task-not-found", "Task not found"),
    RunNotActive: _Kind(409, "run-not-active", "Run is not active"),
    ScheduleInvalid: _Kind(422, "schedule-invalid", "Schedule is not valid"),
    TagsInvalid: _Kind(422, "tags-invalid", "Tags are not valid"),
    ScheduleNotFound: _Kind(404, "schedule-not-found", "Schedule not found"),
    ScheduleExists: _Kind(409, "schedule-exists", "Schedule name is taken"),
    BackfillInProgress: _Kind(409, "backfill-in-progress", "A backfill is in progress"),
    SchedulesUnavailable: _Kind(404, "schedules-unavailable", "Schedules are not available"),
    WorkersUnavailable: _Kind(404, "workers-unavailable", "Workers are not available"),
    InvalidCursor: _Kind(400, "invalid-cursor", "Invalid cursor"),
    LimitExceeded: _Kind(413, "limit-exceeded", "Limit exceeded"),
    InvalidParameter: _Kind(400, "invalid-parameter", "Invalid parameter"),
    ValueRefused: _Kind(422, "value-invalid", "Value cannot be stored"),
    JsonTooDeep: _Kind(400, "json-too-deep", "JSON nested too deeply"),
    IdempotencyConflict: _Kind(409, "idempotency-key-reused", "Idempotency-Key reused"),
    SignalNotAccepted: _Kind(404, "signal-not-accepted", "Signal not accepted"),
    UnsupportedMediaType: _Kind(415, "unsupported-media-type", "Unsupported media type"),
    Unauthenticated: _Kind(401, "unauthenticated", "Authentication required"),
    Forbidden: _Kind(403, "forbidden", "Scope missing"),
    HostNotAllowed: _Kind(403, "host-not-allowed", "Host not allowed"),
    CrossSiteRequestRefused: _Kind(403, "cross-site-request", "Cross-site request refused"),
}


def _issues(issues: list[ValidationIssue]) -> dict[str, Any]:
    return {"errors": [msgspec.to_builtins(issue) for issue in issues]}


_EXTENSIONS: dict[type[TreadleError], Callable[[Any], dict[str, Any]]] = {
    DefinitionInvalid: lambda e: _issues(e.issues),
    InputInvalid: lambda e: _issues(e.issues),
    ExpressionError: lambda e: {"expression": e.expression},
    WorkflowNotFound: lambda e: {"workflow": e.name, "version": e.version},
    RunNotFound: lambda e: {"run_id": e.run_id},
    TaskNotFound: lambda e: {"run_id": e.run_id, "task_id": e.task_id},
    RunNotActive: lambda e: {"run_id": e.run_id, "run_status": e.status},
    ScheduleInvalid: lambda e: _issues(e.issues),
    TagsInvalid: lambda e: _issues(e.issues),
    ScheduleNotFound: lambda e: {"schedule_id": e.schedule_id},
    ScheduleExists: lambda e: {"name": e.name},
    BackfillInProgress: lambda e: {"schedule_id": e.schedule_id},
    InvalidParameter: lambda e: {"parameter": e.name},
    ValueRefused: lambda e: {"parameter": e.name},
    JsonTooDeep: lambda e: {"limit": "limits.max_json_depth", "maximum": e.maximum},
    IdempotencyConflict: lambda e: {"run_id": e.run_id, "differs": e.differs},
    SignalNotAccepted: lambda e: {"run_id": e.run_id, "signal": e.name, "accepted": e.accepted},
    LimitExceeded: lambda e: {"limit": e.limit, "size": e.size, "maximum": e.maximum},
    Forbidden: lambda e: {"key_id": e.key_id, "scope": e.scope},
    HostNotAllowed: lambda e: {"host": e.host},
    CrossSiteRequestRefused: lambda e: {"content_type": e.content_type},
}


def problem_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The exception handler registered for `Exception`: every error answer is made here."""
    if isinstance(exc, TreadleError):
        return _treadle_problem(request, exc)
    if isinstance(exc, HTTPException):
        return _http_problem(request, exc)
    log.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
    return _internal_error(request)


def _treadle_problem(request: Request[Any, Any, Any], exc: TreadleError) -> Response[Any]:
    for cls in type(exc).__mro__:
        kind = _KINDS.get(cls)
        if kind is not None:
            extend = _EXTENSIONS.get(cls)
            extensions = extend(exc) if extend else {}
            response = _problem(
                request,
                kind.status,
                slug=kind.slug,
                title=kind.title,
                detail=str(exc),
                extensions=extensions,
            )
            if isinstance(exc, Unauthenticated):
                # RFC 6750: a 401 names the scheme the client should use.
                response.headers["WWW-Authenticate"] = 'Bearer realm="treadle"'
            return response
    # A TreadleError the API has no row for is an engine fault, not the caller's.
    log.error("unmapped %s answering %s: %s", type(exc).__name__, request.url.path, exc)
    return _internal_error(request)


def _http_problem(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500:
        log.error("%s answering %s %s: %s", status, request.method, request.url.path, exc)
        return _internal_error(request, status)
    title = HTTPStatus(status).phrase
    detail = str(exc.detail)
    if detail == title:
        # Litestar's routing errors only repeat the phrase; say what did not match.
        detail = f"{request.method} {request.url.path}: {title.lower()}"
    extensions: dict[str, Any] = {}
    slug = ""
    if isinstance(exc.__cause__, SerializationException):
        slug, title = "malformed-json", "Malformed JSON"
        detail = f"the request body is not valid JSON ({exc.detail})"
    elif isinstance(exc, RequestEntityTooLarge):
        slug, title = "body-too-large", "Request body too large"
        limit = request.route_handler.resolve_request_max_body_size()
        detail = f"the request body is larger than the limit of {limit} bytes"
    elif isinstance(exc.extra, list) and exc.extra:
        slug, title = "request-invalid", "Request is not valid"
        issues = [_issue_from_litestar(item) for item in exc.extra]
        extensions["errors"] = [msgspec.to_builtins(i) for i in issues]
        detail = "; ".join(str(i) for i in issues)
    response = _problem(
        request, status, slug=slug, title=title, detail=detail, extensions=extensions
    )
    response.headers.update(exc.headers or {})
    return response


def _issue_from_litestar(item: Any) -> ValidationIssue:
    if not isinstance(item, dict):
        return ValidationIssue(path="", message=str(item))
    key = str(item.get("key", ""))
    source = getattr(item.get("source"), "value", item.get("source"))
    return ValidationIssue(
        path=_issue_path(key, source), message=str(item.get("message", "invalid value"))
    )


def _issue_path(key: str, source: object) -> str:
    if source not in (None, "body"):
        return f"{source}.{key}"
    # Litestar names the whole body "data"; a path inside the body is given bare.
    return "" if key == "data" else key


def _internal_error(request: Request[Any, Any, Any], status: int = 500) -> Response[Any]:
    return _problem(
        request,
        status,
        slug="internal-error",
        title=HTTPStatus(status).phrase,
        detail="the server could not answer this request; the error was logged",
        extensions={},
    )


def _problem(
    request: Request[Any, Any, Any],
    status: int,
    *,
    slug: str,
    title: str,
    detail: str,
    extensions: dict[str, Any],
) -> Response[Any]:
    body = {
        "type": f"{_TYPE_PREFIX}{slug}" if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extensions,
    }
    return Response(content=body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)
