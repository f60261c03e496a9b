"""The dashboard tells the true state, links every view and reads the history (issue 18:
items 1, 3 and 6), in a real browser against a real `treadle serve`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from tests.e2e.conftest import Server, start_server
from tests.e2e.ui.conftest import register, shot, start

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

TRACE_UI = "http://127.0.0.1:9/trace/{trace_id}"  # never opened: the tests read the href
WAITING = {
    "name": "ui-waiting",
    "tasks": {
        "approve": {"type": "signal", "signal": "go", "timeout": "1h"},
        "nap": {"type": "sleep", "duration": "10m"},
        "charge": {
            "handler": "ui.fail",
            "input": {"message": "card declined"},
            "retry": {"max_attempts": 2, "initial_interval": "1h"},
        },
    },
}
SIGNAL = {"name": "ui-wait-signal", "tasks": {"approve": {"type": "signal"}}}
SLOW = {"name": "ui-long", "tasks": {"wait": {"handler": "e2e.slow", "input": {"seconds": 60}}}}
FAN = {
    "name": "ui-fan",
    "tasks": {
        "fan": {
            "type": "map",
            "items": "${ input.items }",
            "task": {"handler": "e2e.echo", "input": {"n": "${ item }"}},
        },
        "after": {"after": ["fan"], "handler": "ui.step", "input": {"seconds": 0}},
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `treadle serve` with `ui.trace_url_template` set, for this module's tests."""
    tmp: Path = tmp_path_factory.mktemp("ui-state")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TREADLE_UI__TRACE_URL_TEMPLATE", TRACE_UI)
        handlers = ("--handlers", "tests.e2e.handlers", "tests.e2e.ui.handlers")
        server = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'treadle.db'}", *handlers)
    yield server
    server.stop()


def node(task: str, status: str) -> str:
    """The selector of a graph node in a given state."""
    return f'svg.graph g.node[data-task="{task}"][data-status="{status}"]'


def confirm(page: Page) -> None:
    """Press the confirming button of the open dialog."""
    page.locator("dialog[open] [data-confirm]").click()


def cancel(server: Server, run_id: str) -> None:
    """Cancel a run left waiting (so the server's stop does not wait for it)."""
    assert server.http.post(f"/v1/runs/{run_id}/cancel", json={}).status_code == 202


def test_a_paused_run_says_so_and_offers_only_resume(page: Page, server: Server) -> None:
    """Pausing shows a paused chip (on the run and in the list) and leaves only Resume
    enabled; resuming flips it back."""
    register(server, SLOW)
    run_id = start(server, "ui-long", {})
    page.goto(f"#/runs/{run_id}")
    page.wait_for_selector(node("wait", "running"))
    expect(page.locator("#act-resume")).to_be_disabled()
    page.locator("#act-pause").click()
    confirm(page)
    expect(page.locator(".run-head .chip.st-paused")).to_have_text("paused")
    expect(page.locator(".paused-note")).to_contain_text("no task starts")
    expect(page.locator("#act-pause")).to_be_disabled()
    expect(page.locator("#act-resume")).to_be_enabled()
    page.goto("#/runs")
    expect(page.locator(f'tr[data-run="{run_id}"] .run-status .chip.st-paused')).to_be_visible()
    page.go_back()
    page.locator("#act-resume").click()
    confirm(page)
    expect(page.locator(".run-head .chip.st-paused")).to_have_count(0)
    expect(page.locator("#act-pause")).to_be_enabled()
    expect(page.locator("#act-resume")).to_be_disabled()
    cancel(server, run_id)


