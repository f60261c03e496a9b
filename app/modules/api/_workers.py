"""`GET /v1/workers`: the worker processes that report themselves, and each queue's backlog.

The backlog comes from the store (dispatches written but not started), not from the
broker, so it reads the same on every transport. A dispatch names its workflow task; the
task's queue is its definition's, read once per workflow version (versions never change).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from litestar import Controller, get

from treadle.api_types import QueueBody, WorkerBody, WorkersBody
from treadle.domain.compile import parse_definition
from treadle.domain.errors import WorkflowNotFound
from treadle.modules.api._bounds import known_query_only
from treadle.modules.api._errors import WorkersUnavailable
from treadle.modules.api._routes import ServicesDep, _problems
from treadle.ports import WaitingDispatches, WorkerRecord, WorkflowStore

SILENT_AFTER_REPORTS = 3
"""A worker that missed this many reports in a row is shown as silent."""

QueueNames = dict[tuple[str, int], dict[str, str]]
"""(workflow, version) -> task id -> queue: versions never change, so it is read once."""


async def _queue_of(
    workflows: WorkflowStore, wait: WaitingDispatches, queues: QueueNames
) -> str | None:
    """The queue a waiting dispatch went to (a map's items: its template's); None when its
    workflow version is gone."""
    key = (wait.workflow, wait.version)
    if key not in queues:
        try:
            stored = await workflows.get_workflow(wait.workflow, wait.version)
        except WorkflowNotFound:
            return None
        tasks = parse_definition(stored.definition).tasks
        queues[key] = {
            task_id: (t.task.queue if t.type == "map" and t.task is not None else t.queue)
            for task_id, t in tasks.items()
        }
    return queues[key].get(wait.task_id)


def _worker_body(w: WorkerRecord, silent_since: datetime) -> WorkerBody:
    return WorkerBody(
        id=w.id,
        host=w.host,
        pid=w.pid,
        queues=w.queues,
        handlers=w.handlers,
        concurrency=w.concurrency,
        inflight=w.inflight,
        started_at=w.started_at,
        last_seen=w.last_seen,
        silent=w.last_seen < silent_since,
    )


def queue_bodies(
    workers: list[WorkerBody], waiting: list[tuple[str, WaitingDispatches]]
) -> list[QueueBody]:
    """One body per queue named by a worker or a waiting dispatch, by name."""
    names = {q for w in workers for q in w.queues} | {q for q, _ in waiting}
    bodies = []
    for name in sorted(names):
        here = [w for q, w in waiting if q == name]
        bodies.append(
            QueueBody(
                queue=name,
                workers=sum(1 for w in workers if name in w.queues and not w.silent),
                waiting=sum(w.count for w in here),
                oldest_waiting_since=min((w.oldest for w in here), default=None),
            )
        )
    return bodies


class WorkersController(Controller):
    """Who works: worker processes, their queues and load, and what waits for them."""

    path = "/v1/workers"
    tags = ["workers"]
    guards = [known_query_only]

    @get(
        "/",
        summary="The worker processes and every queue's backlog",
        description="Each worker reports itself every `worker.report_interval_seconds`; "
        f"one that missed {SILENT_AFTER_REPORTS} reports reads `silent: true`, one silent "
        "for a day is gone. A queue's `waiting` counts the dispatches written but not "
        "started yet (tasks and map items), from the database.",
        responses=_problems(404),
    )
    async def list_workers(self, services: ServicesDep) -> WorkersBody:
        registry = services.workers
        if registry is None:
            raise WorkersUnavailable
        interval = services.worker_report_seconds
        silent_since = datetime.now(UTC) - timedelta(seconds=interval * SILENT_AFTER_REPORTS)
        workers = [_worker_body(w, silent_since) for w in await registry.list_workers()]
        waiting = []
        for wait in await registry.waiting_dispatches():
            queue = await _queue_of(services.workflows, wait, services.queue_names)
            if queue is not None:
                waiting.append((queue, wait))
        return WorkersBody(
            workers=workers,
            queues=queue_bodies(workers, waiting),
            report_interval_seconds=interval,
        )
