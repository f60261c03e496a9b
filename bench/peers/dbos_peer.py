"""DBOS Transact on PostgreSQL, in-process (its normal model): workflows with steps, and a
queue for the fan-out and the backlog.

Durable completion record: `dbos.workflow_status.completed_at` (epoch ms) of a SUCCESS row.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, SetWorkflowID

from bench import _pg
from bench._engine import Timings, drain_timeout, submit_all
from bench.peers._common import PgReader

FANOUT_QUEUE = "bench_fanout"
BACKLOG_QUEUE = "bench_backlog"
QUEUES: dict[str, Any] = {}


@DBOS.step()
async def noop_step() -> None:
    """Do nothing."""


@DBOS.workflow()
async def one() -> None:
    await noop_step()


@DBOS.workflow()
async def chain10() -> None:
    for _ in range(10):
        await noop_step()


@DBOS.workflow()
async def fanout100() -> None:
    queue = QUEUES[FANOUT_QUEUE]
    handles = [await queue.enqueue_async(one) for _ in range(100)]
    await asyncio.gather(*(h.get_result() for h in handles))


class DbosEngine:
    name = "dbos"

    def __init__(self, concurrency: int | None, workdir: Path) -> None:
        self.concurrency = concurrency
        self.workdir = workdir
        self._database = ""
        self._reader: PgReader | None = None
        self._seq = 0

    async def setup(self) -> None:
        self._database = _pg.create("dbos")
        DBOS(
            config={
                "name": "bench",
                "system_database_url": _pg.url(self._database),
                "log_level": "WARNING",
            }
        )
        await asyncio.to_thread(DBOS.launch)
        QUEUES[FANOUT_QUEUE] = await DBOS.register_queue_async(FANOUT_QUEUE)
        QUEUES[BACKLOG_QUEUE] = await DBOS.register_queue_async(
            BACKLOG_QUEUE, worker_concurrency=self.concurrency or 50
        )
        self._reader = PgReader(self._database)
        handle = await DBOS.start_workflow_async(chain10)  # warm-up, not measured
        await handle.get_result()

    def processes(self) -> dict[str, int]:
        return {"dbos (in-process)": os.getpid()}

    async def teardown(self) -> None:
        if self._reader:
            await self._reader.close()
        await asyncio.to_thread(DBOS.destroy, destroy_registry=False)
        if self._database:
            _pg.drop(self._database)

    def _ids(self, prefix: str, n: int) -> list[str]:
        self._seq += 1
        return [f"{prefix}-{self._seq}-{i}" for i in range(n)]

    async def _finishes(self, ids: list[str]) -> tuple[list[float], int]:
        assert self._reader
        rows = await self._reader.fetch(
            "SELECT workflow_uuid, status, completed_at, updated_at FROM dbos.workflow_status "
            "WHERE workflow_uuid = ANY(%s)",
            (ids,),
        )
        by_id = {r[0]: r for r in rows}
        finishes = [(by_id[i][2] or by_id[i][3]) / 1000.0 for i in ids]
        failed = sum(by_id[i][1] != "SUCCESS" for i in ids)
        return finishes, failed

    async def _many(self, workflow: Any, n: int, units: int, queue: str | None = None) -> Timings:
        assert self._reader
        ids = self._ids(workflow.__name__, n)

        async def start(i: int) -> None:
            with SetWorkflowID(ids[i]):
                if queue:
                    await QUEUES[queue].enqueue_async(workflow)
                else:
                    await DBOS.start_workflow_async(workflow)

        starts, _, submit_s = await submit_all(n, start)
        await self._reader.wait_count(
            "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid = ANY(%s) "
            "AND status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')",
            (ids,),
            n,
            drain_timeout(n),
        )
        finishes, failed = await self._finishes(ids)
        return Timings(starts, finishes, units, failed=failed, submit_s=submit_s)

    async def run_chain10(self, n: int) -> Timings:
        return await self._many(chain10, n, 10)

    async def run_fanout100(self, n: int) -> Timings:
        return await self._many(fanout100, n, 100)

    async def run_backlog(self, n: int) -> Timings:
        return await self._many(one, n, 1, queue=BACKLOG_QUEUE)

    async def run_latency(self, n: int) -> Timings:
        ids = self._ids("latency", n)
        starts: list[float] = []
        for workflow_id in ids:
            starts.append(time.time())
            with SetWorkflowID(workflow_id):
                handle = await DBOS.start_workflow_async(one)
            await handle.get_result()
        finishes, failed = await self._finishes(ids)
        return Timings(starts, finishes, 1, failed=failed)


def make(config: str, concurrency: int | None, workdir: Path) -> DbosEngine:
    return DbosEngine(concurrency, workdir)
