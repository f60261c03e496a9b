"""Clock jumps under the real timer loop: an engine built in this process with a clock the
test moves, on SQLite and the in-process transport."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.faults.handlers import LEDGER_DDL, LEDGER_ENV
from treadle.config import (
    DatabaseSettings,
    OrchestratorSettings,
    Settings,
    TransportSettings,
    WorkerSettings,
)
from treadle.domain.state import RunState
from treadle.wiring import Process, build

HOUR = timedelta(hours=1)

# Every timer is an hour away: without a jump nothing fires within the test.
CLOCKWORK: dict[str, Any] = {
    "name": "clockwork",
    "tasks": {
        # attempt 1 fails; its retry's backoff is an hour
        "flaky": {
            "handler": "fault.step",
            "input": {"seconds": 0.01, "fail_times": 1},
            "retry": {"max_attempts": 3, "initial_interval": "1h"},
        },
        "nap": {"type": "sleep", "duration": "1h"},
        # attempt 1 hangs past its one-hour timeout; the retry comes at once and answers
        "hang": {
            "handler": "fault.slow_first",
            "timeout": "1h",
            "retry": {"max_attempts": 3, "initial_interval": "100ms"},
        },
        "join": {
            "handler": "fault.step",
            "input": {"seconds": 0.01},
            "after": ["flaky", "nap", "hang"],
        },
    },
}
NAP: dict[str, Any] = {"name": "nap", "tasks": {"nap": {"type": "sleep", "duration": "1h"}}}


class JumpClock:
    """The wall clock plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def jump(self, by: timedelta) -> None:
        self.offset += by


@pytest.fixture
def anyio_backend() -> str:
    """aiosqlite runs on asyncio."""
    return "asyncio"


@asynccontextmanager
async def running(tmp_path: Path, clock: JumpClock) -> AsyncIterator[Process]:
    """An engine on a fresh SQLite file, its orchestrator and worker running."""
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"),
        transport=TransportSettings(kind="memory"),
        worker=WorkerSettings(concurrency=8, drain_seconds=0.2),
        orchestrator=OrchestratorSettings(
            default_task_timeout=2 * 3600.0,
            timer_poll_seconds=0.1,
            sweep_interval_seconds=0.5,
            outbox_stale_seconds=1.0,
        ),
    )
    engine = build(settings, handler_modules=["tests.faults.handlers"], clock=clock)
    await engine.store.migrate()
    await engine.connect()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.orchestrator().run)  # its recovery first, as serve does
            tg.start_soon(engine.worker().run)
            try:
                yield engine
            finally:
                tg.cancel_scope.cancel()
    finally:
        await engine.close()


async def until(engine: Process, run_id: str, ready: Any, within: float = 30.0) -> RunState:
    """The run once `ready(run)` holds."""
    with anyio.fail_after(within):
        while True:
            run = await engine.store.get_run(run_id)
            if ready(run):
                return run
            await anyio.sleep(0.05)


def rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path, timeout=30) as conn:
        return list(conn.execute(query).fetchall())


def history(db: Path) -> Counter[tuple[str, str | None, int | None]]:
    return Counter(rows(db, "SELECT type, task_id, attempt FROM treadle_history"))


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The handlers' ledger file (one row per execution)."""
    path = tmp_path / "ledger.db"
    for ddl in LEDGER_DDL:
        rows(path, ddl)
    monkeypatch.setenv(LEDGER_ENV, str(path))
    return path


def _waiting(run: RunState) -> bool:
    """flaky waits out its backoff, nap sleeps, hang's attempt 1 runs."""
    tasks = run.tasks
    return (
        tasks["flaky"].status == "scheduled"  # attempt 2, awaiting its backoff
        and tasks["flaky"].scheduled_at is None
        and tasks["flaky"].error is not None
        and tasks["nap"].status == "running"
        and tasks["hang"].status == "running"
    )


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_jump_forward_fires_backoff_sleep_and_timeout_once(
    tmp_path: Path, ledger: Path
) -> None:
    """Two hours forward: the retry, the sleep and the timeout each fire once, correctly."""
    clock = JumpClock()
    db = tmp_path / "treadle.db"
    async with running(tmp_path, clock) as engine:
        await engine.run_service.register_workflow(CLOCKWORK)
        run, _ = await engine.run_service.start_run("clockwork", None, {})
        await until(engine, run.id, _waiting)
        await anyio.sleep(0.5)  # several polls: nothing an hour away fires without a jump
        assert (await engine.store.get_run(run.id)).status == "running"
        clock.jump(2 * HOUR)
        done = await until(engine, run.id, lambda r: r.status.is_terminal)
        assert done.status == "completed", done
        before = history(db)
        await anyio.sleep(1.0)  # later polls find nothing more to fire
        after = history(db)
    tasks = done.tasks
    assert (tasks["flaky"].attempt, tasks["hang"].attempt, tasks["nap"].attempt) == (2, 2, 1)
    assert tasks["hang"].output is not None
    assert tasks["hang"].output["attempt"] == 2, "the timed-out attempt's result was kept"
    assert after == before
    assert after[("task.timed_out", "hang", 1)] == 1
    retries = [
        a for kind, t, a in after.elements() if (kind, t) == ("task.retry_scheduled", "flaky")
    ]
    assert len(retries) == 1
    completed = Counter(t for kind, t, _ in after.elements() if kind == "task.completed")
    assert completed == {"flaky": 1, "nap": 1, "hang": 1, "join": 1}
    runs = Counter(rows(ledger, "SELECT task_id, attempt FROM fault_ledger"))
    assert runs == {("flaky", 1): 1, ("flaky", 2): 1, ("hang", 2): 1, ("join", 1): 1}
    assert rows(db, "SELECT count(*) FROM treadle_timers") == [(0,)]


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_jump_backward_fires_nothing_again_or_early(tmp_path: Path, ledger: Path) -> None:
    """Back three hours after a timer fired: it never fires again; a pending one waits."""
    clock = JumpClock()
    db = tmp_path / "treadle.db"
    async with running(tmp_path, clock) as engine:
        await engine.run_service.register_workflow(NAP)
        first, _ = await engine.run_service.start_run("nap", None, {})
        await until(engine, first.id, lambda r: r.tasks["nap"].status == "running")
        clock.jump(2 * HOUR)
        await until(engine, first.id, lambda r: r.status == "completed")
        second, _ = await engine.run_service.start_run("nap", None, {})  # due at T+3h
        await until(engine, second.id, lambda r: r.tasks["nap"].status == "running")
        fired = history(db)
        clock.jump(-3 * HOUR)  # to T - 1h: both runs' timers are in the future again
        await anyio.sleep(1.0)
        assert history(db) == fired, "a timer fired again, or early, after the jump back"
        assert (await engine.store.get_run(second.id)).status == "running"
        clock.jump(4 * HOUR + timedelta(minutes=1))  # to T + 3h1m: the second's is due
        done = await until(engine, second.id, lambda r: r.status.is_terminal)
        await anyio.sleep(0.5)
        final = history(db)
    assert done.status == "completed"
    query = "SELECT run_id FROM treadle_history WHERE type = 'task.completed'"
    assert Counter(r for (r,) in rows(db, query)) == {first.id: 1, second.id: 1}
    assert (final - fired)[("task.completed", "nap", 1)] == 1
    assert rows(db, "SELECT count(*) FROM treadle_timers") == [(0,)]
