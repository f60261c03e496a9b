"""The per-host circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from treadle.modules.worker._breaker import (
    BreakerState,
    CircuitBreakers,
    CircuitOpen,
    breaker_gauge,
)


class FakeClock:
    """Monotonic seconds that only move when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fail(breakers: CircuitBreakers, host: str = "h:443") -> None:
    with breakers.call(host) as call:
        call.failed()


def _succeed(breakers: CircuitBreakers, host: str = "h:443") -> None:
    with breakers.call(host) as call:
        call.succeeded()


def test_opens_after_n_consecutive_failures_only() -> None:
    """A success in between resets the count; N failures in a row open the circuit."""
    breakers = CircuitBreakers(3, 10.0, clock=FakeClock())
    _fail(breakers)
    _fail(breakers)
    _succeed(breakers)
    _fail(breakers)
    _fail(breakers)
    assert breakers.state("h:443") is BreakerState.CLOSED
    _fail(breakers)
    assert breakers.state("h:443") is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="h:443"):
        _succeed(breakers)


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    """After the cool-down one probe goes; a second concurrent call is still rejected."""
    clock = FakeClock()
    breakers = CircuitBreakers(1, 10.0, clock=clock)
    _fail(breakers)
    clock.now += 10.0
    assert breakers.state("h:443") is BreakerState.HALF_OPEN
    with breakers.call("h:443") as probe:
        with pytest.raises(CircuitOpen):
            _succeed(breakers)
        probe.succeeded()
    assert breakers.state("h:443") is BreakerState.CLOSED


def test_a_failed_probe_opens_for_another_cool_down() -> None:
    """The probe failing reopens the circuit from now."""
    clock = FakeClock()
    breakers = CircuitBreakers(1, 10.0, clock=clock)
    _fail(breakers)
    clock.now += 11.0
    _fail(breakers)
    clock.now += 9.0
    assert breakers.state("h:443") is BreakerState.OPEN
    clock.now += 1.0
    assert breakers.state("h:443") is BreakerState.HALF_OPEN


def test_a_probe_without_outcome_frees_the_slot() -> None:
    """A probe that ends without an outcome (cancelled, refused) lets the next one try."""
    clock = FakeClock()
    breakers = CircuitBreakers(1, 5.0, clock=clock)
    _fail(breakers)
    clock.now += 5.0
    with breakers.call("h:443"):
        pass
    _succeed(breakers)
    assert breakers.state("h:443") is BreakerState.CLOSED


def test_hosts_have_separate_circuits() -> None:
    """One failing host does not open another's circuit."""
    breakers = CircuitBreakers(1, 5.0, clock=FakeClock())
    _fail(breakers, "a:80")
    assert breakers.state("a:80") is BreakerState.OPEN
    _succeed(breakers, "b:80")
    assert breakers.state("b:80") is BreakerState.CLOSED


def test_the_gauge_follows_the_state() -> None:
    """treadle_http_circuit_state shows 2 when open, 1 during the probe, 0 once closed."""
    clock = FakeClock()
    registry = CollectorRegistry()
    breakers = CircuitBreakers(1, 5.0, clock=clock, listener=breaker_gauge(registry))

    def value() -> float | None:
        return registry.get_sample_value("treadle_http_circuit_state", {"host": "h:443"})

    _fail(breakers)
    assert value() == 2
    clock.now += 5.0
    with breakers.call("h:443") as probe:
        assert value() == 1
        probe.succeeded()
    assert value() == 0
