"""Definitions past the registration bounds are a 422 naming the path and the limit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.config import LimitsSettings, load_settings
from tests.integration.api.conftest import problem

pytestmark = pytest.mark.anyio


def _one_task(task: dict[str, Any]) -> dict[str, Any]:
    return {"name": "bounded", "tasks": {"a": task}}


def _errors(response: httpx.Response) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = problem(response, 422)["errors"]
    return errors


async def test_a_billion_attempts_is_422_at_max_attempts(http: httpx.AsyncClient) -> None:
    """retry.max_attempts over limits.max_attempts is refused with its path."""
    task = {"handler": "h", "retry": {"max_attempts": 1_000_000_000, "initial_interval": "1ms"}}
    response = await http.post("/v1/workflows", json=_one_task(task))
    assert _errors(response) == [
        {
            "path": "tasks.a.retry.max_attempts",
            "message": "must be at most 1000 (limits.max_attempts)",
        },
        {
            "path": "tasks.a.retry.initial_interval",
            "message": "must be at least 0.1s (limits.min_retry_interval_seconds)",
        },
    ]


def test_the_retry_limits_are_settings_the_domain_receives() -> None:
    """limits.max_attempts and limits.min_retry_interval_seconds reach the compiled limits."""
    defaults = load_settings(environ={}).limits.domain()
    assert (defaults.max_attempts, defaults.min_retry_interval_seconds) == (1000, 0.1)
    custom = LimitsSettings(max_attempts=10, min_retry_interval_seconds=2.0).domain()
    assert (custom.max_attempts, custom.min_retry_interval_seconds) == (10, 2.0)


async def test_a_reference_to_an_unknown_task_is_422_at_its_path(http: httpx.AsyncClient) -> None:
    """`${ tasks.nope.output }` is refused at registration, not null in every run."""
    definition = {
        "name": "typo",
        "tasks": {"a": {"handler": "h"}, "b": {"handler": "h", "input": "${ tasks.nope.output }"}},
    }
    response = await http.post("/v1/workflows", json=definition)
    assert _errors(response) == [
        {
            "path": "tasks.b.input",
            "message": "expression 'tasks.nope.output': unknown task 'nope'",
        }
    ]
