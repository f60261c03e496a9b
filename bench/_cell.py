"""One measurement in its own process: set an engine up, run one workload, tear it down.

The parent runs `python -m bench._cell '<json spec>'` and reads one JSON line from stdout, so
every measurement starts from a clean process (peak RSS means something, an engine's
globals never leak into the next one, and a hang or crash costs only that cell).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sys
import tempfile
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench._engine import Engine, Unavailable
from bench._proc import StartFailed, peak_rss_mb, tree_peak_rss

MAKERS = {
    "treadle": "bench.treadle_driver",
    "dbos": "bench.peers.dbos_peer",
    "celery": "bench.peers.celery_peer",
    "procrastinate": "bench.peers.procrastinate_peer",
    "restate": "bench.peers.restate_peer",
}
RESULT_PREFIX = "BENCH-RESULT "


def build(engine: str, config: str, concurrency: int | None, workdir: Path) -> Engine:
    """Import the engine's module and build it; `Unavailable` if its packages are missing."""
    try:
        module = importlib.import_module(MAKERS[engine])
    except ImportError as exc:
        raise Unavailable(f"cannot import {MAKERS[engine]}: {exc}") from exc
    return module.make(config, concurrency, workdir)  # type: ignore[no-any-return]


async def run_cell(spec: dict[str, Any]) -> dict[str, Any]:
    workload, n = spec["workload"], int(spec["n"])
    concurrency = spec.get("concurrency")
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec['engine']}-", dir=spec.get("tmp")))
    try:
        engine = build(spec["engine"], spec["config"], concurrency, workdir)
    except Unavailable as exc:
        return {"status": "unavailable", "reason": str(exc)}
    try:
        await engine.setup()
        method = getattr(engine, f"run_{workload}")
        timings = await method(n)
        rss: dict[str, float] = {}
        for role, pid in engine.processes().items():
            rss |= tree_peak_rss(role, pid)
        client = peak_rss_mb(os.getpid())
        if client is not None:
            rss["client"] = round(client, 1)
        return {"status": "ok", "timings": asdict(timings), "rss_mb": rss, "workdir": str(workdir)}
    except (Unavailable, StartFailed) as exc:
        return {"status": "unavailable", "reason": str(exc)[-2000:], "workdir": str(workdir)}
    except Exception as exc:
        return {
            "status": "error",
            "reason": f"{type(exc).__name__}: {exc}"[-2000:],
            "traceback": traceback.format_exc()[-4000:],
            "workdir": str(workdir),
        }
    finally:
        try:
            await engine.teardown()
        except Exception as exc:
            print(f"teardown failed: {exc!r}", file=sys.stderr)


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = asyncio.run(run_cell(spec))
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
