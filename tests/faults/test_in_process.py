"""Duplicated, delayed and reordered deliveries on an engine built in this process."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import anyio
import pytest

from tests.faults.dup_transport import DuplicatingTransport
from tests.faults.handlers import LEDGER_DDL, LEDGER_ENV
from tests.faults.harness import WORKFLOWS
from treadle.config import DatabaseSettings, Settings, TransportSettings
from treadle.modules.worker import HandlerRegistry
from treadle.store import build_store
from treadle.transports.memory import MemoryTransport
from treadle.wiring import Process, SystemClock

RUNS = 40


@pytest.fixture
def anyio_backend() -> str:
    """The engine's subprocess-free scenarios run on asyncio only (sqlite via aiosqlite)."""
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_every_message_twice_shuffled_and_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each message delivered twice, reordered, delayed: every run completes, tasks once."""
    import sqlite3  # noqa: PLC0415 -- only this test reads the ledger file

    ledger = tmp_path / "ledger.db"
    with sqlite3.connect(ledger) as conn:
        for ddl in LEDGER_DDL:
            conn.execute(ddl)
    monkeypatch.setenv(LEDGER_ENV, str(ledger))
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"),
        transport=TransportSettings(kind="memory"),
    )
    transport = DuplicatingTransport(
        MemoryTransport(settings.transport), random.Random(6), max_delay=0.05
    )
    engine = Process(
        settings,
        build_store(settings.database),
        transport,  # type: ignore[arg-type]
        HandlerRegistry.from_modules(["tests.faults.handlers"]),
        SystemClock(),
    )
    await engine.store.migrate()
    await engine.connect()
    try:
        statuses = await _drive(engine)
    finally:
        await engine.close()
    assert set(statuses.values()) == {"completed"}, statuses
    assert transport.duplicated > RUNS
    completions = Counter((e.run_id, e.task_id) for e in _completed(tmp_path / "treadle.db"))
    assert completions
    assert max(completions.values()) == 1
    print(f"\nFAULT-SCENARIO duplicated deliveries: runs={RUNS} faults={transport.duplicated}")


async def _drive(engine: Process) -> dict[str, str]:
    for definition in WORKFLOWS:
        await engine.run_service.register_workflow(definition)
    names = [w["name"] for w in WORKFLOWS if w["name"] != "f-slow"]
    statuses: dict[str, str] = {}
    async with anyio.create_task_group() as tg:
        await tg.start(engine.orchestrator().run)  # its recovery first, as serve does
        tg.start_soon(engine.worker().run)
        ids = []
        for i in range(RUNS):
            run, _ = await engine.run_service.start_run(names[i % len(names)], None, {})
            ids.append(run.id)
        with anyio.fail_after(90):
            while True:
                statuses = {r: str((await engine.store.get_run(r)).status) for r in ids}
                if all(s in ("completed", "failed") for s in statuses.values()):
                    break
                await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    return statuses


class _Row:
    def __init__(self, run_id: str, task_id: str) -> None:
        self.run_id, self.task_id = run_id, task_id


def _completed(path: Path) -> list[_Row]:
    import sqlite3  # noqa: PLC0415

    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT run_id, task_id FROM treadle_history WHERE type = 'task.completed'"
        ).fetchall()
    return [_Row(r, t) for r, t in rows]
