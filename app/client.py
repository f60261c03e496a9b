"""A typed client for Treadle's HTTP API, async (`AsyncClient`) and sync (`Client`).

Both build the same `_Call`s and decode answers into the API's own response Structs;
they differ only in how the request is sent. Every failure is one of two errors:
`TreadleUnreachable` (no answer) or `ApiError` (an answer that is a problem).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from treadle.api_types import (
    DEFAULT_URL,
    Elided,
    HistoryPage,
    RunBody,
    RunCountsBody,
    RunPage,
    ScheduleBody,
    SchedulePage,
    WorkflowDetail,
    WorkflowPage,
    WorkflowRef,
    WorkflowVersion,
    elided,
    elided_path,
)
from treadle.domain.errors import TreadleError

__all__ = [
    "DEFAULT_URL",
    "ApiError",
    "AsyncClient",
    "Client",
    "Elided",
    "TreadleUnreachable",
    "elided",
    "elided_path",
]

DEFAULT_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")


class ApiError(TreadleError):
    """The API answered with an error (an RFC 9457 problem, or something unexpected)."""

    def __init__(self, status: int, title: str, detail: str, body: Mapping[str, Any]) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.body = dict(body)
        super().__init__(f"{title}: {detail}" if detail else title)

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The `errors` extension ([{path, message}]) of validation problems, else []."""
        errors = self.body.get("errors")
        return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class TreadleUnreachable(TreadleError):
    """No answer from the API: refused, timed out, or the connection broke."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach Treadle at {url}: {reason}")


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One API request and the type its answer decodes into."""

    method: str
    path: str
    type: type[T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    send_json: bool = False
    headers: dict[str, str] = field(default_factory=dict)

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        params = {k: v for k, v in self.params.items() if v is not None}
        content = msgspec.json.encode(self.json) if self.send_json else None
        headers = dict(self.headers)
        if self.send_json:
            headers["content-type"] = "application/json"
        return http.build_request(
            self.method, self.path, params=params, content=content, headers=headers
        )


def _segment(value: str) -> str:
    """Quote a path segment: run ids and names are user data."""
    return quote(value, safe="")


# --- the calls, shared by both clients --------------------------------------------------


def _register_workflow(definition: Mapping[str, Any]) -> _Call[WorkflowRef]:
    return _Call("POST", "/v1/workflows", WorkflowRef, json=dict(definition), send_json=True)


def _list_workflows(limit: int | None, cursor: str | None) -> _Call[WorkflowPage]:
    params = {"limit": limit, "cursor": cursor}
    return _Call("GET", "/v1/workflows", WorkflowPage, params=params)


def _get_workflow(name: str, version: int | None) -> _Call[Any]:
    if version is None:
        return _Call("GET", f"/v1/workflows/{_segment(name)}", WorkflowDetail)
    path = f"/v1/workflows/{_segment(name)}/versions/{version}"
    return _Call("GET", path, WorkflowVersion)


def _start_run(
    workflow: str,
    input: Any,
    version: int | None,
    idempotency_key: str | None,
    tags: Mapping[str, str] | None = None,
) -> _Call[RunBody]:
    body: dict[str, Any] = {"workflow": workflow, "version": version, "input": input}
    if tags:
        body["tags"] = dict(tags)
    headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
    return _Call("POST", "/v1/runs", RunBody, json=body, send_json=True, headers=headers)


class _RunFilters(msgspec.Struct, frozen=True, kw_only=True):
    """The optional filters of a runs list; a datetime is sent as RFC 3339 (aware, please)."""

    workflow: str | None = None
    status: str | None = None
    idempotency_key: str | None = None
    created_after: datetime | str | None = None
    created_before: datetime | str | None = None
    tags: Mapping[str, str] | None = None

    def params(self) -> dict[str, Any]:
        tags = [f"{k}:{v}" for k, v in (self.tags or {}).items()]
        return {
            "tag": tags or None,
            "workflow": self.workflow,
            "status": self.status,
            "idempotency_key": self.idempotency_key,
            "created_after": _timestamp(self.created_after),
            "created_before": _timestamp(self.created_before),
        }


def _timestamp(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _list_runs(filters: _RunFilters, limit: int | None, cursor: str | None) -> _Call[RunPage]:
    params = {**filters.params(), "limit": limit, "cursor": cursor}
    return _Call("GET", "/v1/runs", RunPage, params=params)


def _count_runs(workflow: str | None, created_after: datetime | str | None) -> _Call[RunCountsBody]:
    params = {"workflow": workflow, "created_after": _timestamp(created_after)}
    return _Call("GET", "/v1/runs/counts", RunCountsBody, params=params)


def _get_run(run_id: str, wait: float | None, inline: bool = False) -> _Call[RunBody]:
    # `wait`: a long poll, answered when the run ends or after that many seconds (keep
    # it below the client's timeout). `inline`: large values too, not `{"$elided": ...}`.
    params = {"wait": wait, "inline": "all" if inline else None}
    return _Call("GET", f"/v1/runs/{_segment(run_id)}", RunBody, params=params)


def _get_value(run_id: str, path: str) -> _Call[Any]:
    # `path` as an elided value's href ends: `tasks/each[3]/output` (brackets quoted).
    return _Call("GET", f"/v1/runs/{_segment(run_id)}/values/{quote(path)}", object)


def _list_events(run_id: str, limit: int | None, cursor: str | None) -> _Call[HistoryPage]:
    path = f"/v1/runs/{_segment(run_id)}/events"
    return _Call("GET", path, HistoryPage, params={"limit": limit, "cursor": cursor})


def _cancel_run(run_id: str, reason: str) -> _Call[RunBody]:
    path = f"/v1/runs/{_segment(run_id)}/cancel"
    return _Call("POST", path, RunBody, json={"reason": reason}, send_json=True)


def _signal_run(run_id: str, name: str, payload: Any) -> _Call[RunBody]:
    path = f"/v1/runs/{_segment(run_id)}/signals/{_segment(name)}"
    return _Call("POST", path, RunBody, json=payload, send_json=True)


def _retry_run(run_id: str) -> _Call[RunBody]:
    return _Call("POST", f"/v1/runs/{_segment(run_id)}/retry", RunBody)


def _steer_run(run_id: str, action: str) -> _Call[RunBody]:
    return _Call("POST", f"/v1/runs/{_segment(run_id)}/{action}", RunBody)


def _create_schedule(spec: Mapping[str, Any]) -> _Call[ScheduleBody]:
    return _Call("POST", "/v1/schedules", ScheduleBody, json=dict(spec), send_json=True)


def _list_schedules(limit: int | None, cursor: str | None) -> _Call[SchedulePage]:
    params = {"limit": limit, "cursor": cursor}
    return _Call("GET", "/v1/schedules", SchedulePage, params=params)


def _schedule(schedule_id: str, action: str = "", method: str = "GET") -> _Call[ScheduleBody]:
    path = f"/v1/schedules/{_segment(schedule_id)}" + (f"/{action}" if action else "")
    return _Call(method, path, ScheduleBody)


def _patch_schedule(schedule_id: str, patch: Mapping[str, Any]) -> _Call[ScheduleBody]:
    path = f"/v1/schedules/{_segment(schedule_id)}"
    return _Call("PATCH", path, ScheduleBody, json=dict(patch), send_json=True)


def _trigger_schedule(schedule_id: str) -> _Call[RunBody]:
    return _Call("POST", f"/v1/schedules/{_segment(schedule_id)}/trigger", RunBody)


def _backfill_schedule(
    schedule_id: str, start: datetime | str, end: datetime | str, max_concurrent: int | None
) -> _Call[ScheduleBody]:
    body: dict[str, Any] = {"start": _timestamp(start), "end": _timestamp(end)}
    if max_concurrent is not None:
        body["max_concurrent"] = max_concurrent
    path = f"/v1/schedules/{_segment(schedule_id)}/backfill"
    return _Call("POST", path, ScheduleBody, json=body, send_json=True)


def _delete_schedule(schedule_id: str) -> _Call[None]:
    return _Call("DELETE", f"/v1/schedules/{_segment(schedule_id)}", type(None))


# --- answers ------------------------------------------------------------------------------


@contextmanager
def _map_transport_errors(url: str) -> Iterator[None]:
    """httpx's errors become `TreadleUnreachable`: the one place they are translated."""
    try:
        yield
    except httpx.ConnectError as exc:
        raise TreadleUnreachable(url, f"connection failed ({exc})") from exc
    except httpx.TimeoutException as exc:
        raise TreadleUnreachable(url, "timed out waiting for an answer") from exc
    except httpx.TransportError as exc:
        raise TreadleUnreachable(url, f"{type(exc).__name__}: {exc}") from exc


def _decode(call: _Call[T], response: httpx.Response) -> tuple[T, int]:
    if response.status_code >= 400:
        raise _api_error(response)
    if call.type is type(None):
        return None, response.status_code  # a 204 has no body to decode
    try:
        return msgspec.json.decode(response.content, type=call.type), response.status_code
    except msgspec.DecodeError as exc:
        raise ApiError(
            response.status_code,
            "Unexpected response",
            f"{call.method} {call.path} answered a body the client does not understand: {exc}",
            {},
        ) from exc


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip()[:200]
        return ApiError(response.status_code, response.reason_phrase, text, {})
    title = str(body.get("title") or response.reason_phrase)
    return ApiError(response.status_code, title, str(body.get("detail") or ""), body)


# --- the clients ----------------------------------------------------------------------------


def _auth_headers(api_key: str | None) -> dict[str, str]:
    """`Authorization: Bearer` for a key from `treadle keys create`, and `X-Treadle-Request`
    (a keyless API refuses changes without it or a JSON body: no web page can forge it)."""
    marker = {"x-treadle-request": "1"}
    return {**marker, "authorization": f"Bearer {api_key}"} if api_key else marker


class AsyncClient:
    """The API over httpx's async client. Use as `async with AsyncClient(url) as c:`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
        api_key: str | None = None,
    ) -> None:
        self.url = url
        self._http = httpx.AsyncClient(
            base_url=url, timeout=timeout, transport=transport, headers=_auth_headers(api_key)
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call[T]) -> tuple[T, int]:
        with _map_transport_errors(self.url):
            response = await self._http.send(call.request(self._http))
        return _decode(call, response)

    async def register_workflow(self, definition: Mapping[str, Any]) -> tuple[WorkflowRef, bool]:
        """Register a definition; (name and version, whether a new version was created)."""
        ref, status = await self._send(_register_workflow(definition))
        return ref, status == 201

    async def list_workflows(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> WorkflowPage:
        return (await self._send(_list_workflows(limit, cursor)))[0]

    async def get_workflow(self, name: str) -> WorkflowDetail:
        """The latest definition and the list of its versions."""
        detail: WorkflowDetail = (await self._send(_get_workflow(name, None)))[0]
        return detail

    async def get_workflow_version(self, name: str, version: int) -> WorkflowVersion:
        found: WorkflowVersion = (await self._send(_get_workflow(name, version)))[0]
        return found

    async def start_run(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[RunBody, bool]:
        """Start a run; (the run, False when the idempotency key returned an earlier one)."""
        call = _start_run(workflow, input, version, idempotency_key, tags)
        run, status = await self._send(call)
        return run, status == 201

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        idempotency_key: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RunPage:
        """Runs newest first, created in [created_after, created_before) when given, with
        every one of `tags`."""
        filters = _RunFilters(
            workflow=workflow,
            status=status,
            idempotency_key=idempotency_key,
            created_after=created_after,
            created_before=created_before,
            tags=tags,
        )
        return (await self._send(_list_runs(filters, limit, cursor)))[0]

    async def count_runs(
        self, *, workflow: str | None = None, created_after: datetime | str | None = None
    ) -> RunCountsBody:
        """Runs per status, each counted up to the server's cap (see `capped`)."""
        return (await self._send(_count_runs(workflow, created_after)))[0]

    async def get_run(
        self, run_id: str, *, wait: float | None = None, inline: bool = False
    ) -> RunBody:
        """The run; a value over the server's inline bound reads `{"$elided": {bytes, href}}`
        unless `inline` asks for every value in full."""
        return (await self._send(_get_run(run_id, wait, inline)))[0]

    async def get_value(self, run_id: str, path: str) -> Any:
        """One value of a run: `input`, `output`, `tasks/<task>/input|output`, or
        `tasks/<task>[<index>]/input|output` for a map item (see `elided_path`)."""
        return (await self._send(_get_value(run_id, path)))[0]

    async def list_events(
        self, run_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> HistoryPage:
        return (await self._send(_list_events(run_id, limit, cursor)))[0]

    async def cancel_run(self, run_id: str, reason: str = "") -> RunBody:
        return (await self._send(_cancel_run(run_id, reason)))[0]

    async def signal_run(self, run_id: str, name: str, payload: Any = None) -> RunBody:
        return (await self._send(_signal_run(run_id, name, payload)))[0]

    async def retry_run(self, run_id: str) -> RunBody:
        return (await self._send(_retry_run(run_id)))[0]

    async def pause_run(self, run_id: str) -> RunBody:
        return (await self._send(_steer_run(run_id, "pause")))[0]

    async def resume_run(self, run_id: str) -> RunBody:
        return (await self._send(_steer_run(run_id, "resume")))[0]

    async def create_schedule(self, spec: Mapping[str, Any]) -> ScheduleBody:
        """Create a schedule from `{name, workflow, cron+timezone | interval, ...}`."""
        return (await self._send(_create_schedule(spec)))[0]

    async def list_schedules(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> SchedulePage:
        return (await self._send(_list_schedules(limit, cursor)))[0]

    async def get_schedule(self, schedule_id: str) -> ScheduleBody:
        return (await self._send(_schedule(schedule_id)))[0]

    async def pause_schedule(self, schedule_id: str) -> ScheduleBody:
        return (await self._send(_schedule(schedule_id, "pause", "POST")))[0]

    async def resume_schedule(self, schedule_id: str) -> ScheduleBody:
        return (await self._send(_schedule(schedule_id, "resume", "POST")))[0]

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._send(_delete_schedule(schedule_id))

    async def update_schedule(self, schedule_id: str, patch: Mapping[str, Any]) -> ScheduleBody:
        """Change a schedule in place (`PATCH`): the next ticks follow the new spec."""
        return (await self._send(_patch_schedule(schedule_id, patch)))[0]

    async def cancel_backfill(self, schedule_id: str) -> ScheduleBody:
        """Stop the schedule's backfill in progress (the runs it started stay)."""
        return (await self._send(_schedule(schedule_id, "backfill", "DELETE")))[0]

    async def trigger_schedule(self, schedule_id: str) -> RunBody:
        """Start one run of the schedule now; its next tick stays where it was."""
        return (await self._send(_trigger_schedule(schedule_id)))[0]

    async def backfill_schedule(
        self,
        schedule_id: str,
        start: datetime | str,
        end: datetime | str,
        *,
        max_concurrent: int | None = None,
    ) -> ScheduleBody:
        """One run per tick in [start, end), at most `max_concurrent` at once."""
        return (await self._send(_backfill_schedule(schedule_id, start, end, max_concurrent)))[0]


class Client:
    """The API over httpx's sync client (scripts, the CLI). Use as `with Client(url) as c:`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
        api_key: str | None = None,
    ) -> None:
        self.url = url
        self._http = httpx.Client(
            base_url=url, timeout=timeout, transport=transport, headers=_auth_headers(api_key)
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call[T]) -> tuple[T, int]:
        with _map_transport_errors(self.url):
            response = self._http.send(call.request(self._http))
        return _decode(call, response)

    def register_workflow(self, definition: Mapping[str, Any]) -> tuple[WorkflowRef, bool]:
        """Register a definition; (name and version, whether a new version was created)."""
        ref, status = self._send(_register_workflow(definition))
        return ref, status == 201

    def list_workflows(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> WorkflowPage:
        return self._send(_list_workflows(limit, cursor))[0]

    def get_workflow(self, name: str) -> WorkflowDetail:
        """The latest definition and the list of its versions."""
        detail: WorkflowDetail = self._send(_get_workflow(name, None))[0]
        return detail

    def get_workflow_version(self, name: str, version: int) -> WorkflowVersion:
        found: WorkflowVersion = self._send(_get_workflow(name, version))[0]
        return found

    def start_run(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[RunBody, bool]:
        """Start a run; (the run, False when the idempotency key returned an earlier one)."""
        call = _start_run(workflow, input, version, idempotency_key, tags)
        run, status = self._send(call)
        return run, status == 201

    def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        idempotency_key: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        tags: Mapping[str, str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RunPage:
        """Runs newest first, created in [created_after, created_before) when given, with
        every one of `tags`."""
        filters = _RunFilters(
            workflow=workflow,
            status=status,
            idempotency_key=idempotency_key,
            created_after=created_after,
            created_before=created_before,
            tags=tags,
        )
        return self._send(_list_runs(filters, limit, cursor))[0]

    def count_runs(
        self, *, workflow: str | None = None, created_after: datetime | str | None = None
    ) -> RunCountsBody:
        """Runs per status, each counted up to the server's cap (see `capped`)."""
        return self._send(_count_runs(workflow, created_after))[0]

    def get_run(self, run_id: str, *, wait: float | None = None, inline: bool = False) -> RunBody:
        """The run; a value over the server's inline bound reads `{"$elided": {bytes, href}}`
        unless `inline` asks for every value in full."""
        return self._send(_get_run(run_id, wait, inline))[0]

    def get_value(self, run_id: str, path: str) -> Any:
        """One value of a run: `input`, `output`, `tasks/<task>/input|output`, or
        `tasks/<task>[<index>]/input|output` for a map item (see `elided_path`)."""
        return self._send(_get_value(run_id, path))[0]

    def list_events(
        self, run_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> HistoryPage:
        return self._send(_list_events(run_id, limit, cursor))[0]

    def cancel_run(self, run_id: str, reason: str = "") -> RunBody:
        return self._send(_cancel_run(run_id, reason))[0]

    def signal_run(self, run_id: str, name: str, payload: Any = None) -> RunBody:
        return self._send(_signal_run(run_id, name, payload))[0]

    def retry_run(self, run_id: str) -> RunBody:
        return self._send(_retry_run(run_id))[0]

    def pause_run(self, run_id: str) -> RunBody:
        return self._send(_steer_run(run_id, "pause"))[0]

    def resume_run(self, run_id: str) -> RunBody:
        return self._send(_steer_run(run_id, "resume"))[0]

    def create_schedule(self, spec: Mapping[str, Any]) -> ScheduleBody:
        """Create a schedule from `{name, workflow, cron+timezone | interval, ...}`."""
        return self._send(_create_schedule(spec))[0]

    def list_schedules(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> SchedulePage:
        return self._send(_list_schedules(limit, cursor))[0]

    def get_schedule(self, schedule_id: str) -> ScheduleBody:
        return self._send(_schedule(schedule_id))[0]

    def pause_schedule(self, schedule_id: str) -> ScheduleBody:
        return self._send(_schedule(schedule_id, "pause", "POST"))[0]

    def resume_schedule(self, schedule_id: str) -> ScheduleBody:
        return self._send(_schedule(schedule_id, "resume", "POST"))[0]

    def delete_schedule(self, schedule_id: str) -> None:
        self._send(_delete_schedule(schedule_id))

    def update_schedule(self, schedule_id: str, patch: Mapping[str, Any]) -> ScheduleBody:
        """Change a schedule in place (`PATCH`): the next ticks follow the new spec."""
        return (self._send(_patch_schedule(schedule_id, patch)))[0]

    def cancel_backfill(self, schedule_id: str) -> ScheduleBody:
        """Stop the schedule's backfill in progress (the runs it started stay)."""
        return (self._send(_schedule(schedule_id, "backfill", "DELETE")))[0]

    def trigger_schedule(self, schedule_id: str) -> RunBody:
        """Start one run of the schedule now; its next tick stays where it was."""
        return (self._send(_trigger_schedule(schedule_id)))[0]

    def backfill_schedule(
        self,
        schedule_id: str,
        start: datetime | str,
        end: datetime | str,
        *,
        max_concurrent: int | None = None,
    ) -> ScheduleBody:
        """One run per tick in [start, end), at most `max_concurrent` at once."""
        return (self._send(_backfill_schedule(schedule_id, start, end, max_concurrent)))[0]
