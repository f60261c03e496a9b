"""`treadle run list` filters, `run retry|pause|resume` and the `schedule` commands."""

from __future__ import annotations

import json

import pytest

from tests.unit.cli._fake_client import FakeClient
from tests.unit.cli.test_cli import treadle


def test_run_list_passes_the_key_and_time_filters() -> None:
    """--idempotency-key, --created-after and --created-before reach the client as given."""
    client = FakeClient([])
    code, _ = treadle(
        client, "run", "list", "--idempotency-key", "order-7",
        "--created-after", "2025-01-31T11:00:00Z", "--created-before", "2025-02-01T00:00:00Z",
    )  # fmt: skip
    assert code == 0
    assert client.calls == [
        (
            "list_runs",
            {
                "workflow": None,
                "status": None,
                "idempotency_key": "order-7",
                "created_after": "2025-01-31T11:00:00Z",
                "created_before": "2025-02-01T00:00:00Z",
                "limit": None,
            },
        )
    ]


@pytest.mark.parametrize(("action", "verb"), [("retry", "retrying"), ("pause", "paused"), ("resume", "resumed")])  # fmt: skip  # noqa: E501
def test_run_steering_commands_call_the_api(action: str, verb: str) -> None:
    """retry, pause and resume POST for the run and print its id and status."""
    client = FakeClient([])
    code, term = treadle(client, "run", action, "r9")
    assert code == 0
    assert client.calls == [(f"{action}_run", "r9")]
    assert term.out.getvalue() == f"{verb} run r9 (status running)\n"


def test_schedule_create_with_cron_sends_the_spec_and_prints_json() -> None:
    """Every option lands in the POST body; the name defaults to the workflow's."""
    client = FakeClient([])
    code, term = treadle(
        client, "schedule", "create", "--workflow", "order", "--cron", "0 * * * *",
        "--timezone", "Europe/Berlin", "--input", '{"sku": "A1"}',
        "--overlap", "cancel_previous", "--catch-up", "run_once",
    )  # fmt: skip
    assert code == 0
    assert client.calls == [
        (
            "create_schedule",
            {
                "name": "order",
                "workflow": "order",
                "input": {"sku": "A1"},
                "cron": "0 * * * *",
                "timezone": "Europe/Berlin",
                "overlap": "cancel_previous",
                "catch_up": "run_once",
            },
        )
    ]
    assert json.loads(term.out.getvalue())["name"] == "order"


def test_schedule_create_with_every_sends_only_what_was_given() -> None:
    """--every becomes `interval`; unset options are left to the server's defaults."""
    client = FakeClient([])
    code, _ = treadle(client, "schedule", "create", "--workflow", "order", "--every", "30s",
                      "--name", "tick")  # fmt: skip
    assert code == 0
    assert client.calls == [
        ("create_schedule", {"name": "tick", "workflow": "order", "interval": "30s"})
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--workflow", "order"],
        ["--workflow", "order", "--cron", "* * * * *", "--every", "1m"],
        ["--workflow", "order", "--every", "1m", "--overlap", "sometimes"],
        ["--workflow", "order", "--every", "1m", "--input", "{oops"],
        ["--workflow", "order", "--every", "1m", "--timezone", "UTC"],
    ],
    ids=["no-trigger", "two-triggers", "bad-overlap", "bad-json", "zone-with-interval"],
)
def test_schedule_create_usage_errors_exit_2(argv: list[str]) -> None:
    """A missing or doubled trigger, a bad choice, bad JSON or a stray zone exit 2."""
    client = FakeClient([])
    code, _ = treadle(client, "schedule", "create", *argv)
    assert code == 2
    assert client.calls == []


def test_schedule_list_reads_every_page_into_a_table() -> None:
    """The list follows next_cursor and shows each trigger and state."""
    code, term = treadle(FakeClient([]), "schedule", "list")
    assert code == 0
    lines = term.out.getvalue().splitlines()
    assert lines[0].split() == ["ID", "NAME", "WORKFLOW", "TRIGGER", "STATE", "NEXT"]
    assert "cron 0 * * * * (UTC)" in lines[1]
    assert "active" in lines[1]
    assert "every 30s" in lines[2]
    assert "paused" in lines[2]


def test_schedule_pause_resume_delete_call_the_api() -> None:
    """pause, resume and delete name the schedule; an unknown one exits 1 with the problem."""
    client = FakeClient([])
    assert treadle(client, "schedule", "pause", "s1")[0] == 0
    assert treadle(client, "schedule", "resume", "s1")[0] == 0
    code, term = treadle(client, "schedule", "delete", "s1")
    assert (code, term.out.getvalue()) == (0, "deleted schedule s1\n")
    code, term = treadle(client, "schedule", "delete", "nope")
    assert code == 1
    assert "Schedule not found" in term.err.getvalue()
    assert [c[0] for c in client.calls] == [
        "pause_schedule", "resume_schedule", "delete_schedule", "delete_schedule"
    ]  # fmt: skip


def test_schedule_update_sends_only_the_options_given() -> None:
    """`schedule update` PATCHes just what was given; with nothing to change it is usage."""
    client = FakeClient([])
    code, _ = treadle(
        client, "schedule", "update", "s1", "--cron", "@daily", "--tag", "customer:acme"
    )  # fmt: skip
    assert code == 0
    assert client.calls == [
        ("update_schedule", ("s1", {"cron": "@daily", "tags": {"customer": "acme"}}))
    ]
    assert treadle(FakeClient([]), "schedule", "update", "s1")[0] == 2


def test_schedule_trigger_and_backfill_call_the_api() -> None:
    """trigger starts a run; backfill passes its range and bound; cancel-backfill stops it."""
    client = FakeClient([])
    assert treadle(client, "schedule", "trigger", "s1")[0] == 0
    start, end = "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"
    argv = ["schedule", "backfill", "s1", "--start", start, "--end", end, "--max-concurrent", "3"]
    assert treadle(client, *argv)[0] == 0
    assert treadle(client, "schedule", "cancel-backfill", "s1")[0] == 0
    assert client.calls == [
        ("trigger_schedule", "s1"),
        ("backfill_schedule", ("s1", start, end, 3)),
        ("cancel_backfill", "s1"),
    ]
