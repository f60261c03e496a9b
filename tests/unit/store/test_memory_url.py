"""`database.url = "memory://"` builds the in-process store, API keys included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.stores import create_run
from treadle.config import ConfigError, DatabaseSettings, Settings
from treadle.domain.api_keys import Scope, new_key
from treadle.domain.state import RunState
from treadle.ports import RunFilter
from treadle.serving.serve import serve
from treadle.store import MEMORY_URL, api_key_store, build_store
from treadle.store.memory import MemoryStore

pytestmark = pytest.mark.anyio
T0 = datetime(2030, 1, 1, tzinfo=UTC)


async def test_the_memory_url_builds_a_store_that_keeps_runs_and_keys() -> None:
    """One MemoryStore serves runs and API keys; a second one built shares nothing."""
    store = build_store(DatabaseSettings(url=MEMORY_URL))
    keys = api_key_store(store)
    run = RunState(id="r1", workflow="wf", version=1, created_at=T0)
    await store.migrate()
    await create_run(store, run, lambda s: None)
    await keys.create_api_key(new_key("ci", (Scope.READ,), T0).record)

    assert isinstance(store, MemoryStore)
    assert await store.get_run("r1") == run
    assert await keys.count_api_keys() == 1
    other = build_store(DatabaseSettings(url=MEMORY_URL))
    assert (await other.list_runs(RunFilter(), limit=5, cursor=None)).items == []


@pytest.mark.parametrize("roles", [{"api"}, {"orchestrator", "worker"}])
async def test_serve_refuses_the_memory_store_split_from_its_other_role(roles: set[str]) -> None:
    """An api or an orchestrator alone on memory:// is a config error naming database.url
    (the other role, in another process, could never see its runs)."""
    settings = Settings(database=DatabaseSettings(url=MEMORY_URL))
    with pytest.raises(ConfigError) as refused:
        await serve(settings, roles=roles)
    assert refused.value.key == "database.url"
