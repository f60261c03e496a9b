"""Restate: the single-node server from the npm package @restatedev/restate-server (installed
by the harness into bench/results/.cache), the Python SDK served by hypercorn.

Completion record: the awaited ingress response, which Restate sends only after the
invocation's completion is durable in its log.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench._engine import Timings, Unavailable, submit_all
from bench._proc import Proc, free_port

CACHE = Path(__file__).resolve().parent.parent / "results" / ".cache" / "restate"
BINARY = CACHE / "node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"


def ensure_server() -> Path:
    """Install the server with npm on first use; Unavailable when that is not possible."""
    if BINARY.exists():
        return BINARY
    npm = shutil.which("npm")
    if not npm:
        raise Unavailable("npm not found (needed to install @restatedev/restate-server)")
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(CACHE),
            "@restatedev/restate-server",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 or not BINARY.exists():
        raise Unavailable(
            f"npm install @restatedev/restate-server failed: {(done.stderr or done.stdout)[-500:]}"
        )
    return BINARY


class RestateEngine:
    name = "restate"

    def __init__(self, concurrency: int | None, workdir: Path) -> None:
        self.concurrency = concurrency
        self.workdir = workdir
        self._procs: list[Proc] = []

    async def setup(self) -> None:
        binary = await asyncio.to_thread(ensure_server)
        ingress, admin, node, sdk = free_port(), free_port(), free_port(), free_port()
        env = {
            "RESTATE_BASE_DIR": str(self.workdir / "restate-data"),
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node}",
            "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{node}",
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
            "RESTATE_LOG_FILTER": "warn",
        }
        if self.concurrency:
            env["RESTATE_WORKER__INVOKER__CONCURRENT_INVOCATIONS_LIMIT"] = str(self.concurrency)
        server = Proc("restate-server", [str(binary), "--no-logo"], self.workdir, env)
        self._procs.append(server)
        sdk_proc = Proc(
            "hypercorn-sdk",
            [
                sys.executable,
                "-m",
                "hypercorn",
                "bench.peers.restate_app:app",
                "--bind",
                f"127.0.0.1:{sdk}",
            ],
            self.workdir,
        )
        self._procs.append(sdk_proc)
        await asyncio.to_thread(server.wait_http, f"http://127.0.0.1:{admin}/health", 90.0)
        await asyncio.to_thread(
            sdk_proc.wait_http, f"http://127.0.0.1:{sdk}/health", 60.0, (200, 404)
        )
        async with httpx.AsyncClient(timeout=30.0) as client:
            deadline = time.monotonic() + 60
            while True:
                answer = await client.post(
                    f"http://127.0.0.1:{admin}/deployments", json={"uri": f"http://127.0.0.1:{sdk}"}
                )
                if answer.status_code in (200, 201):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"register deployment: {answer.status_code} {answer.text[:300]}"
                    )
                await asyncio.sleep(0.5)
        self._http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ingress}",
            timeout=600.0,
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000),
        )
        deadline = time.monotonic() + 60
        while True:  # the ingress learns the deployment shortly after registration
            try:
                await self._call("chain10")  # warm-up, not measured
                break
            except httpx.HTTPStatusError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    def processes(self) -> dict[str, int]:
        return {proc.role: proc.pid for proc in self._procs}

    async def teardown(self) -> None:
        if hasattr(self, "_http"):
            await self._http.aclose()
        for proc in reversed(self._procs):
            proc.stop()

    async def _call(self, handler: str) -> float:
        answer = await self._http.post(f"/bench/{handler}", json=None)
        finished = time.time()
        answer.raise_for_status()
        return finished

    async def _many(self, handler: str, n: int, units: int) -> Timings:
        starts, finishes, submit_s = await submit_all(
            n, lambda _: self._call(handler), parallel=min(n, 1000)
        )
        return Timings(
            starts,
            finishes,
            units,
            submit_s=None,
            notes={"completion": "awaited ingress response", "all_done_s": submit_s},
        )

    async def run_chain10(self, n: int) -> Timings:
        return await self._many("chain10", n, 10)

    async def run_fanout100(self, n: int) -> Timings:
        return await self._many("fanout100", n, 100)

    async def run_backlog(self, n: int) -> Timings:
        return await self._many("one", n, 1)

    async def run_latency(self, n: int) -> Timings:
        starts: list[float] = []
        finishes: list[float] = []
        for _ in range(n):
            starts.append(time.time())
            finishes.append(await self._call("one"))
        return Timings(starts, finishes, 1)


def make(config: str, concurrency: int | None, workdir: Path) -> RestateEngine:
    return RestateEngine(concurrency, workdir)
