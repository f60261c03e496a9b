"""The workflow definition format, as users write it (JSON or YAML).

These Structs only parse; `treadle.domain.compile` validates them and turns them into the
compiled form the decider runs.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

TaskType = Literal["handler", "http", "sleep", "signal", "map", "workflow", "switch"]
Duration = str | int | float
"""`30s`, `1m`, `1h30m`, `250ms`, or a number of seconds."""

JoinRule = Literal[
    "all_success", "all_done", "none_failed", "none_failed_min_one_success", "one_success"
]
"""When a task with dependencies runs (Airflow's trigger rules): `all_success` every
dependency completed; `all_done` every one finished, however; `none_failed` none failed
(skipped ones are fine); `none_failed_min_one_success` that, and one completed;
`one_success` as soon as one completed. A task whose rule cannot hold any more is skipped."""

MapFailurePolicy = Literal["fail_fast", "complete_all"]


class _Def(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base for definition Structs: unknown fields are an error, not silently dropped."""


class RetryDefinition(_Def, frozen=True, kw_only=True):
    """How a failed attempt is retried: exponential backoff, capped."""

    max_attempts: int | str = 1
    initial_interval: Duration = "1s"
    backoff: float | str = 2.0
    max_interval: Duration = "1m"
    non_retryable: list[str] = []
    """Error type names (the exception's class name) that stop retries at once."""
    # Each of the first four may be an expression (`${ input.retries }`), evaluated when
    # the task becomes ready and again when an attempt fails.


class SwitchCase(_Def, frozen=True, kw_only=True):
    """One branch of a `switch`: the tasks in `then` run when `when` is the first to hold."""

    when: str
    then: list[str]


class HttpRequestDefinition(_Def, frozen=True, kw_only=True):
    """An HTTP call made by a worker for an `http` task; every value may be an expression."""

    method: str = "GET"
    url: Any = None
    headers: Any = None
    query: Any = None
    json: Any = None
    form: Any = None
    timeout: Duration | None = None


class TaskDefinition(_Def, frozen=True, kw_only=True):
    """One node of the graph. `type` selects which of the optional fields apply."""

    type: TaskType = "handler"
    after: list[str] = []
    join: JoinRule = "all_success"
    """How the states of the tasks in `after` decide whether this one runs."""
    when: str | None = None
    input: Any = None
    retry: RetryDefinition | None = None
    timeout: Duration | None = None
    schedule_to_start_timeout: Duration | None = None
    """handler/http: re-send an attempt not started this long after its dispatch (a broker
    lost it); unset: `orchestrator.default_schedule_to_start_timeout`, off by default."""
    heartbeat_timeout: Duration | None = None
    """handler: fail (and retry) a running attempt that sent no heartbeat for this long."""
    queue: str = "default"
    description: str | None = None
    # handler
    handler: str | None = None
    # http
    request: HttpRequestDefinition | None = None
    expect: list[int] | None = None
    retry_on: list[int] | None = None
    """Status codes worth another attempt besides 5xx and 429 (say 409 or 404)."""
    # sleep (either may be an expression, evaluated when the sleep starts)
    duration: Duration | None = None
    until: str | None = None
    # signal (the signal name; defaults to the task id); its `timeout` may be an expression
    signal: str | None = None
    # map: fan `task` out over the list that `items` evaluates to
    items: Any = None
    task: TaskDefinition | None = None
    concurrency: int | str | None = None
    """At most this many items in flight; may be an expression."""
    on_failure: MapFailurePolicy = "fail_fast"
    # workflow (child run)
    workflow: str | None = None
    version: int | None = None
    # switch: the first case whose `when` holds runs its `then` tasks; the tasks named only
    # by other cases (or by `default`) are skipped. Each task named waits for the switch.
    cases: list[SwitchCase] | None = None
    default: list[str] | None = None
    """The tasks that run when no case holds."""


class SignalsDefinition(_Def, frozen=True, kw_only=True):
    """Signals a run accepts besides those its `signal` tasks wait for.

    Any other name is refused (404), so a typo in a sender fails loudly instead of
    buffering a signal no task will ever take.
    """

    accept_any: bool = False
    """Buffer a signal of any name (for a run whose tasks choose what to wait for later)."""
    names: list[str] = []
    """More names to accept and buffer."""


class WorkflowDefinition(_Def, frozen=True, kw_only=True):
    """A named graph of tasks with an optional input schema and output expression."""

    name: str
    tasks: dict[str, TaskDefinition]
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    output: Any = None
    timeout: Duration | None = None
    signals: SignalsDefinition | None = None
    tags: dict[str, str] | None = None
    """Default tags of every run (a schedule's and the start request's win per key)."""
