"""An in-process `RunControl` over the in-memory store, built on the domain.

It validates with the real domain code (`parse_definition`, `compile_workflow`,
`validate_input`), so the API sees the same errors it will see from the engine, and keeps
its runs in a `MemoryStore` (the real adapter of the store ports); it never progresses a
run on its own: a test ends one with `finish`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec

from tests.stores import apply, create_run
from treadle.domain.compile import compile_workflow, parse_definition, validate_input
from treadle.domain.errors import RunNotActive
from treadle.domain.events import HistoryEntry
from treadle.domain.state import RunState, RunStatus, TaskState
from treadle.domain.tags import check_tags, merge_tags
from treadle.ports import Changes, Page, RunFilter, RunSummary, StoredWorkflow
from treadle.store.memory import MemoryStore


def _now() -> datetime:
    return datetime.now(UTC)


class FakeEngine(MemoryStore):
    """RunControl over the in-memory store (which serves the reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.list_filters: dict[str, datetime | None] = {}

    @property
    def runs(self) -> dict[str, RunState]:
        """The stored runs by id (a test may replace one to set up a state)."""
        return self.data.runs

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
        *,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[RunState, bool]:
        stored = await self.get_workflow(workflow, version)
        compiled = compile_workflow(parse_definition(stored.definition))
        validate_input(compiled, input)
        run_tags = check_tags(merge_tags(stored.definition.get("tags"), tags))
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
            tags=run_tags,
        )
        started = HistoryEntry(type="run.started", at=_now(), data=input)
        applied, created = await create_run(
            self, run, lambda s: Changes(state=s, history=[started])
        )
        return applied.state, created

    async def cancel_run(self, run_id: str, reason: str = "") -> RunState:
        await self._active(run_id, "cancel")
        requested = HistoryEntry(type="run.cancel_requested", at=_now(), data={"reason": reason})
        return await self.finish(run_id, RunStatus.CANCELLED, history=[requested])

    async def signal_run(self, run_id: str, name: str, payload: Any) -> RunState:
        await self._active(run_id, "signal")
        data = {"name": name, "payload": payload}
        received = HistoryEntry(type="signal.received", at=_now(), data=data)
        applied = await apply(self, run_id, lambda s: Changes(state=s, history=[received]))
        assert applied is not None
        return applied.state

    # --- steering: nothing to retry in a run that never fails ----------------------------

    async def retry_run(self, run_id: str) -> RunState:
        run = await self.get_run(run_id)
        raise RunNotActive(run_id, str(run.status), "retry")

    async def pause_run(self, run_id: str) -> RunState:
        return await self._active(run_id, "pause")

    async def resume_run(self, run_id: str) -> RunState:
        return await self._active(run_id, "resume")

    # --- RunStore, recording the filters it was asked for ---------------------------------

    async def list_runs(
        self, where: RunFilter, *, limit: int, cursor: str | None
    ) -> Page[RunSummary]:
        self.list_filters = {
            "created_after": where.created_after,
            "created_before": where.created_before,
        }
        return await super().list_runs(where, limit=limit, cursor=cursor)

    # --- test helpers -------------------------------------------------------------------

    async def finish(
        self,
        run_id: str,
        status: RunStatus,
        output: Any = None,
        history: list[HistoryEntry] | None = None,
    ) -> RunState:
        """Put a run in a terminal status, as the orchestrator would."""

        def end(state: RunState) -> Changes:
            ended = msgspec.structs.replace(state, status=status, output=output, finished_at=_now())
            entries = [*(history or []), HistoryEntry(type=f"run.{status}", at=_now())]
            return Changes(state=ended, history=entries)

        applied = await apply(self, run_id, end)
        assert applied is not None
        return applied.state

    async def _active(self, run_id: str, action: str) -> RunState:
        run = await self.get_run(run_id)
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
