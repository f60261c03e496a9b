"""The Celery application the Celery peer's worker and client share (configured by env)."""

from __future__ import annotations

import os

from celery import Celery

app = Celery(
    "bench",
    broker=os.environ.get("BENCH_CELERY_BROKER", "pyamqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("BENCH_CELERY_BACKEND", "db+postgresql+psycopg://postgres@127.0.0.1/x"),
)
app.conf.update(
    task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", "bench-celery"),
    task_acks_late=True,  # at-least-once, like the durable engines it is compared with
    task_reject_on_worker_lost=True,
    broker_connection_retry_on_startup=True,
    result_extended=False,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(*_: object) -> None:
    """Do nothing."""
