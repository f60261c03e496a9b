"""The orchestrator's sweeper deletes published outbox rows once past the retention."""

from __future__ import annotations

import anyio
import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.integration.engine.conftest import SettingsFactory
from tests.integration.engine.test_engine import DIAMOND, finished, running
from treadle.domain.state import RunStatus
from treadle.store._tables import outbox
from treadle.wiring import build


@pytest.mark.anyio
@pytest.mark.usefixtures("sql_store")
async def test_the_sweeper_empties_the_outbox_of_sent_rows(
    make_settings: SettingsFactory, database_url: str
) -> None:
    """With a retention of 0, a finished run's outbox rows are gone within a few sweeps."""
    settings = make_settings()
    orchestrator = msgspec.structs.replace(settings.orchestrator, outbox_retention_seconds=0.0)
    settings = msgspec.structs.replace(settings, orchestrator=orchestrator)
    reader = create_async_engine(database_url)
    count = select(func.count()).select_from(outbox)
    try:
        async with running(build(settings)) as engine:
            await engine.run_service.register_workflow(DIAMOND)
            run, _ = await engine.run_service.start_run("diamond", None, {"n": 5})
            assert (await finished(engine, run.id)).status is RunStatus.COMPLETED
            with anyio.fail_after(10):
                while True:
                    async with reader.connect() as conn:
                        if (await conn.execute(count)).scalar_one() == 0:
                            break
                    await anyio.sleep(0.1)
            metrics = engine.telemetry.metrics.registry
            assert (metrics.get_sample_value("treadle_outbox_pruned_total") or 0) > 0
    finally:
        await reader.dispose()
