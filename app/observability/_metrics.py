"""Prometheus metrics, each engine in its own registry.

Call sites use the named methods of `Metrics` rather than touching collectors, so the
label set of every metric is fixed here and its cardinality is bounded: no run ids,
and free-form values (workflow, handler, route) are capped per label.

A registry exports only the families of the roles its process serves (a worker has no
outbox gauges), plus `treadle_build_info`, broker errors and the standard process and
Python collectors. A family of a role the process does not serve is still made, but
left out of the registry, so a call site never needs to ask which roles are running.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

# `_created` series double every counter and histogram, and Prometheus reads them as
# separate series (they are OpenMetrics' start times, useless in the 0.0.4 text format
# served here). prometheus_client only offers a process-wide switch for them; Treadle
# makes every registry of the process, so turning it off here is the whole effect.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

ROLES = frozenset({"api", "orchestrator", "worker"})
DECIDING_ROLES = frozenset({"api", "orchestrator"})
"""Roles whose process decides: the api starts and controls runs, the orchestrator the rest."""

FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Decisions and HTTP requests: milliseconds normally, seconds when something is wrong."""

SLOW_BUCKETS = (*FAST_BUCKETS, 30.0, 60.0, 120.0, 300.0, 900.0)
"""Task durations and queueing: a handler may legitimately run for minutes."""

DEFAULT_LABEL_CAP = 200
"""Distinct values one label may take before the rest are folded into `OTHER`."""

OTHER = "other"
NONE = "none"


