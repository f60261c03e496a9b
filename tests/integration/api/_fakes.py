"""In-process stand-ins for RunControl, WorkflowStore and RunStore, built on the domain.

They validate with the real domain code (`parse_definition`, `compile_workflow`,
`validate_input`), so the API sees the same errors it will see from the engine; they
keep everything in dicts and never progress a run on their own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec

from app.domain.compile import compile_workflow, parse_definition, validate_input
from app.domain.errors import InvalidCursor, RunNotActive, RunNotFound, WorkflowNotFound
from app.domain.events import HistoryEntry
from app.domain.state import RunState, RunStatus, TaskState
from app.ports import Page, RunCounts, RunSummary, StoredWorkflow


def _now() -> datetime:
    return datetime.now(UTC)


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.startswith("o:") or not cursor[2:].isdigit():
        raise InvalidCursor(cursor)
    return int(cursor[2:])


def _page(items: list[Any], limit: int, cursor: str | None) -> Page[Any]:
    start = _offset(cursor)
    chunk = items[start : start + limit]
    more = start + limit < len(items)
    return Page(items=chunk, next_cursor=f"o:{start + limit}" if more else None)


class FakeEngine:
    """RunControl, WorkflowStore and RunStore over dicts."""

    def __init__(self) -> None:
        self.versions: dict[str, list[StoredWorkflow]] = {}
        self.runs: dict[str, RunState] = {}
        self.history: dict[str, list[HistoryEntry]] = {}
        self.keys: dict[str, str] = {}
        self.list_filters: dict[str, datetime | None] = {}

    # --- RunControl ---------------------------------------------------------------

    async def register_workflow(self, definition: dict[str, Any]) -> tuple[StoredWorkflow, bool]:
        compiled = compile_workflow(parse_definition(definition))
        return await self.save_workflow(compiled.name, definition, compiled.digest)

    async def start_run(
        self,
        workflow: str,
        version: int | None,
        input: Any,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> tuple[RunState, bool]:
        if idempotency_key is not None and idempotency_key in self.keys:
            return self.runs[self.keys[idempotency_key]], False
        stored = await self.get_workflow(workflow, version)
        compiled = compile_workflow(parse_definition(stored.definition))
        validate_input(compiled, input)
        run = RunState(
            id=uuid.uuid4().hex,
            workflow=stored.name,
            version=stored.version,
            status=RunStatus.RUNNING,
            input=input,
            created_at=_now(),
            started_at=_now(),
            tasks={tid: TaskState(task_id=tid, type=t.type) for tid, t in compiled.tasks.items()},
            idempotency_key=idempotency_key,
        )
        self.runs[run.id] = run
        self.history[run.id] = [HistoryEntry(type="run.started", at=_now(), data=input)]
        if idempotency_key is not None:
            self.keys[idempotency_key] = run.id
        return run, True

    async def cancel_run(self, run_id: str, reason: str = "") -> RunState:
        self._active(run_id, "cancel")
        self.history[run_id].append(
            HistoryEntry(type="run.cancel_requested", at=_now(), data={"reason": reason})
        )
        return self.finish(run_id, RunStatus.CANCELLED)

    async def signal_run(self, run_id: str, name: str, payload: Any) -> RunState:
        run = self._active(run_id, "signal")
        self.history[run_id].append(
            HistoryEntry(type="signal.received", at=_now(), data={"name": name, "payload": payload})
        )
        return run

    # --- WorkflowStore --------------------------------------------------------------

    async def save_workflow(
        self, name: str, definition: dict[str, Any], digest: str
    ) -> tuple[StoredWorkflow, bool]:
        versions = self.versions.setdefault(name, [])
        if versions and versions[-1].digest == digest:
            return versions[-1], False
        stored = StoredWorkflow(
            name=name,
            version=len(versions) + 1,
            definition=definition,
            digest=digest,
            created_at=_now(),
        )
        versions.append(stored)
        return stored, True

    async def get_workflow(self, name: str, version: int | None = None) -> StoredWorkflow:
        versions = self.versions.get(name, [])
        if version is None and versions:
            return versions[-1]
        if version is not None and 1 <= version <= len(versions):
            return versions[version - 1]
        raise WorkflowNotFound(name, version)

    async def list_workflows(self, limit: int, cursor: str | None) -> Page[StoredWorkflow]:
        latest = [self.versions[name][-1] for name in sorted(self.versions)]
        return _page(latest, limit, cursor)

    async def list_versions(
        self, name: str, limit: int, cursor: str | None
    ) -> Page[StoredWorkflow]:
        if name not in self.versions:
            raise WorkflowNotFound(name)
        return _page(list(reversed(self.versions[name])), limit, cursor)

    # --- RunStore ---------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunState:
        try:
            return self.runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None

    async def list_runs(
        self,
        *,
        workflow: str | None,
        status: str | None,
        limit: int,
        cursor: str | None,
        idempotency_key: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Page[RunSummary]:
        self.list_filters = {"created_after": created_after, "created_before": created_before}
        runs = [
            RunSummary(**{f: getattr(r, f) for f in RunSummary.__struct_fields__})
            for r in reversed(self.runs.values())
            if (workflow is None or r.workflow == workflow)
            and (status is None or r.status == status)
            and (idempotency_key is None or r.idempotency_key == idempotency_key)
            and (created_after is None or r.created_at >= created_after)
            and (created_before is None or r.created_at < created_before)
        ]
        return _page(runs, limit, cursor)

    async def count_runs(
        self, *, workflow: str | None, created_after: datetime | None, cap: int
    ) -> RunCounts:
        counts = dict.fromkeys((s.value for s in RunStatus), 0)
        for r in self.runs.values():
            if (workflow is None or r.workflow == workflow) and (
                created_after is None or r.created_at >= created_after
            ):
                counts[r.status.value] += 1
        capped = any(n > cap for n in counts.values())
        return RunCounts(counts={k: min(n, cap) for k, n in counts.items()}, capped=capped, cap=cap)

    async def list_history(self, run_id: str, limit: int, cursor: str | None) -> Page[HistoryEntry]:
        await self.get_run(run_id)
        return _page(self.history[run_id], limit, cursor)

    # --- test helpers -------------------------------------------------------------------

    def finish(self, run_id: str, status: RunStatus, output: Any = None) -> RunState:
        """Put a run in a terminal status, as the orchestrator would."""
        run = msgspec.structs.replace(
            self.runs[run_id], status=status, output=output, finished_at=_now()
        )
        self.runs[run_id] = run
        self.history[run_id].append(HistoryEntry(type=f"run.{status}", at=_now()))
        return run

    def _active(self, run_id: str, action: str) -> RunState:
        run = self.runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        if run.status.is_terminal:
            raise RunNotActive(run_id, run.status, action)
        return run


class FakeCheck:
    """A HealthCheck that fails with `reason` when one is set, or hangs when `hang`."""

    def __init__(self, name: str, reason: str | None = None, *, hang: bool = False) -> None:
        self.name = name
        self.reason = reason
        self.hang = hang

    async def check(self) -> None:
        if self.hang:
            await anyio.sleep_forever()
        if self.reason is not None:
            raise RuntimeError(self.reason)