def test_waiting_tasks_say_what_they_wait_for_and_until_when(page: Page, server: Server) -> None:
    """A signal task, a sleep and a retry's backoff are drawn as waiting, not running, and
    say for what and until when; the API's `waiting` carries the same."""
    register(server, WAITING)
    run_id = start(server, "ui-waiting", {})
    page.goto(f"#/runs/{run_id}")
    for task in ("approve", "nap", "charge"):
        page.wait_for_selector(node(task, "waiting"))
    assert page.locator('svg.graph g.node[data-status="running"]').count() == 0
    expect(page.locator('.gantt-row[data-task="approve"] .bar.run.st-waiting')).to_have_count(1)
    expect(page.locator('.gantt-row[data-task="nap"] .bar.run.st-waiting')).to_have_count(1)
    status = 'table.tasks tr[data-task="{}"] td.task-status'
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    expect(page.locator(status.format("approve"))).to_contain_text(
        re.compile(f"waiting for signal go until {when}")
    )
    expect(page.locator(status.format("nap"))).to_contain_text(re.compile(f"sleeping until {when}"))
    expect(page.locator(status.format("charge"))).to_contain_text(re.compile(f"retrying at {when}"))
    tasks = {t["task_id"]: t for t in server.http.get(f"/v1/runs/{run_id}").json()["tasks"]}
    assert tasks["approve"]["waiting"]["signal"] == "go"
    assert tasks["nap"]["waiting"]["reason"] == "sleep"
    assert tasks["charge"]["waiting"]["reason"] == "retry"
    assert tasks["charge"]["attempt"] == 2
    shot(page, "run-waiting")
    page.locator(node("charge", "waiting")).click()
    expect(page.locator("#task-panel .task-waiting")).to_contain_text("retrying at")
    cancel(server, run_id)


def test_the_signal_dialog_closes_when_the_page_changes(page: Page, server: Server) -> None:
    """A signal dialog left open does not follow the operator to another page, so it can
    never send its signal to the run it was not opened for."""
    register(server, SIGNAL)
    first = start(server, "ui-wait-signal", {})
    second = start(server, "ui-wait-signal", {})
    page.goto(f"#/runs/{first}")
    page.wait_for_selector(node("approve", "waiting"))
    page.locator("#act-signal").click()
    expect(page.locator("dialog[open]")).to_have_count(1)
    page.evaluate(f"location.hash = '#/runs/{second}'")
    expect(page.locator(".run-title")).to_contain_text(second)
    expect(page.locator("dialog")).to_have_count(0)
    page.go_back()
    expect(page.locator(".run-title")).to_contain_text(first)
    page.locator("#act-signal").click()
    page.go_back()  # the browser's back button with the dialog open
    expect(page.locator("dialog")).to_have_count(0)
    for run_id in (first, second):
        events = server.http.get(f"/v1/runs/{run_id}/events").json()["items"]
        assert "signal.received" not in [e["type"] for e in events]
        cancel(server, run_id)


def test_an_action_answered_after_leaving_the_run_does_not_poll_it_again(
    page: Page, server: Server
) -> None:
    """A Pause whose answer comes after the operator left the run page does not bring the
    left page's polling back (it would read that run for ever, unseen)."""
    register(server, SLOW)
    run_id = start(server, "ui-long", {})
    held: list[Route] = []
    # A lambda, not `held.append`: Playwright's route() refuses a builtin as the handler.
    page.route(re.compile(r"/v1/runs/[^/]+/pause$"), lambda route: held.append(route))  # noqa: PLW0108
    page.goto(f"#/runs/{run_id}")
    page.wait_for_selector(node("wait", "running"))
    page.locator("#act-pause").click()
    confirm(page)
    page.wait_for_function("document.querySelector('.action-out').textContent.includes('Pause')")
    page.goto("#/system")
    expect(page.locator('[data-stat="concurrency"]')).to_be_visible()
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if f"/v1/runs/{run_id}" in r.url else None)
    assert len(held) == 1
    held[0].continue_()
    page.wait_for_timeout(2_000)  # the run page polled every 0.7 s
    assert reads == []
    cancel(server, run_id)


