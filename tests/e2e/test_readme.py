"""The README's examples run as written.

Its files (`# mypkg/tasks.py`, `# order.yaml`, `# mypkg/workflows.py` on a block's first
line) are written to an empty folder, and its commands are run there, one line at a time,
against `treadle serve --handlers mypkg.tasks` on the embedded default. `<id>` stands for
the id a person would read off the previous command. The recipes that need other machines
(the production one) are checked for the order of their steps.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ROOT, TERMINAL
from tests.ports import free_port

pytestmark = pytest.mark.e2e

README = (ROOT / "README.md").read_text()
TREADLE = Path(sys.executable).with_name("treadle")
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_FILE_NAME = re.compile(r"^# (\S+\.(?:py|yaml))\n")


def blocks(language: str) -> list[str]:
    """The README's code blocks in `language`, in order."""
    return [body for lang, body in _BLOCK.findall(README) if lang == language]


def block_with(language: str, text: str) -> str:
    """The one `language` block containing `text`."""
    [found] = [body for body in blocks(language) if text in body]
    return found


def commands(block: str) -> list[list[str]]:
    """A shell block's command lines (continuations joined, comments dropped) as argv."""
    joined = block.replace("\\\n", " ")
    lines = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [argv for argv in lines if argv]


def inline_command(start: str) -> list[str]:
    """The one command in backticks in the README's text that begins with `start`."""
    [found] = re.findall(rf"`({re.escape(start)}[^`]*)`", README)
    return shlex.split(found)


def readme_files() -> dict[str, str]:
    """Each file the README shows, by the path named on its first line."""
    files: dict[str, str] = {}
    for lang in ("python", "yaml"):
        for body in blocks(lang):
            named = _FILE_NAME.match(body)
            if named:
                files[named.group(1)] = body
    return files


class Project:
    """A user's folder with the README's files, and `treadle serve` running in it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for name, body in readme_files().items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        (folder / "mypkg" / "__init__.py").touch()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TREADLE_")}
        self.env.pop("PYTHONPATH", None)
        self.env["TREADLE_URL"] = self.url
        self.log = folder / "serve.log"
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.server: subprocess.Popen[bytes] | None = None
        self.port = port

    def serve(self, argv: list[str]) -> None:
        """Start the README's `treadle serve ...` line here, on this test's port."""
        with self.log.open("wb") as out:
            self.server = subprocess.Popen(
                [str(TREADLE), *argv[1:], "--port", str(self.port)],
                cwd=self.folder,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.server.poll() is None, self.log.read_text()
            try:
                if self.http.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"serve not ready:\n{self.log.read_text()}")

    def run(self, argv: list[str], *, ids: str | None = None) -> subprocess.CompletedProcess[str]:
        """One README command line, `<id>` replaced by `ids`."""
        argv = [ids if arg == "<id>" and ids else arg for arg in argv]
        assert argv[0] == "treadle", argv
        return subprocess.run(
            [str(TREADLE), *argv[1:]],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def wait_for(self, run_id: str) -> dict[str, object]:
        run: dict[str, object] = self.http.get(f"/v1/runs/{run_id}", params={"wait": 30}).json()
        assert run["status"] in TERMINAL, run
        return run

    def stop(self) -> None:
        self.http.close()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """The README's files in an empty folder, its server stopped at the end."""
    made = Project(tmp_path)
    try:
        yield made
    finally:
        made.stop()


def _ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.args
    assert "Traceback" not in done.stderr, done.stderr


def test_your_own_handlers_and_workflows_run_as_written(project: Project) -> None:
    """`serve --handlers mypkg.tasks`, `workflow apply order.yaml`, `run start` ... `run
    cancel`: each line works, and the run it starts completes."""
    [serve, *rest] = commands(block_with("bash", "treadle serve --handlers mypkg.tasks"))
    project.serve(serve)
    run_id = None
    for argv in rest:
        done = project.run(argv, ids=run_id)
        if argv[1:3] == ["run", "cancel"]:
            # The run has ended by now: a clear refusal, not a crash.
            assert done.returncode in (0, 1), done.stderr
            assert "Traceback" not in done.stderr, done.stderr
            continue
        _ok(done)
        if argv[1:3] == ["run", "start"]:
            [found] = project.http.get("/v1/runs", params={"idempotency_key": "order-1"}).json()[
                "items"
            ]
            run_id = str(found["id"])
            assert project.wait_for(run_id)["status"] == "completed"
    assert run_id is not None


def test_the_builder_workflow_uses_handlers_that_exist(project: Project) -> None:
    """mypkg/workflows.py registers with `workflow apply mypkg.workflows:order`, and a run
    of it goes through every task on the README's handlers."""
    project.serve(["treadle", "serve", "--handlers", "mypkg.tasks"])
    _ok(project.run(inline_command("treadle workflow apply mypkg")))
    _ok(project.run(inline_command("treadle run start order ")))
    [found] = project.http.get("/v1/runs", params={"workflow": "order"}).json()["items"]
    run = project.wait_for(str(found["id"]))
    assert run["status"] == "completed", run
    tasks = {task["task_id"]: task for task in run["tasks"]}  # type: ignore[attr-defined]
    assert {name: task["status"] for name, task in tasks.items()} == {
        "reserve": "completed",
        "charge": "completed",
        "ship": "completed",
    }


def test_the_schedule_examples_target_workflows_that_exist(project: Project) -> None:
    """Every `schedule create` line succeeds once the README's workflow is applied, and
    pause/resume/delete take the id `schedule list` shows."""
    project.serve(["treadle", "serve", "--handlers", "mypkg.tasks"])
    _ok(project.run(["treadle", "workflow", "apply", "order.yaml"]))
    schedule_id = None
    for argv in commands(block_with("bash", "treadle schedule create")):
        done = project.run(argv, ids=schedule_id)
        _ok(done)
        if argv[1:3] == ["schedule", "list"]:
            items = project.http.get("/v1/schedules").json()["items"]
            assert len(items) == 2
            schedule_id = str(items[0]["id"])
    assert schedule_id is not None


def test_the_set_up_makes_the_virtualenv_before_installing() -> None:
    """The optional venv step is read before the `pip install` it would hold."""
    venv = README.index("python3 -m venv .venv")
    assert venv < README.index("pip install -e . && treadle serve --example")


def test_the_production_recipe_creates_a_key_before_listening_off_loopback() -> None:
    """`--host 0.0.0.0` refuses to start without a key: the recipe creates one first."""
    steps = commands(block_with("bash", "export TREADLE_TRANSPORT=rabbitmq"))
    key = next(i for i, argv in enumerate(steps) if argv[1:3] == ["keys", "create"])
    migrate = next(i for i, argv in enumerate(steps) if argv[1:2] == ["migrate"])
    public = next(i for i, argv in enumerate(steps) if "0.0.0.0" in argv)
    assert migrate < key < public
