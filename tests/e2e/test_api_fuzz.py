"""Fuzz every operation of a running `treadle serve` from its own OpenAPI document, on
SQLite and on PostgreSQL.

Schemathesis generates valid and invalid requests for each operation (NUL characters
allowed, UTF-8 text), `fuzz_cases` mixes in known ids and edge values (long strings,
overflowing date-times, deep JSON), and each answer is checked: no 5xx, a documented
status code, the documented content type, and a body matching the documented schema.
Four fuzz passes per database (with an admin key, and open on loopback with the
`X-Treadle-Request` header; each positive and negative), each split by operation into
`SHARDS` tests so xdist spreads them; together they send at least
`MIN_CASES_PER_DATABASE` generated requests, counted (each test asserts its share).
Then a key-less pass (every secured operation answers 401) and an open pass without the
header (what a web page could forge answers 403). Hypothesis runs derandomized, so CI
is reproducible; `TREADLE_FUZZ_EXAMPLES` raises the budget for a longer local hunt.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.core import NOT_SET
from schemathesis.generation import GenerationMode

from tests.databases import pg_admin
from tests.e2e.conftest import ROOT, Server, start_server
from tests.e2e.fuzz_cases import Known, Tally, corpus, seed, twisted

pytestmark = pytest.mark.e2e

DEFAULT_EXAMPLES = 25
EXAMPLES = int(os.environ.get("TREADLE_FUZZ_EXAMPLES", str(DEFAULT_EXAMPLES)))
"""Examples per operation in each fuzz pass; about 25 operations."""
MIN_CASES_PER_DATABASE = 2000 * min(EXAMPLES, DEFAULT_EXAMPLES) // DEFAULT_EXAMPLES
"""Generated requests the four fuzz passes send together on each database, at the least
(2,216 at the default budget; a smaller `TREADLE_FUZZ_EXAMPLES` lowers the floor)."""
SHARDS = 1
"""Each fuzz pass is split by operation into this many tests, so xdist spreads them (one:
each test's own servers cost about as much as a shard's fuzzing on a loaded machine)."""
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
FUZZ_TESTS = 2 * len(MODES) * SHARDS
"""Fuzz tests per database: (admin key, open) x (positive, negative) x shards."""
TIMEOUT = 300 * max(1, EXAMPLES // DEFAULT_EXAMPLES)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
FORGED_CHECKS = [checks.not_a_server_error]
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Fuzzed:
    """A server, the headers every fuzz request carries, and its OpenAPI operations."""

    def __init__(self, server: Server, headers: dict[str, str], known: Known) -> None:
        self.server = server
        self.headers = headers
        self.known = known
        self.schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
        # The defaults, said out loud: NULs may appear in any generated string.
        self.schema.config.generation.update(allow_x00=True, codec="utf-8")
        self.operations = [result.ok() for result in self.schema.get_all_operations()]


@contextmanager
def _database(kind: str, tmp: Path) -> Iterator[str]:
    """An empty database of `kind`: a SQLite file (`serve` migrates it), or a migrated
    PostgreSQL database of its own."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / 'treadle.db'}"
        return
    name = f"treadle_fuzz_{uuid.uuid4().hex[:12]}"
    anyio.run(pg_admin, f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        _cli(url, "migrate")
        yield url
    finally:
        anyio.run(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cli(database_url: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "treadle.cli", *args],
        cwd=ROOT,
        env={**os.environ, "TREADLE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    """The kind of database the servers of this module run on."""
    return str(request.param)


@pytest.fixture(scope="module")
def keyed(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """`treadle serve` with one admin key (so auto mode requires keys), seeded."""
    tmp = tmp_path_factory.mktemp("fuzz-keyed")
    with _database(database, tmp) as url:
        key = _cli(url, "keys", "create", "fuzz", "--scope", "admin")
        server = start_server(tmp, url)
        try:
            headers = {"Authorization": f"Bearer {key}"}
            server.http.headers.update(headers)
            yield Fuzzed(server, headers, seed(server.http))
        finally:
            server.stop()


@pytest.fixture(scope="module")
def open_api(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """`treadle serve` on loopback without keys (auto mode, none created), seeded.

    Fuzz requests name the server's own loopback Host and carry `X-Treadle-Request`, as
    the CLI and the dashboard do, so they reach the handlers past the open-mode checks.
    """
    tmp = tmp_path_factory.mktemp("fuzz-open")
    with _database(database, tmp) as url:
        server = start_server(tmp, url)
        try:
            headers = {"X-Treadle-Request": "1", "Host": urlsplit(server.url).netloc}
            yield Fuzzed(server, headers, seed(server.http))
        finally:
            server.stop()


# --- running the operations ---------------------------------------------------------


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    known: Known | None,
    call: Callable[[Any], None],
) -> None:
    cases = operation.as_strategy(generation_mode=mode)

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(twisted(cases, known) if known is not None else cases)
    def run(case: Any) -> None:
        call(case)

    run()


def _run_all(
    fuzzed: Fuzzed,
    mode: GenerationMode,
    call: Callable[[Any], None],
    *,
    examples: int = EXAMPLES,
    known: Known | None = None,
    operations: list[Any] | None = None,
) -> dict[str, str]:
    failures: dict[str, str] = {}
    for operation in fuzzed.operations if operations is None else operations:
        try:
            _fuzz(operation, mode, examples, known, call)
        except Unsatisfiable:
            continue  # nothing to make invalid (no parameters, no body)
        except Exception as exc:
            text = "".join(traceback.format_exception(exc, limit=0))
            failures[f"{operation.label} ({mode.value})"] = text[:4000]
    return failures


def _report(failures: dict[str, str], server: Server) -> str:
    lines = [f"--- {label}\n{text}" for label, text in failures.items()]
    log = "\n".join(line[:400] for line in server.tail(30).splitlines())
    return "\n".join(lines) + f"\n--- server log\n{log}"


def _send_corpus(
    fuzzed: Fuzzed, operations: list[Any], call: Callable[[Any], None]
) -> dict[str, str]:
    failures: dict[str, str] = {}
    for operation in operations:
        for fields in corpus(operation, fuzzed.known):
            try:
                call(operation.Case(**fields))
            except Exception as exc:
                label = f"{operation.label} (corpus: {str(fields)[:200]})"
                failures[label] = "".join(traceback.format_exception(exc, limit=0))[:4000]
    return failures


def _fuzz_pass(
    fuzzed: Fuzzed, mode: GenerationMode, shard: int, *, with_corpus: bool = False
) -> Tally:
    """Send the cases of this shard's operations with the fixture's headers; fail on any
    check. `with_corpus` first sends the edge corpus of `fuzz_cases` (not counted as
    generated)."""
    tally = Tally()
    operations = fuzzed.operations[shard::SHARDS]

    def sender(*, generated: bool) -> Callable[[Any], None]:
        def call(case: Any) -> None:
            response = case.call_and_validate(headers=fuzzed.headers, checks=CHECKS, timeout=30)
            tally.add(case, response.status_code, generated=generated)

        return call

    failures = {}
    if with_corpus:
        failures = _send_corpus(fuzzed, operations, sender(generated=False))
    generated = sender(generated=True)
    failures |= _run_all(fuzzed, mode, generated, known=fuzzed.known, operations=operations)
    print(f"{mode.value} shard {shard}: {tally}")
    assert not failures, _report(failures, fuzzed.server)
    assert len(fuzzed.operations) >= 20
    assert tally.calls >= MIN_CASES_PER_DATABASE // FUZZ_TESTS, str(tally)
    assert tally.with_nul > 0, str(tally)
    assert tally.with_long_string > 0, str(tally)
    assert not any(status >= 500 for status in tally.statuses), str(tally)
    return tally


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("shard", range(SHARDS))
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_every_operation_conforms_with_an_admin_key(
    keyed: Fuzzed, mode: GenerationMode, shard: int
) -> None:
    """With an admin key, generated requests get documented, schema-true answers, never a 5xx."""
    tally = _fuzz_pass(keyed, mode, shard)
    if mode is GenerationMode.POSITIVE:
        # Negative cases may drop the Authorization header on purpose; valid ones never do.
        assert 401 not in tally.statuses
        assert any(200 <= status < 300 for status in tally.statuses)


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("shard", range(SHARDS))
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_every_operation_conforms_on_an_open_loopback_api(
    open_api: Fuzzed, mode: GenerationMode, shard: int
) -> None:
    """Without keys, requests carrying X-Treadle-Request reach the handlers: never a 5xx,
    never a 401 or a 403, always a documented answer; the positive pass also sends the
    edge corpus (long names, overflowing times, broken schemas, forged cursors)."""
    corpus_too = mode is GenerationMode.POSITIVE
    tally = _fuzz_pass(open_api, mode, shard, with_corpus=corpus_too)
    assert not {401, 403} & set(tally.statuses), str(tally)
    assert any(200 <= status < 300 for status in tally.statuses)


def test_every_secured_operation_answers_401_without_a_key(keyed: Fuzzed) -> None:
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

    failures = _run_all(keyed, GenerationMode.POSITIVE, call, examples=2)
    assert not failures, _report(failures, keyed.server)
    assert {label for label, _ in sent} == {op.label for op in keyed.operations}
    assert {status for _, status in sent} >= {401, 200}


def test_an_open_api_refuses_what_a_web_page_could_forge(open_api: Fuzzed) -> None:
    """Without keys, a write with neither X-Treadle-Request nor a JSON body is a 403
    cross-site-request, and any request naming a foreign Host a 403 host-not-allowed."""
    sent: list[tuple[str, str]] = []

    def call(case: Any) -> None:
        # A foreign Host is refused before routing, so on every path alike (documented or not).
        response = case.call_and_validate(checks=FORGED_CHECKS, headers={"Host": "rebound.example"})
        assert response.status_code == 403, (case.operation.label, response.text)
        assert response.json()["type"] == "urn:treadle:problem:host-not-allowed"
        if case.method not in _WRITES:
            sent.append((case.operation.label, "read"))
            return
        response = case.call_and_validate(checks=CHECKS)
        if case.body is NOT_SET:
            assert response.status_code == 403, (case.operation.label, response.text)
            assert response.json()["type"] == "urn:treadle:problem:cross-site-request"
            sent.append((case.operation.label, "forgeable"))
        else:  # a JSON body: no web page can send one cross-site without a preflight
            assert response.status_code != 403, (case.operation.label, response.text)
            sent.append((case.operation.label, "json"))

    failures = _run_all(open_api, GenerationMode.POSITIVE, call, examples=2)
    assert not failures, _report(failures, open_api.server)
    assert {kind for _, kind in sent} == {"read", "forgeable", "json"}


def test_the_key_is_needed_even_for_the_fuzzer(keyed: Fuzzed) -> None:
    """Sanity: the server under fuzz really enforces keys (auto mode with a key present)."""
    response = keyed.server.http.get("/v1/runs", headers={"Authorization": ""})
    assert response.status_code == 401
    assert keyed.server.http.get("/v1/runs").status_code == 200
