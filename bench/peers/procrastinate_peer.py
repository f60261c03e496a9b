"""Procrastinate: a PostgreSQL queue with LISTEN/NOTIFY; each chain step defers the next;
a worker subprocess (`procrastinate worker`).

Durable completion record: the `succeeded` row in `procrastinate_events` of the run's final
job (the chain's last step, the fan-out's join).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import _pg
from bench._engine import Timings, drain_timeout, submit_all
from bench._proc import Proc
from bench.peers._common import PgReader

DEFAULT_CONCURRENCY = 32  # Treadle's default worker concurrency; Procrastinate's is 1
FINAL = {
    "chain10": "j.task_name = 'bench.step' AND (j.args->>'i')::int = (j.args->>'last')::int",
    "fanout100": "j.task_name = 'bench.join'",
    "one": "j.task_name = 'bench.one'",
}


class ProcrastinateEngine:
    name = "procrastinate"

    def __init__(self, concurrency: int | None, workdir: Path) -> None:
        self.concurrency = concurrency or DEFAULT_CONCURRENCY
        self.workdir = workdir
        self._database = ""
        self._worker: Proc | None = None
        self._reader: PgReader | None = None
        self._opened: Any = None

    async def setup(self) -> None:
        import os  # noqa: PLC0415

        self._database = _pg.create("procrastinate")
        dsn = _pg.url(self._database)
        os.environ["BENCH_PROCRASTINATE_DSN"] = dsn
        env = {"BENCH_PROCRASTINATE_DSN": dsn}
        cli = [sys.executable, "-m", "procrastinate", "--app", "bench.peers.procrastinate_app.app"]
        schema = Proc("schema", [*cli, "schema", "--apply"], self.workdir, env)
        await asyncio.to_thread(schema.popen.wait, 120)
        schema.stop()
        self._reader = PgReader(self._database)
        await self._reader.fetch(
            "CREATE TABLE bench_fanout (run text PRIMARY KEY, remaining int NOT NULL)"
        )
        self._worker = Proc(
            "procrastinate-worker",
            [*cli, "worker", "--concurrency", str(self.concurrency), "--queues", "bench"],
            self.workdir,
            env,
        )
        from bench.peers import procrastinate_app  # noqa: PLC0415

        self._mod = procrastinate_app
        self._opened = procrastinate_app.app.open_async()
        await self._opened.__aenter__()
        await self.run_chain10(1)  # warm-up, not measured

    def processes(self) -> dict[str, int]:
        return {"procrastinate-worker": self._worker.pid} if self._worker else {}

    async def teardown(self) -> None:
        if self._opened is not None:
            await self._opened.__aexit__(None, None, None)
        if self._reader:
            await self._reader.close()
        if self._worker:
            self._worker.stop()
        if self._database:
            _pg.drop(self._database)

    def _final_query(self, kind: str, select: str) -> str:
        return (
            f"SELECT {select} FROM procrastinate_jobs j "
            f"LEFT JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'succeeded' "
            f"WHERE {FINAL[kind]} AND j.args->>'run' = ANY(%s) "
            f"AND j.status IN ('succeeded', 'failed')"
        )

    async def _finishes(self, kind: str, runs: list[str]) -> tuple[list[float], int]:
        assert self._reader
        rows = await self._reader.fetch(
            self._final_query(kind, "j.args->>'run', j.status, e.at"), (runs,)
        )
        by_run = {r[0]: r for r in rows}
        failed = sum(by_run[r][1] != "succeeded" for r in runs)
        return [by_run[r][2].timestamp() if by_run[r][2] else float("nan") for r in runs], failed

    async def _many(self, kind: str, n: int, units: int, defer: Any) -> Timings:
        assert self._reader
        runs = [uuid.uuid4().hex for _ in range(n)]
        starts, _, submit_s = await submit_all(n, lambda i: defer(runs[i]))
        await self._reader.wait_count(
            self._final_query(kind, "count(*)"), (runs,), n, drain_timeout(n)
        )
        finishes, failed = await self._finishes(kind, runs)
        return Timings(starts, finishes, units, failed=failed, submit_s=submit_s)

    async def run_chain10(self, n: int) -> Timings:
        return await self._many(
            "chain10", n, 10, lambda run: self._mod.step.defer_async(run=run, i=0, last=9)
        )

    async def run_fanout100(self, n: int) -> Timings:
        return await self._many(
            "fanout100", n, 100, lambda run: self._mod.fan.defer_async(run=run, width=100)
        )

    async def run_backlog(self, n: int) -> Timings:
        return await self._many("one", n, 1, lambda run: self._mod.one.defer_async(run=run))

    async def run_latency(self, n: int) -> Timings:
        assert self._reader
        runs = [uuid.uuid4().hex for _ in range(n)]
        starts: list[float] = []
        for run in runs:
            starts.append(time.time())
            await self._mod.one.defer_async(run=run)
            await self._reader.wait_count(
                self._final_query("one", "count(*)"), ([run],), 1, 60.0, interval=0.002
            )
        finishes, failed = await self._finishes("one", runs)
        return Timings(starts, finishes, 1, failed=failed)


def make(config: str, concurrency: int | None, workdir: Path) -> ProcrastinateEngine:
    return ProcrastinateEngine(concurrency, workdir)
