"""Fuzz every operation of a running `treadle serve` from its own OpenAPI document.

Schemathesis generates requests (valid ones, and invalid ones in the authenticated pass)
for each operation and checks each answer: no 5xx, a documented status code, the
documented content type, and a body matching the documented schema. Once with an admin
key, once without a key (every operation that declares the bearer scheme must answer
401). Hypothesis runs derandomized with a small example budget, so CI is bounded and
reproducible; `TREADLE_FUZZ_EXAMPLES` raises the budget for a longer local hunt.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.generation import GenerationMode

from tests.e2e.conftest import ROOT, Server, start_server

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("TREADLE_FUZZ_EXAMPLES", "6"))
"""Examples per operation and generation mode (authenticated); about 25 operations."""
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


class Fuzzed:
    """A server with an admin key, and the operations of its OpenAPI document."""

    def __init__(self, server: Server, key: str) -> None:
        self.server = server
        self.key = key
        self.schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
        self.operations = [result.ok() for result in self.schema.get_all_operations()]


def _create_key(database_url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "create", "fuzz", "--scope", "admin"],
        cwd=ROOT,
        env={**os.environ, "TREADLE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """`treadle serve` on SQLite with one admin key (so auto mode requires keys)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite+aiosqlite:///{tmp / 'treadle.db'}"
    key = _create_key(url)
    server = start_server(tmp, url)
    try:
        yield Fuzzed(server, key)
    finally:
        server.stop()


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    call: Callable[[Any], None],
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        call(case)

    run()


def _run_all(
    fuzzed: Fuzzed, modes: tuple[GenerationMode, ...], examples: int, call: Callable[[Any], None]
) -> dict[str, str]:
    failures: dict[str, str] = {}
    for operation in fuzzed.operations:
        for mode in modes:
            try:
                _fuzz(operation, mode, examples, call)
            except Unsatisfiable:
                continue  # nothing to make invalid (no parameters, no body)
            except Exception as exc:
                failures[f"{operation.label} ({mode.value})"] = str(exc)[:2000]
    return failures


def _report(failures: dict[str, str], server: Server) -> str:
    lines = [f"--- {label}\n{text}" for label, text in failures.items()]
    return "\n".join(lines) + f"\n--- server log\n{server.tail(40)}"


def test_every_operation_conforms_with_an_admin_key(fuzzed: Fuzzed) -> None:
    """With an admin key, valid and invalid requests get documented, schema-true answers."""
    sent: dict[GenerationMode, list[int]] = {}

    def caller(mode: GenerationMode) -> Callable[[Any], None]:
        def call(case: Any) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {fuzzed.key}"}, checks=CHECKS
            )
            sent.setdefault(mode, []).append(response.status_code)

        return call

    failures: dict[str, str] = {}
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        failures |= _run_all(fuzzed, (mode,), EXAMPLES, caller(mode))
    assert not failures, _report(failures, fuzzed.server)
    valid = sent[GenerationMode.POSITIVE]
    assert len(fuzzed.operations) >= 20
    assert len(valid) >= len(fuzzed.operations)
    # Negative cases may drop the Authorization header on purpose; valid ones never do.
    assert 401 not in valid
    assert any(200 <= status < 300 for status in valid)
    total = sum(len(v) for v in sent.values())
    print(f"fuzzed {total} authenticated requests over {len(fuzzed.operations)} operations")


def test_every_secured_operation_answers_401_without_a_key(fuzzed: Fuzzed) -> None:
    """Without a key, each operation declaring the bearer scheme answers a documented 401."""
    sent: list[tuple[str, int]] = []

    def call(case: Any) -> None:
        response = case.call_and_validate(checks=CHECKS)
        secured = bool(case.operation.definition.raw.get("security"))
        sent.append((case.operation.label, response.status_code))
        if secured:
            assert response.status_code == 401, (case.operation.label, response.text)
        else:
            assert response.status_code in (200, 503), (case.operation.label, response.text)

    failures = _run_all(fuzzed, (GenerationMode.POSITIVE,), 2, call)
    assert not failures, _report(failures, fuzzed.server)
    assert {label for label, _ in sent} == {op.label for op in fuzzed.operations}
    assert {status for _, status in sent} >= {401, 200}
    print(f"fuzzed {len(sent)} unauthenticated requests over {len(fuzzed.operations)} operations")


def test_the_key_is_needed_even_for_the_fuzzer(fuzzed: Fuzzed, tmp_path: Path) -> None:
    """Sanity: the server under fuzz really enforces keys (auto mode with a key present)."""
    response = fuzzed.server.http.get("/v1/runs")
    assert response.status_code == 401
    ok = fuzzed.server.http.get("/v1/runs", headers={"Authorization": f"Bearer {fuzzed.key}"})
    assert ok.status_code == 200
