"""Celery: RabbitMQ broker, PostgreSQL result backend; a chain for chain10, a chord for
fanout100; a prefork worker (threads, 50, for the backlog) as a subprocess.

Durable completion record: `celery_taskmeta.date_done` of the run's final task (the chain's
last task, the chord's callback).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench import _pg
from bench._engine import Timings, drain_timeout
from bench._proc import Proc
from bench.peers._common import PgReader

BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
DONE = (
    "SELECT count(*) FROM celery_taskmeta WHERE task_id = ANY(%s) AND status IN "
    "('SUCCESS', 'FAILURE')"
)


def _epoch(moment: datetime) -> float:
    """date_done is stored naive, in UTC (Celery's enable_utc default)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class CeleryEngine:
    name = "celery"

    def __init__(self, concurrency: int | None, workdir: Path) -> None:
        self.concurrency = concurrency
        self.workdir = workdir
        self._database = ""
        self._queue = f"bench-celery-{uuid.uuid4().hex[:10]}"
        self._worker: Proc | None = None
        self._reader: PgReader | None = None

    async def setup(self) -> None:
        import os  # noqa: PLC0415

        self._database = _pg.create("celery")
        env = {
            "BENCH_CELERY_BROKER": BROKER,
            "BENCH_CELERY_BACKEND": "db+" + _pg.url(self._database, "postgresql+psycopg"),
            "BENCH_CELERY_QUEUE": self._queue,
        }
        os.environ.update(env)
        from bench.peers import celery_app  # noqa: PLC0415

        self._app = celery_app.app
        self._noop = celery_app.noop
        pool = (
            ["-P", "threads", "-c", str(self.concurrency)]
            if self.concurrency
            else ["-P", "prefork", "-c", str(os.cpu_count() or 2)]
        )
        self._worker = Proc(
            "celery-worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.peers.celery_app",
                "worker",
                "-l",
                "warning",
                "-Q",
                self._queue,
                "--without-gossip",
                "--without-mingle",
                *pool,
            ],
            self.workdir,
            env,
        )
        self._reader = PgReader(self._database)
        # Warm-up, not measured: also makes the worker create the result tables.
        final = await asyncio.to_thread(self._send_chain)
        await asyncio.sleep(1.0)
        await self._reader_wait([final], 120.0)

    async def _reader_wait(self, ids: list[str], limit_s: float, interval: float = 0.2) -> None:
        assert self._reader
        deadline = time.monotonic() + limit_s
        while True:
            try:
                await self._reader.wait_count(DONE, (ids,), len(ids), limit_s, interval)
                return
            except Exception as exc:  # the table does not exist until the first result
                if "celery_taskmeta" not in str(exc) or time.monotonic() > deadline:
                    raise
                if self._worker:
                    self._worker.check_alive()
                await asyncio.sleep(0.5)

    def processes(self) -> dict[str, int]:
        return {"celery-worker": self._worker.pid} if self._worker else {}

    async def teardown(self) -> None:
        if self._reader:
            await self._reader.close()
        if self._worker:
            self._worker.stop()
        try:
            with self._app.connection_for_write() as conn:
                conn.default_channel.queue_delete(self._queue)
        except Exception as exc:
            print(f"celery: queue delete failed: {exc!r}", file=sys.stderr)
        if self._database:
            _pg.drop(self._database)

    # -- starting runs (sync: Celery's client API is synchronous) -------------------------

    def _send_chain(self) -> str:
        from celery import chain  # noqa: PLC0415

        return str(chain(*(self._noop.si() for _ in range(10))).apply_async().id)

    def _send_chord(self) -> str:
        from celery import chord  # noqa: PLC0415

        return str(chord(self._noop.si() for _ in range(100))(self._noop.si()).id)

    def _send_one(self) -> str:
        return str(self._noop.delay().id)

    def _submit(self, send: object, n: int) -> tuple[list[float], list[str], float]:
        starts: list[float] = []
        ids: list[str] = []
        begin = time.monotonic()
        for _ in range(n):
            starts.append(time.time())
            ids.append(send())  # type: ignore[operator]
        return starts, ids, time.monotonic() - begin

    async def _finishes(self, ids: list[str]) -> tuple[list[float], int]:
        assert self._reader
        rows = await self._reader.fetch(
            "SELECT task_id, status, date_done FROM celery_taskmeta WHERE task_id = ANY(%s)", (ids,)
        )
        by_id = {r[0]: r for r in rows}
        return [_epoch(by_id[i][2]) for i in ids], sum(by_id[i][1] != "SUCCESS" for i in ids)

    async def _many(self, send: object, n: int, units: int) -> Timings:
        starts, ids, submit_s = await asyncio.to_thread(self._submit, send, n)
        await self._reader_wait(ids, drain_timeout(n))
        finishes, failed = await self._finishes(ids)
        return Timings(starts, finishes, units, failed=failed, submit_s=submit_s)

    async def run_chain10(self, n: int) -> Timings:
        return await self._many(self._send_chain, n, 10)

    async def run_fanout100(self, n: int) -> Timings:
        return await self._many(self._send_chord, n, 100)

    async def run_backlog(self, n: int) -> Timings:
        return await self._many(self._send_one, n, 1)

    async def run_latency(self, n: int) -> Timings:
        starts: list[float] = []
        ids: list[str] = []
        for _ in range(n):
            starts.append(time.time())
            ids.append(await asyncio.to_thread(self._send_one))
            await self._reader_wait(ids[-1:], 60.0, interval=0.002)
        finishes, failed = await self._finishes(ids)
        return Timings(starts, finishes, 1, failed=failed)


def make(config: str, concurrency: int | None, workdir: Path) -> CeleryEngine:
    return CeleryEngine(concurrency, workdir)
