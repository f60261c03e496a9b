"""Handlers for the quick-start workflow (quickstart.yaml beside this module).

An order goes through reserve -> (charge, notify in parallel) -> ship. `charge` fails on
its first attempt to show a retry; `ship` runs only when the charge went through.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from treadle import TaskContext, handler


@handler("inventory.reserve")
async def reserve(ctx: TaskContext, sku: str, qty: int = 1) -> dict[str, Any]:
    """Pretend to reserve stock; async handlers run on the event loop."""
    await anyio.sleep(0.3)
    return {"sku": sku, "qty": qty, "reservation": f"res-{ctx.run_id[-6:]}"}


@handler("payments.charge")
async def charge(ctx: TaskContext, amount: float, reservation: str) -> dict[str, Any]:
    """Fail the first attempt, as a flaky payment provider would; the retry succeeds."""
    await anyio.sleep(0.3)
    if ctx.attempt == 1:
        msg = "payment provider timed out (this first attempt fails on purpose)"
        raise ConnectionError(msg)
    return {"status": "ok", "amount": amount, "charge_id": f"ch-{ctx.idempotency_key[-8:]}"}


@handler("notify.email")
def notify(ctx: TaskContext, to: str, text: str) -> dict[str, Any]:
    """A sync handler: it runs in a worker thread, so blocking calls are fine."""
    time.sleep(0.2)
    return {"sent_to": to, "chars": len(text)}


@handler("shipping.create")
async def ship(ctx: TaskContext, sku: str, charge_id: str) -> dict[str, Any]:
    """Create a shipment for a paid order."""
    await anyio.sleep(0.3)
    return {"tracking": f"TRK-{charge_id[-6:].upper()}", "sku": sku}
