"""The OpenAPI document makes a complete typed client: openapi-python-client generates one
from a real `treadle serve`'s /schema/openapi.json without a warning, and the client it
wrote drives that server, each answer parsed into its typed model (issue 17, item 10)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.e2e.conftest import Server, start_server

pytestmark = pytest.mark.e2e

PACKAGE = "treadle_generated_client"

WAITING: dict[str, Any] = {
    "name": "typed-wait",
    "tasks": {
        "first": {"handler": "e2e.echo", "input": {"n": 1}},
        "gate": {"after": ["first"], "type": "signal", "signal": "go"},
    },
}
FAILING: dict[str, Any] = {
    "name": "typed-fail",
    "tasks": {"only": {"handler": "e2e.flaky", "input": {"fail_times": 1}}},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `treadle serve` on a SQLite file (loopback, no keys) for the module."""
    folder = tmp_path_factory.mktemp("typed-client")
    started = start_server(folder, f"sqlite+aiosqlite:///{folder / 'treadle.db'}")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def generated(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(the generator's output, the folder holding the generated package)."""
    folder = tmp_path_factory.mktemp("generated")
    document = folder / "openapi.json"
    document.write_bytes(server.http.get("/schema/openapi.json").content)
    bin_dir = Path(sys.executable).parent  # its post-hooks run ruff from the same venv
    done = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(folder / PACKAGE),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output, folder


@pytest.fixture(scope="module")
def client_package(generated: tuple[str, Path]) -> Iterator[ModuleType]:
    """The generated package, importable for the module's tests."""
    _, folder = generated
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def operation(name: str) -> ModuleType:
    """One generated operation module (`runs.v1_runs_start`)."""
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def model(name: str) -> type[Any]:
    """One generated model class (`RunBody`)."""
    found: type[Any] = getattr(importlib.import_module(f"{PACKAGE}.models"), name)
    return found


@pytest.fixture
def client(client_package: ModuleType, server: Server) -> Iterator[Any]:
    """The generated AuthenticatedClient on the server (no key is needed on loopback; the
    request header is what the API asks of keyless writes)."""
    made = client_package.AuthenticatedClient(
        base_url=server.url, token="unused-on-loopback", headers={"X-Treadle-Request": "1"}
    )
    with made as open_client:
        yield open_client


def test_the_generator_warns_about_nothing(generated: tuple[str, Path]) -> None:
    """No operation loses a response or a property: the generator has no warning at all."""
    output, _ = generated
    assert "Warning" not in output, output
    assert "Invalid property" not in output, output


def test_workflow_reads_and_run_control_parse_into_models(client: Any, server: Server) -> None:
    """Register, read a workflow and a version, start, pause, resume and read a run: each
    answer is the operation's typed model, not None (a dropped response) or a Problem."""
    body = model("V1WorkflowsRegisterBody").from_dict(WAITING)
    ref = operation("workflows.v1_workflows_register").sync(client=client, body=body)
    assert isinstance(ref, model("WorkflowRef")), ref
    detail = operation("workflows.v1_workflows_name_get_workflow").sync("typed-wait", client=client)
    assert isinstance(detail, model("WorkflowDetail")), detail
    assert detail.name == "typed-wait"
    version = operation("workflows.v1_workflows_name_versions_get_version").sync(
        "typed-wait", ref.version, client=client
    )
    assert isinstance(version, model("WorkflowVersion")), version

    start = model("StartRunRequest")(workflow="typed-wait", input_={"n": 1})
    run = operation("runs.v1_runs_start").sync(client=client, body=start)
    assert isinstance(run, model("RunBody")), run
    paused = operation("runs.v1_runs_run_id_pause_pause").sync(run.id, client=client)
    assert isinstance(paused, model("RunBody")), paused
    resumed = operation("runs.v1_runs_run_id_resume_resume").sync(run.id, client=client)
    assert isinstance(resumed, model("RunBody")), resumed
    read = operation("runs.v1_runs_run_id_get_run").sync(run.id, client=client)
    assert isinstance(read, model("RunBody")), read
    assert read.id == run.id
    assert {task.task_id for task in read.tasks} == {"first", "gate"}


def test_retry_of_a_failed_run_parses_into_a_run(client: Any, server: Server) -> None:
    """A run whose only task fails is retried through the generated client (202, RunBody)."""
    body = model("V1WorkflowsRegisterBody").from_dict(FAILING)
    operation("workflows.v1_workflows_register").sync(client=client, body=body)
    start = model("StartRunRequest")(workflow="typed-fail", input_={})
    run = operation("runs.v1_runs_start").sync(client=client, body=start)
    assert server.wait_for_run(run.id)["status"] == "failed"

    retried = operation("runs.v1_runs_run_id_retry_retry").sync(run.id, client=client)
    assert isinstance(retried, model("RunBody")), retried
    assert server.wait_for_run(run.id)["status"] == "completed"


def test_schedule_create_read_and_delete(client: Any, server: Server) -> None:
    """A schedule made, read and deleted: a ScheduleBody twice, then 204 and a 404 Problem."""
    body = model("V1WorkflowsRegisterBody").from_dict({**WAITING, "name": "typed-cron"})
    operation("workflows.v1_workflows_register").sync(client=client, body=body)
    spec = {"name": "typed-hourly", "workflow": "typed-cron", "interval": "1h", "paused": True}
    made = operation("schedules.v1_schedules_create").sync(
        client=client, body=model("V1SchedulesCreateBody").from_dict(spec)
    )
    assert isinstance(made, model("ScheduleBody")), made
    read = operation("schedules.v1_schedules_schedule_id_get_schedule").sync(made.id, client=client)
    assert isinstance(read, model("ScheduleBody")), read

    removed = operation("schedules.v1_schedules_schedule_id_remove").sync_detailed(
        made.id, client=client
    )
    assert removed.status_code == 204
    gone = operation("schedules.v1_schedules_schedule_id_get_schedule").sync(made.id, client=client)
    assert isinstance(gone, model("Problem")), gone
    assert gone.status == 404


def test_operations_and_metrics_are_typed_too(client: Any) -> None:
    """The probes parse into their models and /metrics is text the client hands back."""
    health = operation("operations.healthz_healthz").sync(client=client)
    assert isinstance(health, model("Health")), health
    deadline = time.monotonic() + 10
    ready = operation("operations.readyz_readyz").sync(client=client)
    while not isinstance(ready, model("Readiness")) and time.monotonic() < deadline:
        time.sleep(0.1)
        ready = operation("operations.readyz_readyz").sync(client=client)
    assert isinstance(ready, model("Readiness")), ready
    scraped = operation("operations.metrics_metrics").sync_detailed(client=client)
    assert scraped.status_code == 200
    assert b"treadle_build_info" in scraped.content
