"""A new user's first run: `treadle serve --example` in an empty folder, then a browser.

The server runs from a temporary folder (not the checkout), so nothing but the installed
package is importable; everything it prints must be a JSON line (stdout is not a terminal).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import TERMINAL
from tests.ports import free_port

pytestmark = pytest.mark.e2e

ORDER = {"sku": "book-42", "amount": 12.5, "email": "ada@example.com"}
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
TREADLE = Path(sys.executable).with_name("treadle")


class FirstRun:
    """`treadle serve --example` started in `folder`, its output in a file."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = folder / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TREADLE_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONPATH", None)  # only the installed package, as a user has it
        # The console script, as the README's first command runs it.
        command = [str(TREADLE), "serve", "--example", "--port", str(self.port)]
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                command,
                cwd=folder,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.text()}")
            try:
                if self.http.get("/v1/workflows/order-fulfillment").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the example was not served after 30 s:\n{self.text()}")

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        """Every line of output, decoded: a line that is not JSON fails the test."""
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    """One server for the module's tests: each reads what it needs and changes nothing
    another one checks."""
    folder = tmp_path_factory.mktemp("empty-folder")
    server = FirstRun(folder)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_the_example_runs_from_a_folder_outside_the_checkout(first_run: FirstRun) -> None:
    """The quick start's workflow and handlers load from the package: a run completes, and
    its database is the new folder's `treadle.db`."""
    started = first_run.http.post(
        "/v1/runs", json={"workflow": "order-fulfillment", "input": ORDER}
    )
    assert started.status_code == 201, started.text
    run = first_run.http.get(f"/v1/runs/{started.json()['id']}", params={"wait": 30}).json()
    assert run["status"] in TERMINAL
    assert run["status"] == "completed", run
    assert (first_run.output.parent / "treadle.db").exists()


def test_start_up_says_where_the_dashboard_is(first_run: FirstRun) -> None:
    """One line gives the dashboard's address on the port served; `/` redirects there."""
    [line] = [line for line in first_run.lines() if "dashboard_url" in line]
    assert line["dashboard_url"] == f"{first_run.url}/ui"
    assert line["docs_url"] == f"{first_run.url}/schema"
    assert f"{first_run.url}/ui" in line["message"]
    root = first_run.http.get("/")
    assert root.status_code in (302, 307)
    assert root.headers["location"] == "/ui"
    assert first_run.http.get(root.headers["location"]).status_code == 200


def test_the_docs_page_loads_nothing_from_another_origin(first_run: FirstRun) -> None:
    """Every script, style and icon /schema names is a local path that answers 200."""
    page = first_run.http.get("/schema")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert len(assets) >= 4, page.text[:2000]  # the bundle, the preset, the style, the icon
    for asset in assets:
        assert asset.startswith("/"), asset
        assert not asset.startswith("//"), asset
        answer = first_run.http.get(asset)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 100, asset
    assert "SwaggerUIBundle" in first_run.http.get("/schema/assets/swagger-ui-bundle.js").text


def test_log_lines_are_clean_json(first_run: FirstRun) -> None:
    """No ANSI colour copy, no alembic start-up chatter, no access line for the scrape or
    the dashboard's polling, and each ended attempt names its handler and duration."""
    first_run.http.get("/metrics")
    first_run.http.get("/v1/runs/counts", headers=SAME_ORIGIN)
    first_run.http.get("/v1/workflows", params={"limit": 3})
    started = first_run.http.post(
        "/v1/runs", json={"workflow": "order-fulfillment", "input": ORDER}
    )
    run_id = started.json()["id"]
    first_run.http.get(f"/v1/runs/{run_id}", params={"wait": 30})
    time.sleep(0.5)  # the last lines reach the file

    lines = first_run.lines()
    assert "\x1b" not in first_run.text()
    assert not [line for line in lines if "color_message" in line]
    assert not [line for line in lines if str(line["logger"]).startswith("alembic")]
    assert [line["to_revision"] for line in lines if line["message"] == "database migrated"]
    access = [line for line in lines if line["logger"] == "treadle.access"]
    paths = {line["http_path"] for line in access}
    assert "/v1/workflows" in paths
    assert "/metrics" not in paths
    assert "/v1/runs/counts" not in paths
    ended = [
        line
        for line in lines
        if line["message"] == "attempt completed" and line.get("run_id") == run_id
    ]
    assert {line["handler"] for line in ended} == {
        "inventory.reserve",
        "payments.charge",
        "notify.email",
        "shipping.create",
    }
    assert all(line["duration_ms"] > 0 for line in ended)
