"""The dashboard in a real browser against a real `treadle serve`."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Server
from tests.e2e.ui.conftest import PHONE, register, shot, start

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHAIN = {
    "name": "ui-chain",
    "description": "Three steps in a row",
    "input_schema": {
        "type": "object",
        "required": ["who"],
        "properties": {"who": {"type": "string", "minLength": 1}},
    },
    "tasks": {
        "fetch": {"handler": "ui.step", "input": {"seconds": 0.8}},
        "transform": {"after": ["fetch"], "handler": "ui.step", "input": {"seconds": 0.8}},
        "publish": {"after": ["transform"], "handler": "ui.step", "input": {"seconds": 0.8}},
    },
}
FLAKY = {
    "name": "ui-flaky",
    "tasks": {
        "charge": {
            "handler": "e2e.flaky",
            "input": {"fail_times": 1},
            "retry": {"max_attempts": 3, "initial_interval": "0.2s"},
        },
        "broken": {"after": ["charge"], "handler": "ui.fail", "input": "${ input }"},
    },
}
SIGNAL = {
    "name": "ui-signal",
    "tasks": {
        "approve": {"type": "signal"},
        "ship": {"after": ["approve"], "handler": "e2e.echo", "input": "${ tasks.approve.output }"},
    },
}
SLOW = {"name": "ui-slow", "tasks": {"wait": {"handler": "e2e.slow", "input": {"seconds": 60}}}}
BEATING = {
    "name": "ui-beating",
    "tasks": {"work": {"handler": "ui.beat", "heartbeat_timeout": "1m"}},
}
SCRIPT = "<script>window.__xss = 1</script>"
IMG = '<img src=x onerror="window.__xss = 1">'


def node(page: Page, task: str, status: str) -> str:
    """The selector of a graph node in a given state."""
    return f'svg.graph g.node[data-task="{task}"][data-status="{status}"]'


def confirm(page: Page) -> None:
    """Press the confirming button of the open dialog."""
    page.locator("dialog[open] [data-confirm]").click()


def test_start_a_run_from_the_workflows_page_and_watch_it_go_green(
    page: Page, server: Server
) -> None:
    """The start form checks input_schema, starts a run, and its graph turns green in order."""
    register(server, CHAIN)
    page.goto("#/workflows")
    page.get_by_role("link", name="ui-chain").click()
    expect(page.locator("pre.yaml")).to_contain_text("transform:")
    expect(page.locator("svg.graph g.node")).to_have_count(3)
    shot(page, "workflow")
    page.locator("#start-run").click()
    expect(page.locator(".issues")).to_contain_text("is required")
    page.locator("#in-who").fill("ada")
    expect(page.locator("#run-input")).to_have_value(re.compile(r'"who": "ada"'))
    page.locator("#start-run").click()
    page.wait_for_url(re.compile(r"#/runs/[0-9a-f]+$"))
    page.wait_for_selector(node(page, "fetch", "completed"))
    assert page.locator(node(page, "publish", "completed")).count() == 0
    page.wait_for_selector(node(page, "transform", "completed"))
    assert page.locator(node(page, "publish", "completed")).count() == 0
    page.wait_for_selector(node(page, "publish", "completed"))
    expect(page.locator(".run-head .chip").first).to_have_text("completed")
    expect(page.locator(".gantt-row")).to_have_count(3)
    expect(page.locator("pre.run-input")).to_contain_text('"who": "ada"')


def test_a_failed_task_shows_its_traceback_and_a_retry_completes_it(
    page: Page, server: Server
) -> None:
    """Failed attempts show their tracebacks; retry from failure then completes the run."""
    register(server, FLAKY)
    run_id = start(server, "ui-flaky", {"message": "card declined", "fail_attempts": 1})
    page.goto(f"#/runs/{run_id}")
    page.wait_for_selector(node(page, "broken", "failed"))
    expect(page.locator(".run-head .chip").first).to_have_text("failed")
    # The first attempt of `charge` failed and the second completed: both are on the timeline.
    expect(page.locator('.gantt-row[data-task="charge"]')).to_have_count(2)
    page.locator(node(page, "charge", "completed")).click()
    attempts = page.locator("table.attempts tbody tr")
    expect(attempts).to_have_count(2)
    attempts.first.locator("summary").click()
    expect(attempts.first.locator("pre.traceback")).to_contain_text("attempt 1 fails on purpose")
    page.locator(node(page, "broken", "failed")).click()
    traceback = page.locator("#task-panel > pre.traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("ValueError: card declined")
    shot(page, "run-failed")
    page.locator("#act-retry").click()
    confirm(page)
    # The retry resumes from the failed task; `charge` keeps its output and is not re-run.
    page.wait_for_selector(node(page, "broken", "completed"), timeout=20_000)
    expect(page.locator(".run-head .chip").first).to_have_text("completed")
    expect(page.locator('.gantt-row[data-task="charge"]')).to_have_count(2)


def test_send_a_signal_with_a_json_payload(page: Page, server: Server) -> None:
    """The signal dialog refuses bad JSON, then sends the payload and the run completes."""
    register(server, SIGNAL)
    run_id = start(server, "ui-signal", {})
    page.goto(f"#/runs/{run_id}")
    page.wait_for_selector(node(page, "approve", "waiting"))
    page.locator("#act-signal").click()
    expect(page.locator("#signal-name")).to_have_value("approve")
    page.locator("#signal-payload").fill('{"ok": tru')
    confirm(page)
    expect(page.locator("dialog[open] .dialog-error")).to_contain_text("not valid JSON")
    page.locator("#signal-payload").fill('{"ok": true, "by": "ada"}')
    confirm(page)
    page.wait_for_selector(node(page, "ship", "completed"))
    expect(page.locator(".run-head .chip").first).to_have_text("completed")
    page.locator(node(page, "ship", "completed")).click()
    expect(page.locator("pre.task-output")).to_contain_text('"by": "ada"')


def test_cancel_a_run(page: Page, server: Server) -> None:
    """Cancel asks for confirmation, then the run and its running task end cancelled."""
    register(server, SLOW)
    run_id = start(server, "ui-slow", {})
    page.goto(f"#/runs/{run_id}")
    page.wait_for_selector(node(page, "wait", "running"))
    shot(page, "run-running")
    page.locator("#act-cancel").click()
    page.locator("dialog[open] button", has_text="Cancel").first.click()  # the dialog's "no"
    expect(page.locator(".run-head .chip").first).to_have_text("running")
    page.locator("#act-cancel").click()
    page.locator("#cancel-reason").fill("changed my mind")
    confirm(page)
    expect(page.locator(".run-head .chip").first).to_have_text("cancelled", timeout=20_000)
    expect(page.locator("#act-cancel")).to_be_disabled()


def test_a_running_tasks_last_heartbeat_is_shown_in_the_list_and_the_panel(
    page: Page, server: Server
) -> None:
    """The task list shows how long ago the task beat; its panel the attempt and details."""
    register(server, BEATING)
    run_id = start(server, "ui-beating", {})
    page.goto(f"#/runs/{run_id}")
    page.wait_for_selector(node(page, "work", "running"))
    expect(page.locator('table.tasks tr[data-task="work"] td.heartbeat')).to_contain_text(
        re.compile(r"\d.* ago"), timeout=20_000
    )
    page.locator(node(page, "work", "running")).click()
    details = page.locator("#task-panel pre.task-heartbeat")
    expect(details).to_contain_text('"done": 3', timeout=20_000)
    expect(details).to_contain_text("<b>not markup</b>")
    expect(page.locator("#task-panel .task-heartbeat-at")).to_contain_text("(attempt 1)")
    assert page.locator("#task-panel b").count() == 0
    assert server.http.post(f"/v1/runs/{run_id}/cancel", json={}).status_code == 202


def test_markup_in_names_inputs_and_errors_is_shown_as_text(page: Page, server: Server) -> None:
    """<script> and onerror markup in a task name, an input and an error stay inert text."""
    page.goto("#/workflows")
    page.locator("summary", has_text="Register a definition").click()
    bad = f'{{"name": "ui-xss", "tasks": {{"{IMG.replace(chr(34), chr(92) + chr(34))}": {{}}}}}}'
    page.locator("#register-json").fill(bad)
    page.locator("#register-submit").click()
    alert = page.locator(".alert")
    expect(alert).to_contain_text("422")
    expect(alert).to_contain_text(IMG)
    register(
        server,
        {
            "name": "ui-xss",
            "description": SCRIPT,
            "tasks": {"boom": {"handler": "ui.fail", "input": "${ input }"}},
        },
    )
    run_id = start(server, "ui-xss", {"message": SCRIPT, "note": IMG})
    page.goto(f"#/runs/{run_id}")
    page.wait_for_selector(node(page, "boom", "failed"))
    page.locator(node(page, "boom", "failed")).click()
    expect(page.locator("pre.task-input")).to_contain_text(SCRIPT)
    expect(page.locator("pre.task-input")).to_contain_text('onerror=\\"window.__xss = 1\\"')
    expect(page.locator("#task-panel .error-line")).to_contain_text(SCRIPT)
    page.goto("#/workflows")
    expect(page.locator('tr[data-workflow="ui-xss"]')).to_contain_text(SCRIPT)
    assert page.evaluate("window.__xss") is None
    assert page.locator("script").count() == 1  # only the dashboard's own module
    assert page.locator("img").count() == 0


def test_a_large_value_shows_its_size_and_loads_on_request(page: Page, server: Server) -> None:
    """A run input over limits.max_inline_value_bytes (64 KiB) reads as its size with a
    button; pressing it fetches the value from its href and shows it."""
    register(server, {"name": "ui-large", "tasks": {"echo": {"handler": "ui.step", "input": {}}}})
    run_id = start(server, "ui-large", {"blob": "z" * 70_000, "tail": "the-end"})
    page.goto(f"#/runs/{run_id}")
    elided = page.locator(".io .elided")
    expect(elided).to_contain_text("70,028 bytes, too large to show inline")
    elided.locator("button.load-value").click()
    expect(page.locator("pre.run-input")).to_contain_text('"tail": "the-end"')


def test_the_api_key_from_the_login_form_is_sent(page: Page, server: Server) -> None:
    """A key typed into the login form is kept for the session and sent as a bearer token."""
    page.goto("#/login")
    page.locator("#api-key").fill("k-123")
    with page.expect_request(re.compile(r"/v1/runs\?")) as sent:
        page.get_by_role("button", name="Sign in").click()
    assert sent.value.headers.get("authorization") == "Bearer k-123"
    expect(page.locator("#sign-out")).to_be_visible()
    page.locator("#sign-out").click()
    expect(page.locator("#api-key")).to_be_visible()


def test_every_page_renders_and_is_screenshotted(page: Page, server: Server) -> None:
    """Runs, workflows, schedules and system render at 1280 px, on a phone and in dark mode."""
    register(server, CHAIN)
    for who in ("grace", "linus"):
        start(server, "ui-chain", {"who": who})
    page.goto("#/runs")
    expect(page.locator('[data-count="completed"] .count-n')).not_to_have_text("")
    expect(page.locator("table.runs tbody tr").first).to_be_visible()
    page.locator("#f-status").select_option("completed")
    expect(page.locator(".count.selected")).to_have_attribute("data-count", "completed")
    page.wait_for_timeout(300)
    page.locator("#f-status").select_option("")
    shot(page, "runs")
    page.goto("#/workflows")
    expect(page.locator('tr[data-workflow="ui-chain"]')).to_be_visible()
    shot(page, "workflows")
    page.goto("#/schedules")
    expect(page.locator("main")).to_contain_text("Schedules")
    expect(page.locator("main .alert, main .empty, main table").first).to_be_visible()
    shot(page, "schedules")
    page.goto("#/system")
    expect(page.locator('[data-check="Database (database)"] .chip')).to_have_text("ok")
    expect(page.locator('[data-stat="outbox"]')).to_be_visible()
    shot(page, "system")
    page.emulate_media(color_scheme="dark")
    page.goto("#/runs")
    expect(page.locator("table.runs tbody tr").first).to_be_visible()
    shot(page, "runs-dark")
    page.set_viewport_size(PHONE)
    page.emulate_media(color_scheme="light")
    page.goto("#/runs")
    expect(page.locator("table.runs tbody tr").first).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the runs page scrolls sideways on a phone by {overflow}px"
    shot(page, "runs-phone", full_page=False)
    page.locator("table.runs a.mono").first.click()
    page.wait_for_selector("svg.graph g.node")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the run page scrolls sideways on a phone by {overflow}px"
    shot(page, "run-phone", full_page=False)
