"""Treadle under test: `treadle serve` subprocesses driven over the HTTP API.

Completion is the run row's `finished_at` (the durable record), read from the API once the
runs are done; that the runs are done is seen by counting finished rows in the database,
which costs the engine less than paging the API while it works. The latency workload
waits for each run with the API's long poll (`GET /v1/runs/{id}?wait=N`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import _pg
from bench._engine import Timings, Unavailable, drain_timeout, parse_time, submit_all, wait_until
from bench._proc import Proc, free_port

CONFIGS = ("embedded", "pg-memory", "pg-rabbitmq", "pg-rabbitmq-split", "pg-nats", "pg-kafka")
TERMINAL = ("completed", "failed", "cancelled", "timed_out")
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
MAX_WAIT_SECONDS = 30.0  # per long poll (the API takes up to 60; the client's timeout is 60)
NATS_URL = "nats://127.0.0.1:4222"


def _chain(name: str, length: int) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for i in range(length):
        tasks[f"s{i}"] = {"handler": "bench.noop", **({"after": [f"s{i - 1}"]} if i else {})}
    return {"name": name, "tasks": tasks}


def _fanout(name: str, width: int) -> dict[str, Any]:
    tasks: dict[str, Any] = {f"p{i}": {"handler": "bench.noop"} for i in range(width)}
    tasks["join"] = {"handler": "bench.noop", "after": list(tasks)}
    return {"name": name, "tasks": tasks}


WORKFLOWS = [_chain("chain10", 10), _fanout("fanout100", 100), _chain("one", 1)]


class TreadleEngine:
    """Treadle in one configuration (see CONFIGS)."""

    name = "treadle"

    def __init__(self, config: str, concurrency: int | None, workdir: Path) -> None:
        if config not in CONFIGS:
            raise ValueError(f"unknown Treadle config {config!r}")
        self.config = config
        self.concurrency = concurrency
        self.workdir = workdir
        self._procs: list[Proc] = []
        self._stack = ExitStack()
        self._database: str | None = None
        self._sqlite_path: Path | None = None
        self._db_url = ""
        self._broker_env: dict[str, str] = {}
        self.api = ""

    # -- lifecycle ------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {
            **_source_path(),
            "TREADLE_DATABASE_URL": self._db_url,
            "TREADLE_TRANSPORT__NAMESPACE": f"bench-{uuid.uuid4().hex[:10]}",
            "TREADLE_LOG__LEVEL": "warning",
        }
        if self.concurrency:
            env["TREADLE_WORKER__CONCURRENCY"] = str(self.concurrency)
        kind = self.config.removeprefix("pg-").removesuffix("-split")
        if self.config == "embedded" or kind == "memory":
            env["TREADLE_TRANSPORT"] = "memory"
        elif kind == "rabbitmq":
            env |= {"TREADLE_TRANSPORT": "rabbitmq", "TREADLE_BROKER_URL": RABBITMQ_URL}
        elif kind == "nats":
            env |= {"TREADLE_TRANSPORT": "nats", "TREADLE_BROKER_URL": NATS_URL}
        elif kind == "kafka":
            env |= {
                "TREADLE_TRANSPORT": "kafka",
                "TREADLE_BROKER_URL": self._start_tansu(),
                "TREADLE_TRANSPORT__KAFKA_IDEMPOTENCE": "false",
            }
        return env

    def _start_tansu(self) -> str:
        try:
            from tests.integration.transports._tansu import running_tansu  # noqa: PLC0415
        except ImportError as exc:
            raise Unavailable(f"Tansu helper not importable: {exc}") from exc
        return self._stack.enter_context(running_tansu())

    async def setup(self) -> None:
        if self.config == "embedded":
            self._sqlite_path = self.workdir / "treadle.db"
            self._db_url = f"sqlite+aiosqlite:///{self._sqlite_path}"
        else:
            self._database = _pg.create("treadle")
            self._db_url = _pg.url(self._database, "postgresql+asyncpg")
        env = await asyncio.to_thread(self._env)  # Tansu's readiness check runs its own loop
        self._broker_env = env
        treadle = [sys.executable, "-m", f"{_package()}.cli"]
        if self._database:
            await asyncio.to_thread(
                subprocess.run,
                [*treadle, "migrate"],
                env={**_os_env(), **env},
                check=True,
                capture_output=True,
                timeout=120,
            )
            history = int(os.environ.get("BENCH_HISTORY_RUNS", "0"))
            if history:  # `--history N`: finished runs already in the database
                await asyncio.to_thread(_pg.fill_history, self._database, history)
        port = free_port()
        self.api = f"http://127.0.0.1:{port}"
        serve = [*treadle, "serve", "--handlers", "bench.treadle_handlers"]
        if self.config.endswith("-split"):
            layout = [
                ("api", "api", port),
                ("orchestrator", "orchestrator", free_port()),
                ("worker-1", "worker", free_port()),
                ("worker-2", "worker", free_port()),
            ]
            for role, roles, p in layout:
                self._procs.append(
                    Proc(
                        role,
                        [*serve, "--roles", roles, "--port", str(p)],
                        self.workdir,
                        env,
                        cwd=_repo_root(),
                    )
                )
        else:
            self._procs.append(
                Proc("treadle", [*serve, "--port", str(port)], self.workdir, env, cwd=_repo_root())
            )
        await asyncio.to_thread(self._procs[0].wait_http, f"{self.api}/readyz", 90.0)
        self._http = httpx.AsyncClient(
            base_url=self.api,
            timeout=60.0,
            # Below the server's keep-alive (uvicorn: 5 s, as httpx's default): with equal
            # expiries a connection the server is closing can be picked for a request.
            limits=httpx.Limits(
                max_connections=100, max_keepalive_connections=100, keepalive_expiry=2.0
            ),
        )
        for definition in WORKFLOWS:
            (await self._http.post("/v1/workflows", json=definition)).raise_for_status()
        # Warm-up: one run through the whole pipeline, not measured.
        run_id = await self._start("chain10")
        await self._wait_one(run_id, limit_s=120.0)
        for proc in self._procs:
            proc.check_alive()

    def processes(self) -> dict[str, int]:
        return {proc.role: proc.pid for proc in self._procs}

    async def teardown(self) -> None:
        with contextlib.suppress(Exception):
            await self._http.aclose()
        for proc in reversed(self._procs):
            proc.stop()
        self._stack.close()
        if self._database:
            _pg.drop(self._database)
        from tests.brokers import delete_namespace_of  # noqa: PLC0415

        await asyncio.to_thread(delete_namespace_of, self._broker_env)

    # -- API ------------------------------------------------------------------------------

    async def _start(self, workflow: str) -> str:
        response = await self._http.post("/v1/runs", json={"workflow": workflow, "input": {}})
        response.raise_for_status()
        return str(response.json()["id"])

    async def _wait_one(self, run_id: str, limit_s: float) -> dict[str, Any]:
        """The run once it has ended, by the API's long poll (`GET /v1/runs/{id}?wait=`),
        which answers as the run ends instead of costing the engine a request per poll."""
        deadline = time.monotonic() + limit_s
        while True:
            wait = min(MAX_WAIT_SECONDS, max(0.1, deadline - time.monotonic()))
            response = await self._http.get(f"/v1/runs/{run_id}", params={"wait": wait})
            run = response.raise_for_status().json()
            if run["status"] in TERMINAL:
                return dict(run)
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['status']} after {limit_s}s")
            await asyncio.sleep(0.002)  # a revision from before the long poll answers at once

    async def _finished_count(self, workflow: str) -> int:
        statuses = ", ".join(f"'{s}'" for s in TERMINAL)
        query = (
            f"SELECT count(*) FROM treadle_runs WHERE workflow = '{workflow}' "
            f"AND status IN ({statuses})"
        )
        if self._sqlite_path:

            def count() -> int:
                with contextlib.closing(
                    sqlite3.connect(f"file:{self._sqlite_path}?mode=ro", uri=True, timeout=30)
                ) as conn:
                    return int(conn.execute(query).fetchone()[0])

            return await asyncio.to_thread(count)
        async with await psycopg.AsyncConnection.connect(
            _pg.url(self._database or ""), autocommit=True
        ) as conn:
            row = await (await conn.execute(query)).fetchone()
            return int(row[0]) if row else 0

    async def _all_runs(self, workflow: str) -> dict[str, dict[str, Any]]:
        runs: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            params: dict[str, Any] = {"workflow": workflow, "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = (await self._http.get("/v1/runs", params=params)).json()
            for item in page["items"]:
                runs[item["id"]] = item
            cursor = page.get("next_cursor")
            if not cursor:
                return runs

    async def _many(self, workflow: str, n: int, units: int) -> Timings:
        baseline = await self._finished_count(workflow)  # the warm-up run
        starts, ids, submit_s = await submit_all(n, lambda _: self._start(workflow))

        async def done() -> bool:
            return await self._finished_count(workflow) >= baseline + n

        await wait_until(done, drain_timeout(n), what=f"{n} {workflow} runs")
        runs = await self._all_runs(workflow)
        finishes = [parse_time(runs[i]["finished_at"]) for i in ids]
        failed = sum(runs[i]["status"] != "completed" for i in ids)
        return Timings(starts, finishes, units, failed=failed, submit_s=submit_s)

    # -- workloads ------------------------------------------------------------------------

    async def run_chain10(self, n: int) -> Timings:
        return await self._many("chain10", n, 10)

    async def run_fanout100(self, n: int) -> Timings:
        return await self._many("fanout100", n, 100)

    async def run_backlog(self, n: int) -> Timings:
        return await self._many("one", n, 1)

    async def run_latency(self, n: int) -> Timings:
        starts: list[float] = []
        finishes: list[float] = []
        failed = 0
        for _ in range(n):
            starts.append(time.time())
            run = await self._wait_one(await self._start("one"), limit_s=60.0)
            finishes.append(parse_time(run["finished_at"]))
            failed += run["status"] != "completed"
        return Timings(starts, finishes, 1, failed=failed)


def _source_path() -> dict[str, str]:
    """PYTHONPATH for a snapshot of Treadle's source (`--treadle-rev`), else nothing."""

    source = os.environ.get("BENCH_TREADLE_SRC")
    if not source:
        return {}
    return {"PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}


def _package() -> str:
    """The import name of the Treadle measured: `app` for a snapshot from before issue 13."""
    return os.environ.get("BENCH_TREADLE_PACKAGE", "treadle")


def _repo_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _os_env() -> dict[str, str]:

    return dict(os.environ)


def make(config: str, concurrency: int | None, workdir: Path) -> TreadleEngine:
    """Build the Treadle engine for `config`."""
    return TreadleEngine(config, concurrency, workdir)


if __name__ == "__main__":  # pragma: no cover - a quick manual check

    async def _main() -> None:
        engine = make(sys.argv[1], None, Path(tempfile.mkdtemp()))
        await engine.setup()
        try:
            print(await engine.run_latency(5))
        finally:
            await engine.teardown()

    asyncio.run(_main())
