"""The Procrastinate application the peer's worker and client share (DSN from env).

chain10: each step defers the next. fanout100: `fan` defers 100 `part` jobs; each part
decrements a counter row and the last one defers `join`.
"""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

QUEUE = "bench"
app = App(
    connector=PsycopgConnector(
        conninfo=os.environ.get("BENCH_PROCRASTINATE_DSN", "postgresql://postgres@127.0.0.1/x")
    )
)


@app.task(name="bench.step", queue=QUEUE)
async def step(run: str, i: int, last: int) -> None:
    """One chain step; defers the next."""
    if i < last:
        await step.defer_async(run=run, i=i + 1, last=last)


@app.task(name="bench.one", queue=QUEUE)
async def one(run: str) -> None:
    """Do nothing."""


@app.task(name="bench.fan", queue=QUEUE)
async def fan(run: str, width: int) -> None:
    """Record how many parts must finish, then defer them all."""
    await app.connector.execute_query_async(
        "INSERT INTO bench_fanout (run, remaining) VALUES (%(run)s, %(width)s)",
        run=run,
        width=width,
    )
    await part.batch_defer_async(*({"run": run} for _ in range(width)))


@app.task(name="bench.part", queue=QUEUE)
async def part(run: str) -> None:
    """One parallel task; the last to finish defers the join."""
    row = await app.connector.execute_query_one_async(
        "UPDATE bench_fanout SET remaining = remaining - 1 WHERE run = %(run)s RETURNING remaining",
        run=run,
    )
    if row["remaining"] == 0:
        await join.defer_async(run=run)


@app.task(name="bench.join", queue=QUEUE)
async def join(run: str) -> None:
    """The join after the fan-out."""