def test_the_system_page_reports_worker_concurrency(page: Page, server: Server) -> None:
    """Worker concurrency reads the worker's in-flight and limit gauges: in use / limit."""
    page.goto("#/system")
    expect(page.locator('[data-stat="concurrency"] .big')).to_have_text(re.compile(r"^\d+ / 32$"))


def test_tasks_attempts_and_map_items_have_urls_that_open_them(page: Page, server: Server) -> None:
    """A task's URL opens its panel, an attempt's marks its row, a map item's shows the
    item; choosing a task changes the URL; the trace id links to the tracing UI."""
    register(server, FAN)
    run_id = start(server, "ui-fan", {"items": [10, 11, 12, 13]})
    server.wait_for_run(run_id, timeout=30)
    page.goto(f"#/runs/{run_id}/tasks/after")
    expect(page.locator("#task-panel .task-title")).to_have_text("after")
    page.locator(node("fan", "completed")).click()
    expect(page).to_have_url(re.compile(f"#/runs/{run_id}/tasks/fan$"))
    expect(page.locator("#task-panel .task-title")).to_have_text("fan")
    page.goto(f"#/runs/{run_id}/tasks/after/attempts/1")
    expect(page.locator('table.attempts tr.selected[data-attempt="1"]')).to_be_in_viewport()
    page.locator('.gantt-row[data-task="fan"]').first.click()
    expect(page).to_have_url(re.compile(f"#/runs/{run_id}/tasks/fan/attempts/1$"))
    expect(page.locator('table.attempts tr.selected[data-attempt="1"]')).to_have_count(1)
    page.goto(f"#/runs/{run_id}/tasks/fan/items/2")
    expect(page.locator("#task-panel .item-title")).to_have_text("fan[2]")
    expect(page.locator("#task-panel pre.item-input")).to_contain_text('"n": 12')
    page.locator("#item-index").fill("3")
    page.locator(".item-open button").click()
    expect(page).to_have_url(re.compile(f"#/runs/{run_id}/tasks/fan/items/3$"))
    expect(page.locator("#task-panel pre.item-output")).to_contain_text('"n": 13')
    page.reload()  # a deep link survives a reload: it opens the same view directly
    expect(page.locator("#task-panel .item-title")).to_have_text("fan[3]")
    link = page.locator(".run-head a.run-trace")
    expect(link).to_have_attribute(
        "href", re.compile(r"^http://127\.0\.0\.1:9/trace/[0-9a-f]{32}$")
    )
    assert link.inner_text() in link.get_attribute("href")  # type: ignore[operator]


def test_the_history_filters_by_task_and_type_and_downloads_as_json(
    page: Page, server: Server
) -> None:
    """The history narrows to one task and one event type, and downloads what it shows."""
    register(server, FAN)
    run_id = start(server, "ui-fan", {"items": [1, 2]})
    server.wait_for_run(run_id, timeout=30)
    page.goto(f"#/runs/{run_id}")
    history = page.locator("ol.history > li")
    expect(history.first).to_be_visible()
    everything = history.count()
    page.locator("#history-task").select_option("after")
    expect(history.filter(has_not_text="after")).to_have_count(0)
    page.locator("#history-type").select_option("task.completed")
    expect(history).to_have_count(1)
    expect(page.locator(".history-count")).to_contain_text(f"1 of {everything} events")
    with page.expect_download() as waiting:
        page.locator("#history-download").click()
    download = waiting.value
    assert download.suggested_filename == f"run-{run_id}-history-after-task.completed.json"
    saved = json.loads(Path(download.path()).read_text())
    assert [(e["type"], e["task_id"]) for e in saved] == [("task.completed", "after")]
    page.locator("#history-task").select_option("")
    page.locator("#history-type").select_option("")
    expect(history).to_have_count(everything)
    with page.expect_download() as waiting:
        page.locator("#history-download").click()
    whole = json.loads(Path(waiting.value.path()).read_text())
    api = server.http.get(f"/v1/runs/{run_id}/events", params={"limit": 500}).json()["items"]
    assert whole == api
