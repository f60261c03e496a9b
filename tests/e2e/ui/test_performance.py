"""The dashboard stays fast on a big database: 100,000 runs and a map over 10,000 items."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ROOT, Server, start_server
from treadle.store._tables import runs, tasks, workflows

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

RUNS = 100_000
ITEMS = 10_000
MAP_RUN = "ffffffffffffffffffffffffffff0001"  # sorts first among runs created at the same time
STATUSES = ["completed"] * 7 + ["failed", "cancelled", "running"]
MAP_DEFINITION = {
    "name": "ui-map",
    "tasks": {
        "split": {"handler": "e2e.echo"},
        "items": {
            "type": "map",
            "after": ["split"],
            "items": "${ tasks.split.output }",
            "task": {"handler": "e2e.echo"},
        },
        "join": {"after": ["items"], "handler": "e2e.echo"},
    },
}


def seed(url: str) -> None:
    """Write 100,000 finished runs and one run with a 10,000-item map straight into SQLite."""
    engine = sa.create_engine(url.replace("+aiosqlite", ""))
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            workflows.insert(),
            [
                {
                    "name": name,
                    "version": 1,
                    "digest": hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest(),
                    "definition": json.dumps(d),
                    "created_at": base,
                }
                for name, d in [
                    ("ui-bulk", {"name": "ui-bulk", "tasks": {"a": {}}}),
                    ("ui-map", MAP_DEFINITION),
                ]
            ],
        )
        rows = []
        for i in range(RUNS):
            at = base + timedelta(seconds=i)
            rows.append(
                {
                    "id": f"{i:032x}",
                    "workflow": "ui-bulk",
                    "version": 1,
                    "status": STATUSES[i % len(STATUSES)],
                    "created_at": at,
                    "started_at": at,
                    "finished_at": at + timedelta(milliseconds=250 + i % 900),
                    "updated_at": at,
                }
            )
        conn.execute(runs.insert(), rows)
        at = base + timedelta(seconds=RUNS + 10)
        conn.execute(
            runs.insert(),
            [
                {
                    "id": MAP_RUN,
                    "workflow": "ui-map",
                    "version": 1,
                    "status": "running",
                    "input": "{}",
                    "created_at": at,
                    "started_at": at,
                    "updated_at": at,
                }
            ],
        )
        done = at + timedelta(seconds=1)
        children = [
            {
                "run_id": MAP_RUN,
                "task_id": f"items[{i}]",
                "position": 3 + i,
                "type": "handler",
                "status": "completed" if i % 10 else "running",
                "attempt": 1,
                "input": json.dumps({"item": i}),
                "output": json.dumps({"item": i}) if i % 10 else None,
                "scheduled_at": at,
                "started_at": at,
                "finished_at": done if i % 10 else None,
            }
            for i in range(ITEMS)
        ]
        parents = [
            {
                "run_id": MAP_RUN,
                "task_id": "split",
                "position": 0,
                "type": "handler",
                "status": "completed",
                "attempt": 1,
                "scheduled_at": at,
                "started_at": at,
                "finished_at": at,
            },
            {
                "run_id": MAP_RUN,
                "task_id": "items",
                "position": 1,
                "type": "map",
                "status": "running",
                "attempt": 1,
                "scheduled_at": at,
                "started_at": at,
            },
            {
                "run_id": MAP_RUN,
                "task_id": "join",
                "position": 2,
                "type": "handler",
                "status": "pending",
                "attempt": 0,
            },
        ]
        # Every nullable column named (one key set for the executemany); the rest keep
        # their server defaults.
        keys = [c.name for c in tasks.columns if c.nullable or c.server_default is None]
        conn.execute(tasks.insert(), [{k: row.get(k) for k in keys} for row in parents + children])
    engine.dispose()


@pytest.fixture(scope="module")
def big_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`treadle serve` over a database already holding the big data set."""
    tmp = tmp_path_factory.mktemp("ui-big")
    url = f"sqlite+aiosqlite:///{tmp / 'treadle.db'}"
    env = {**os.environ, "TREADLE_DATABASE_URL": url}
    migrate = subprocess.run(
        [sys.executable, "-m", "treadle.cli", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    seed(url)
    server = start_server(tmp, url)
    yield server
    server.stop()


@pytest.fixture
def big_page(page: Page, big_server: Server) -> Page:
    """The shared page fixture pointed at the big server."""
    page.context.set_default_timeout(15_000)
    page.goto(f"{big_server.url}/ui/")
    return page


SLACK = 4
"""How many times the quiet-machine budget a busy shared CI machine may take."""
LIST_LIMITS = """performance.getEntriesByType("resource")
  .filter((e) => /[/]v1[/]runs[?]/.test(e.name))
  .map((e) => Number(new URL(e.name).searchParams.get("limit") || 1e9))"""
"""The `limit` of every GET /v1/runs list call the page made."""
API_SPAN = """(() => {
  const calls = performance.getEntriesByType("resource").filter((e) => e.name.includes("/v1/"));
  const end = Math.max(...calls.map((e) => e.responseEnd));
  return [end - Math.min(...calls.map((e) => e.startTime)), end];
})()"""
"""[ms the page's API calls spanned, ms when the last one ended] since navigation."""


def elapsed_ms(page: Page, *selectors: str) -> float:
    """Milliseconds from the navigation's start until every selector matches an element.

    The page's CSP forbids eval, so this polls with locators rather than wait_for_function.
    """
    for selector in selectors:
        page.locator(selector).first.wait_for()
    return float(page.evaluate("performance.now()"))


def test_the_runs_page_loads_fast_with_100k_runs(big_page: Page, big_server: Server) -> None:
    """With 100,000 runs the list and its bounded counts render in well under a second."""
    big_page.goto(f"{big_server.url}/ui/#/runs")
    big_page.reload()  # a cold navigation, so performance.now() counts from its start
    ms = elapsed_ms(
        big_page,
        "table.runs tbody tr:nth-child(50)",
        '[data-count="completed"] .count-n',
        '[data-count="pending"] .count-n',
    )
    # 70,000 completed runs: the counts endpoint stops at its cap and the chip says so.
    expect(big_page.locator('[data-count="completed"] .count-n')).to_have_text("10000+")
    expect(big_page.locator('[data-count="pending"] .count-n')).to_have_text("0")
    # Every list call is one bounded, indexed page: nothing counts the whole table.
    limits = big_page.evaluate(LIST_LIMITS)
    assert limits, "the runs page made no list calls"
    assert max(limits) <= 100, limits
    # Wall-clock bounds are loose on purpose: the CI machine is shared, and a quiet one
    # shows about 60-250 ms of API calls and 50 ms of drawing for this page.
    api_ms, data_ms = big_page.evaluate(API_SPAN)
    print(f"runs page: {ms:.0f} ms, API {api_ms:.0f} ms, drawn {ms - data_ms:.0f} ms after")
    assert api_ms < SLACK * 1000, f"the runs page's API calls took {api_ms:.0f} ms"
    assert ms - data_ms < SLACK * 500, f"drawing the runs page took {ms - data_ms:.0f} ms"
    started = time.monotonic()
    big_page.get_by_role("button", name="Older →").click()
    expect(big_page.locator("table.runs tbody tr").first).not_to_contain_text(MAP_RUN)
    expect(big_page.locator("table.runs tbody tr")).to_have_count(50)
    assert time.monotonic() - started < SLACK * 1.0


def test_a_run_with_a_10k_item_map_stays_responsive(big_page: Page, big_server: Server) -> None:
    """A map over 10,000 items folds into one graph node and pages its task list."""
    big_page.goto(f"{big_server.url}/ui/#/runs/{MAP_RUN}")
    big_page.reload()
    ms = elapsed_ms(big_page, 'svg.graph g.node[data-task="items"]', "table.tasks tbody tr")
    _, data_ms = big_page.evaluate(API_SPAN)
    # GET /v1/runs/{id} carries all 10,000 tasks (about 2.4 MB); how long the server takes
    # is the API's business. The page's own part, from the data to a usable view, is pinned.
    print(f"map run page: {ms:.0f} ms in all, {ms - data_ms:.0f} ms after its data arrived")
    assert ms - data_ms < SLACK * 1000, f"rendering the map run took {ms - data_ms:.0f} ms"
    node = big_page.locator('svg.graph g.node[data-task="items"]')
    expect(node).to_contain_text("9000/10000")
    expect(big_page.locator("svg.graph g.node")).to_have_count(3)
    expect(big_page.locator("table.tasks tbody tr")).to_have_count(100)
    started = time.monotonic()
    big_page.locator("table.tasks tbody a", has_text="items[7]").click()
    expect(big_page.locator("#task-panel pre.task-input")).to_contain_text('"item": 7')
    big_page.locator('[aria-label="Task pages"] button', has_text="→").click()
    expect(big_page.locator("table.tasks tbody tr").first).to_contain_text("items[97]")
    assert time.monotonic() - started < SLACK * 2.0
