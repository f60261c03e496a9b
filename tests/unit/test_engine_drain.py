"""SIGTERM handling of `serve`: readiness turns 503 before, and for a while before, the
roles stop."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from treadle.config import ApiSettings, DatabaseSettings, Settings
from treadle.serving.serve import _drain
from treadle.wiring import RolesHealth, RolesStopping, build


@pytest.mark.anyio
async def test_readiness_fails_for_the_shutdown_delay_before_the_roles_stop(
    tmp_path: Path,
) -> None:
    """Draining shows on /readyz's roles check `shutdown_delay_seconds` before `stop` runs."""
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}"),
        api=ApiSettings(shutdown_delay_seconds=0.3),
    )
    engine = build(settings, roles={"api"})
    engine.started_roles.add("api")
    health = RolesHealth(engine)
    await health.check()  # ready before the signal
    seen: list[float] = []

    async def stop() -> None:
        seen.append(anyio.current_time())

    began = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_drain, engine, stop)
        await anyio.sleep(0.1)
        with pytest.raises(RolesStopping):
            await health.check()  # 503 while the process still serves
        assert seen == []
    assert len(seen) == 1
    assert seen[0] - began >= 0.3
    await engine.close()
