"""A circuit breaker per host for `http` tasks.

Closed: calls go through and consecutive failures are counted. After `failures` in a
row it opens: calls fail fast (CircuitOpen, retryable) for `cooldown` seconds. Then it
is half-open: one call (the probe) goes through while the others still fail fast; the
probe's success closes the circuit, its failure opens it for another cool-down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum

from prometheus_client import CollectorRegistry, Gauge

from treadle.domain.errors import TreadleError

MAX_TRACKED_HOSTS = 200
"""Hosts the gauge labels; hosts come from definitions, so the series count is capped."""


class BreakerState(IntEnum):
    """A circuit's state; the value is what the gauge shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


StateListener = Callable[[str, BreakerState], None]


class CircuitOpen(TreadleError):
    """A host's circuit is open: the call was not made."""

    def __init__(self, host: str, retry_in: float) -> None:
        self.host = host
        self.retry_in = retry_in
        super().__init__(
            f"the circuit for {host} is open after repeated failures; "
            f"next probe in {max(retry_in, 0.0):.1f}s"
        )


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class Call:
    """One call through the breaker; say how it went with `succeeded` or `failed`."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome: bool | None = None

    def succeeded(self) -> None:
        """The host answered (any status below 500)."""
        self.outcome = True

    def failed(self) -> None:
        """A 5xx, a connection error or a timeout."""
        self.outcome = False


class CircuitBreakers:
    """The circuits of every host this worker calls."""

    def __init__(
        self,
        failures: int,
        cooldown: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        listener: StateListener | None = None,
    ) -> None:
        self._threshold = max(failures, 1)
        self._cooldown = cooldown
        self._clock = clock
        self._listener = listener
        self._circuits: dict[str, _Circuit] = {}

    def state(self, host: str) -> BreakerState:
        """The host's state now (an open circuit past its cool-down reads half-open)."""
        circuit = self._circuits.get(host)
        if circuit is None or circuit.opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - circuit.opened_at >= self._cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @contextmanager
    def call(self, host: str) -> Iterator[Call]:
        """Admit one call or raise CircuitOpen; the outcome set on the `Call` is recorded.

        A call that ends without an outcome (cancelled, or a failure that is not the
        host's fault) changes nothing, except that it frees the probe slot.
        """
        circuit = self._admit(host)
        call = Call()
        try:
            yield call
        finally:
            circuit.probing = False
            if call.outcome is True:
                self._success(host, circuit)
            elif call.outcome is False:
                self._failure(host, circuit)

    def _admit(self, host: str) -> _Circuit:
        circuit = self._circuits.setdefault(host, _Circuit())
        state = self.state(host)
        if state is BreakerState.OPEN or (state is BreakerState.HALF_OPEN and circuit.probing):
            assert circuit.opened_at is not None
            raise CircuitOpen(host, circuit.opened_at + self._cooldown - self._clock())
        if state is BreakerState.HALF_OPEN:
            circuit.probing = True
            self._notify(host, BreakerState.HALF_OPEN)
        return circuit

    def _success(self, host: str, circuit: _Circuit) -> None:
        was_open = circuit.opened_at is not None
        # Forget closed hosts, so the table only holds hosts that are failing.
        self._circuits.pop(host, None)
        if was_open:
            self._notify(host, BreakerState.CLOSED)

    def _failure(self, host: str, circuit: _Circuit) -> None:
        circuit.failures += 1
        if circuit.opened_at is not None or circuit.failures >= self._threshold:
            circuit.opened_at = self._clock()
            self._notify(host, BreakerState.OPEN)

    def _notify(self, host: str, state: BreakerState) -> None:
        if self._listener is not None:
            self._listener(host, state)


def breaker_gauge(registry: CollectorRegistry) -> StateListener:
    """A listener setting `treadle_http_circuit_state{host}` (0 closed, 1 half-open, 2 open)."""
    gauge = Gauge(
        "treadle_http_circuit_state",
        "Circuit breaker state per host of http tasks: 0 closed, 1 half-open, 2 open.",
        ["host"],
        registry=registry,
    )
    hosts: set[str] = set()

    def listen(host: str, state: BreakerState) -> None:
        if host not in hosts and len(hosts) >= MAX_TRACKED_HOSTS:
            return
        hosts.add(host)
        gauge.labels(host=host).set(int(state))

    return listen
