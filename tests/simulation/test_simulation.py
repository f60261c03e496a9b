"""Thousands of seeded simulations of orchestrator and workers under injected faults.

A failure prints `SEED=<n>`; `pytest tests/simulation --seed <n>` replays it exactly.
"""

from __future__ import annotations

import time
from collections import Counter

import anyio
import pytest

from tests.simulation._checks import InvariantBroken
from tests.simulation._sim import (
    EPOCH,
    Faults,
    Simulation,
    Stats,
    check_end_state,
    compiled_workflows,
)
from tests.stores import apply
from treadle.domain.errors import TreadleError
from treadle.domain.events import HistoryEntry
from treadle.ports import Changes

DEFAULT_SEEDS = 2000
CHUNKS = 8  # separate tests, so `-n 2` shares the seeds between its workers

DURABLE = Faults()
IN_PROCESS = Faults(wipe=0.5, crash_before_publish=0.08)
HOSTILE = Faults(
    duplicate=0.4,
    redeliver=0.3,
    crash_before_publish=0.15,
    crash_before_mark_sent=0.15,
    fail=0.4,
    stall=0.15,
    clock_jump=0.1,
    wipe=0.2,
)


def faults_for(seed: int) -> Faults:
    """Each seed picks its fault profile, so one number replays everything."""
    return (DURABLE, IN_PROCESS, HOSTILE)[seed % 3]


def simulate(seed: int) -> Stats:
    """One simulation; on a broken invariant, fail with the seed and the trace's end."""
    sim = Simulation(seed, faults_for(seed), compiled_workflows())
    try:
        return sim.run()
    except (InvariantBroken, TreadleError, AssertionError) as exc:
        tail = "\n".join(sim.trace[-40:])
        pytest.fail(f"SEED={seed}: {exc}\n{tail}\nreplay: pytest tests/simulation --seed {seed}")


def seeds_of(config: pytest.Config, chunk: int) -> range:
    """This chunk's share of the seeds (or the one seed asked for with --seed)."""
    one = config.getoption("--seed", default=None)
    if one is not None:
        return range(one, one + 1) if chunk == 0 else range(0)
    total = config.getoption("--seeds", default=None) or DEFAULT_SEEDS
    size = -(-total // CHUNKS)
    return range(chunk * size, min(total, (chunk + 1) * size))


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_every_seed_keeps_the_guarantees(chunk: int, request: pytest.FixtureRequest) -> None:
    """Under drops, duplicates, reorders, stalls and crashes every run ends, once per task."""
    seeds = seeds_of(request.config, chunk)
    started = time.perf_counter()
    decisions, messages, faults = 0, 0, Counter[str]()
    for seed in seeds:
        stats = simulate(seed)
        decisions += stats.decisions
        messages += stats.messages
        faults.update(stats.faults)
    elapsed = time.perf_counter() - started
    print(
        f"\nsimulation chunk {chunk}: seeds={len(seeds)} decisions={decisions} "
        f"messages={messages} faults={sum(faults.values())} {dict(faults)} in {elapsed:.1f}s"
    )
    assert len(seeds) == 0 or decisions > 0


def test_a_seed_replays_exactly() -> None:
    """The same seed yields the same history, so a printed seed reproduces its failure."""
    first = Simulation(7, HOSTILE, compiled_workflows())
    second = Simulation(7, HOSTILE, compiled_workflows())
    first.run()
    second.run()
    assert first.trace == second.trace
    assert first.stats.faults == second.stats.faults


def test_a_stale_result_that_changes_state_is_caught() -> None:
    """The checker itself works: a completion applied twice for a finished task fails."""
    sim = Simulation(1, Faults(), compiled_workflows())
    sim.run()
    run = next(iter(sim.store.data.runs.values()))
    again = HistoryEntry(type="task.completed", at=EPOCH, task_id=next(iter(run.tasks)), attempt=1)
    anyio.run(apply, sim.store, run.id, lambda s: Changes(state=s, history=[again]))
    with pytest.raises(InvariantBroken, match="completed twice"):
        check_end_state(sim)