class TaskOutcome(StrEnum):
    """How one task attempt ended, as the orchestrator decided it."""

    COMPLETED = "completed"
    FAILED = "failed"  # failed and no attempt follows
    RETRIED = "retried"  # failed and another attempt is scheduled
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class _CappedLabel:
    """Admits the first `cap` distinct values of a label; later ones read `other`.

    Workflow and handler names come from users, so a buggy client registering names in
    a loop must not blow up the time series database.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._seen: set[str] = set()

    def __call__(self, value: object) -> str:
        text = NONE if value is None or value == "" else str(value)
        if text in self._seen:
            return text
        if len(self._seen) >= self.cap:
            return OTHER
        self._seen.add(text)
        return text


class Metrics:
    """Every Treadle metric, registered in `registry` (a fresh one by default)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        label_cap: int = DEFAULT_LABEL_CAP,
        roles: Collection[str] = ROLES,
    ) -> None:
        unknown = set(roles) - ROLES
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; choose from {sorted(ROLES)}")
        self.registry = CollectorRegistry() if registry is None else registry
        self.roles = frozenset(roles)
        self._workflow = _CappedLabel(label_cap)
        self._handler = _CappedLabel(label_cap)
        self._task_type = _CappedLabel(label_cap)
        self._route = _CappedLabel(label_cap)
        self._small = _CappedLabel(label_cap)  # statuses, transports: bounded by our code
        self._register_process()
        self._register_decisions()
        self._register_orchestrator()
        self._register_worker()
        self._register_http()

    # --- registration -----------------------------------------------------------------

    def _for(self, roles: Collection[str]) -> CollectorRegistry | None:
        """The registry when this process serves one of `roles`, else None (unexported)."""
        return self.registry if self.roles & set(roles) else None

    def _register_process(self) -> None:
        """Build info, broker errors and the process, platform and GC collectors."""
        reg = self.registry
        build_info = Gauge(
            "treadle_build_info",
            "Always 1; the labels say which Treadle and Python this process runs.",
            ["version", "python", "roles"],
            registry=reg,
        )
        build_info.labels(
            treadle_version(), platform.python_version(), _roles_label(self.roles)
        ).set(1)
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)  # registers nothing off CPython
        self._broker_errors = Counter(
            "treadle_broker_errors",
            "Failed broker operations.",
            ["transport", "operation"],
            registry=reg,
        )

    def _register_decisions(self) -> None:
        reg = self._for(DECIDING_ROLES)
        self._runs_started = Counter(
            "treadle_runs_started", "Runs started.", ["workflow"], registry=reg
        )
        self._runs_finished = Counter(
            "treadle_runs_finished",
            "Runs that reached a terminal status.",
            ["workflow", "status"],
            registry=reg,
        )
        self._tasks_dispatched = Counter(
            "treadle_tasks_dispatched",
            "Task attempts sent to workers.",
            ["task_type", "handler"],
            registry=reg,
        )
        self._tasks_finished = Counter(
            "treadle_tasks_finished",
            "Task attempts that ended, by outcome.",
            ["task_type", "handler", "outcome"],
            registry=reg,
        )

        self._decision = Histogram(
            "treadle_decision_duration_seconds",
            "One decision transaction: lock, decide, write state, history and outbox.",
            buckets=FAST_BUCKETS,
            registry=reg,
        )

    def _register_orchestrator(self) -> None:
        reg = self._for({"orchestrator"})
        self._outbox_backlog = Gauge(
            "treadle_outbox_backlog", "Outbox rows not yet published.", registry=reg
        )
        self._outbox_oldest_age = Gauge(
            "treadle_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox row (0 when empty).",
            registry=reg,
        )
        self._outbox_pruned = Counter(
            "treadle_outbox_pruned",
            "Published outbox rows deleted after the retention.",
            registry=reg,
        )
        self._timers_overdue = Gauge(
            "treadle_timers_overdue", "Durable timers due but not yet fired.", registry=reg
        )
        self._timer_lag = Gauge(
            "treadle_timer_lag_seconds",
            "How late the earliest unfired timer is (0 when none is due).",
            registry=reg,
        )

    def _register_worker(self) -> None:
        reg = self._for({"worker"})
        self._task_duration = Histogram(
            "treadle_task_duration_seconds",
            "Time a worker spent executing one attempt.",
            ["task_type", "handler"],
            buckets=SLOW_BUCKETS,
            registry=reg,
        )
        self._schedule_to_start = Histogram(
            "treadle_task_schedule_to_start_seconds",
            "Time from dispatch to a worker starting the attempt.",
            ["task_type"],
            buckets=SLOW_BUCKETS,
            registry=reg,
        )
        self._inflight = Gauge(
            "treadle_worker_inflight_tasks", "Attempts executing in this worker.", registry=reg
        )
        self._concurrency = Gauge(
            "treadle_worker_concurrency_limit",
            "How many attempts this worker runs at once at most.",
            registry=reg,
        )
        self._sync_threads_held = Gauge(
            "treadle_worker_sync_threads_held",
            "Threads sync handlers hold in this worker, including those of attempts it let go"
            " (timed out, cancelled) whose handler has not returned.",
            registry=reg,
        )
        self._sync_threads_abandoned = Gauge(
            "treadle_worker_sync_threads_abandoned",
            "Held threads whose attempt timed out or was cancelled while the handler kept running.",
            registry=reg,
        )
        self._sync_threads_limit = Gauge(
            "treadle_worker_sync_threads_limit",
            "worker.max_sync_threads: with this many held, the worker takes no sync work.",
            registry=reg,
        )

    def _register_http(self) -> None:
        reg = self._for({"api"})
        self._http_requests = Counter(
            "treadle_http_requests",
            "HTTP requests served, by route template.",
            ["route", "method", "status"],
            registry=reg,
        )
        self._http_duration = Histogram(
            "treadle_http_request_duration_seconds",
            "Time to serve an HTTP request, by route template.",
            ["route", "method"],
            buckets=FAST_BUCKETS,
            registry=reg,
        )

    # --- runs and tasks (orchestrator) -------------------------------------------------

    def run_started(self, workflow: str) -> None:
        """A run was created (not for a repeated Idempotency-Key)."""
        self._runs_started.labels(self._workflow(workflow)).inc()

    def run_finished(self, workflow: str, status: str) -> None:
        """A run reached completed, failed, cancelled or timed_out."""
        self._runs_finished.labels(self._workflow(workflow), self._small(status)).inc()

    def task_dispatched(self, task_type: str, handler: str | None) -> None:
        """An attempt was published to a task queue."""
        self._tasks_dispatched.labels(self._task_type(task_type), self._handler(handler)).inc()

    def task_finished(self, task_type: str, handler: str | None, outcome: str) -> None:
        """An attempt ended; `outcome` is a `TaskOutcome` (anything else reads `other`)."""
        known = outcome if outcome in TaskOutcome.__members__.values() else OTHER
        self._tasks_finished.labels(self._task_type(task_type), self._handler(handler), known).inc()

    # --- worker -----------------------------------------------------------------------

    def observe_task_duration(self, task_type: str, handler: str | None, seconds: float) -> None:
        """How long one attempt ran in the worker, whatever its outcome."""
        self._task_duration.labels(self._task_type(task_type), self._handler(handler)).observe(
            max(seconds, 0.0)
        )

    def observe_schedule_to_start(self, task_type: str, seconds: float) -> None:
        """Dispatch to start; clocks of two machines may disagree, so negatives read 0."""
        self._schedule_to_start.labels(self._task_type(task_type)).observe(max(seconds, 0.0))

    def set_worker_concurrency(self, limit: int) -> None:
        """The worker's concurrency cap, to graph in-flight attempts against."""
        self._concurrency.set(limit)

    def set_sync_threads(self, held: int, abandoned: int) -> None:
        """Threads sync handlers hold now, and how many of those their attempt let go."""
        self._sync_threads_held.set(held)
        self._sync_threads_abandoned.set(abandoned)

    def set_sync_threads_limit(self, limit: int) -> None:
        """`worker.max_sync_threads`, to graph held threads against."""
        self._sync_threads_limit.set(limit)

    @contextmanager
    def track_inflight(self) -> Iterator[None]:
        """Count the block as one in-flight attempt."""
        self._inflight.inc()
        try:
            yield
        finally:
            self._inflight.dec()

    # --- orchestrator internals ---------------------------------------------------------

    def observe_decision(self, seconds: float) -> None:
        """The duration of one decision transaction."""
        self._decision.observe(max(seconds, 0.0))

    @contextmanager
    def time_decision(self) -> Iterator[None]:
        """Observe the block as one decision transaction (also when it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observe_decision(time.perf_counter() - started)

    def set_outbox_backlog(self, count: int, oldest_age_seconds: float) -> None:
        """Unpublished outbox rows and the age of the oldest, as last read from the store."""
        self._outbox_backlog.set(count)
        self._outbox_oldest_age.set(max(oldest_age_seconds, 0.0))

    def outbox_pruned(self, rows: int) -> None:
        """A sweep deleted `rows` published outbox rows past the retention."""
        self._outbox_pruned.inc(rows)

    def set_timers_overdue(self, count: int) -> None:
        """Timers whose time has passed and that no orchestrator has fired yet."""
        self._timers_overdue.set(count)

    def set_timer_lag(self, seconds: float) -> None:
        """How far behind the earliest unfired timer is (0 when it is not yet due)."""
        self._timer_lag.set(max(seconds, 0.0))

    def broker_error(self, transport: str, operation: str) -> None:
        """A publish, consume, ack or connect against the broker failed."""
        self._broker_errors.labels(self._small(transport), self._small(operation)).inc()

    # --- HTTP -------------------------------------------------------------------------

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One served request; `route` is the template (`/v1/runs/{run_id}`), never the path."""
        route_label = self._route(route)
        method_label = self._small(method.upper())
        self._http_requests.labels(route_label, method_label, self._small(status)).inc()
        self._http_duration.labels(route_label, method_label).observe(max(seconds, 0.0))

    # --- exposition -------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format: (body, content type)."""
        # generate_latest writes the 0.0.4 text format, so say exactly that.
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4

    def metric_names(self) -> set[str]:
        """Every series name this registry can expose (`_total`, `_bucket`... included).

        Derived from the metric types rather than the current samples, because a labelled
        metric has no samples until its first label set is used.
        """
        names: set[str] = set()
        for family in self.registry.collect():
            names.update(f"{family.name}{suffix}" for suffix in _SUFFIXES[family.type])
        return names


def treadle_version() -> str:
    """The installed distribution's version ("unknown" when run from a bare source tree)."""
    try:
        return version("treadle")
    except PackageNotFoundError:
        return "unknown"


def _roles_label(roles: Collection[str]) -> str:
    return ",".join(sorted(roles))


_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}
