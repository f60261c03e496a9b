"""One decision or one new run through a store's unit of work, for store-level tests.

The orchestrator's pipeline decides many runs per `deciding` transaction; a test of the
store itself mostly wants one: lock the run, decide on its state, write, commit.
"""

from __future__ import annotations

from collections.abc import Callable

from treadle.domain.state import ItemQuery, RunState
from treadle.ports import Applied, Changes, DecisionStore

Decide = Callable[[RunState], Changes | None]


async def apply(
    store: DecisionStore,
    run_id: str,
    decide: Decide,
    *,
    items: Callable[[RunState], ItemQuery] | None = None,
) -> Applied | None:
    """Decide on the run in one transaction; what it committed, None if nothing changed.

    `items` names the map items to load into the state `decide` sees. Raises
    `RunNotFound`, and whatever `decide` or the store raise (then nothing is written).
    """
    async with store.deciding([run_id]) as batch:
        state = batch.state(run_id)
        if items is not None:
            state = await batch.with_items(run_id, items(state))
        changes = decide(state)
        if changes is not None:
            batch.write(changes)
    return batch.applied(run_id) if changes is not None else None


async def create_run(store: DecisionStore, run: RunState, decide: Decide) -> tuple[Applied, bool]:
    """Insert `run` decided by `decide` in one transaction; (what it committed, created).

    With the run's idempotency key taken, nothing is written and the holder comes back.
    """
    async with store.deciding([]) as batch:
        batch.create(run, decide(run))
    return batch.applied(run.id), batch.created(run.id)
