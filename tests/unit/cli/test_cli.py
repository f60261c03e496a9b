"""The `treadle` command line: parsing, error lines, exit codes and `run watch` output."""

from __future__ import annotations

import io
import json
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from tests.unit.cli._fake_client import T0, FakeClient
from treadle.cli import Console, build_parser, format_entry, main
from treadle.client import TreadleUnreachable
from treadle.domain.events import HistoryEntry


def entry(kind: str, seconds: int = 0, **fields: object) -> HistoryEntry:
    """A history entry `seconds` after T0."""
    return HistoryEntry(type=kind, at=T0 + timedelta(seconds=seconds), **fields)  # type: ignore[arg-type]


class Terminal:
    """Captured stdout/stderr and the sleeps a command asked for."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.sleeps: list[float] = []
        self.console = Console(out=self.out, err=self.err, sleep=self.sleeps.append, tz=UTC)


def treadle(client: object, *argv: str) -> tuple[int, Terminal]:
    """Run the CLI against `client`; (exit code, what it printed)."""
    terminal = Terminal()
    code = main(list(argv), client_factory=lambda url: client, console=terminal.console)  # type: ignore[arg-type,return-value]
    return code, terminal


# --- parsing ----------------------------------------------------------------------------


def test_serve_defaults_to_every_role_and_no_handlers() -> None:
    """`treadle serve` alone runs api, orchestrator and worker."""
    args = build_parser().parse_args(["serve"])
    assert args.roles == {"api", "orchestrator", "worker"}
    assert args.handlers == []
    assert not args.example


def test_serve_flags_are_parsed() -> None:
    """Roles, handler modules, host, port, config and --example are all understood."""
    args = build_parser().parse_args(
        ["serve", "--roles", "api, worker", "--handlers", "a.b", "c", "--host", "0.0.0.0",
         "--port", "9000", "--config", "t.toml", "--example"]
    )  # fmt: skip
    assert args.roles == {"api", "worker"}
    assert args.handlers == ["a.b", "c"]
    assert (args.host, args.port, args.config, args.example) == ("0.0.0.0", 9000, "t.toml", True)


def test_the_url_comes_from_treadle_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """TREADLE_URL sets the server; --url overrides it."""
    monkeypatch.setenv("TREADLE_URL", "http://treadle:9000")
    assert build_parser().parse_args(["run", "get", "x"]).url == "http://treadle:9000"
    args = build_parser().parse_args(["--url", "http://other", "run", "get", "x"])
    assert args.url == "http://other"


def test_the_default_url_is_localhost_8000(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without TREADLE_URL the CLI talks to 127.0.0.1:8000."""
    monkeypatch.delenv("TREADLE_URL", raising=False)
    assert build_parser().parse_args(["run", "get", "x"]).url == "http://127.0.0.1:8000"


def test_an_unknown_role_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A role that does not exist exits 2 and names the role."""
    assert main(["serve", "--roles", "api,scheduler"]) == 2
    assert "scheduler" in capsys.readouterr().err


def test_a_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`treadle` with no command exits 2 with usage."""
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


# --- input errors ---------------------------------------------------------------------------


def test_bad_input_json_names_the_argument_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    """--input that is not JSON exits 2, naming --input and the parse error, without a call."""
    client = FakeClient([])
    code, _ = treadle(client, "run", "start", "order", "--input", "{nope")
    assert code == 2
    err = capsys.readouterr().err
    assert "--input" in err
    assert "not valid JSON" in err
    assert client.calls == []


def test_bad_payload_json_names_the_argument(capsys: pytest.CaptureFixture[str]) -> None:
    """--payload of `run signal` is checked the same way."""
    code, _ = treadle(FakeClient([]), "run", "signal", "r1", "go", "--payload", "[1,")
    assert code == 2
    assert "--payload" in capsys.readouterr().err


def test_run_start_passes_input_version_and_key_and_prints_json() -> None:
    """`run start` sends the parsed input, version and key, and prints the run as JSON."""
    client = FakeClient([])
    code, term = treadle(
        client, "run", "start", "order", "--input", '{"sku": "A1"}', "--version", "2",
        "--idempotency-key", "k1",
    )  # fmt: skip
    assert code == 0
    assert client.calls == [("start_run", ("order", {"sku": "A1"}, 2, "k1"))]
    assert json.loads(term.out.getvalue())["id"] == "r1"


def test_an_api_problem_is_one_line_with_title_and_detail() -> None:
    """A refused request exits 1 with the problem's title and detail on stderr."""
    code, term = treadle(FakeClient([]), "run", "start", "strict", "--input", "{}")
    assert code == 1
    err = term.err.getvalue()
    assert err.count("\n") == 1
    assert "Run input does not match the input schema: input.sku: required" in err


def test_an_unreachable_server_says_to_start_it() -> None:
    """Connection refused becomes one line pointing at `treadle serve`."""

    class Down(FakeClient):
        def get_run(self, run_id: str) -> object:  # type: ignore[override]
            raise TreadleUnreachable("http://127.0.0.1:8000", "connection refused")

    code, term = treadle(Down([]), "run", "get", "r1")
    assert code == 1
    assert term.err.getvalue() == (
        "treadle: cannot reach Treadle at http://127.0.0.1:8000: is `treadle serve` running?\n"
    )


def test_a_config_error_names_the_key_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad setting stops `migrate` with one line naming the key."""
    monkeypatch.setenv("TREADLE_API__PORT", "eighty")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("treadle: config api.port:")
    assert err.count("\n") == 1


def test_workflow_apply_reads_yaml(tmp_path: Path) -> None:
    """`workflow apply` registers a YAML file and says whether it changed anything."""
    file = tmp_path / "order.yaml"
    file.write_text("name: order\ntasks:\n  a: {handler: x.y}\n")
    client = FakeClient([])
    code, term = treadle(client, "workflow", "apply", str(file))
    assert code == 0
    assert client.calls == [
        ("register_workflow", {"name": "order", "tasks": {"a": {"handler": "x.y"}}})
    ]
    assert term.out.getvalue() == "unchanged: order version 3\n"


def test_workflow_apply_of_a_missing_or_broken_file_is_a_usage_error(tmp_path: Path) -> None:
    """A file that cannot be read or parsed exits 2 with the file's name."""
    code, term = treadle(FakeClient([]), "workflow", "apply", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml" in term.err.getvalue()
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    code, term = treadle(FakeClient([]), "workflow", "apply", str(broken))
    assert code == 2
    assert "not valid YAML or JSON" in term.err.getvalue()


_NO_FILTERS = {"idempotency_key": None, "created_after": None, "created_before": None}


def test_run_cancel_signal_and_list_call_the_api() -> None:
    """cancel, signal and list pass their arguments through."""
    client = FakeClient([])
    assert treadle(client, "run", "cancel", "r1", "--reason", "oops")[0] == 0
    assert treadle(client, "run", "signal", "r1", "go", "--payload", '{"ok": true}')[0] == 0
    assert treadle(client, "run", "list", "--status", "failed")[0] == 0
    assert client.calls == [
        ("cancel_run", ("r1", "oops")),
        ("signal_run", ("r1", "go", {"ok": True})),
        ("list_runs", {"workflow": None, "status": "failed", "limit": None} | _NO_FILTERS),
    ]


# --- watch ------------------------------------------------------------------------------------


def test_format_entry_for_tasks_runs_and_signals() -> None:
    """Each history entry is one human line with the time, subject, verb and attempt."""
    assert format_entry(entry("task.completed", task_id="reserve", attempt=1), UTC) == (
        "18:42:01  task reserve  completed (attempt 1)"
    )
    assert format_entry(entry("run.started", 2), UTC) == "18:42:03  run  started"
    assert format_entry(entry("task.retry_scheduled", task_id="charge", attempt=2), UTC) == (
        "18:42:01  task charge  retry scheduled (attempt 2)"
    )
    assert format_entry(entry("signal.received", data={"name": "approve"}), UTC) == (
        "18:42:01  signal approve  received"
    )


def test_format_entry_shows_why_an_attempt_failed() -> None:
    """A failed attempt's line carries the error type and message."""
    failed = entry(
        "task.failed", task_id="charge", attempt=1,
        data={"error": {"type": "ConnectionError", "message": "provider timed out"}},
    )  # fmt: skip
    assert format_entry(failed, UTC) == (
        "18:42:01  task charge  failed (attempt 1): ConnectionError: provider timed out"
    )


def test_watch_prints_each_entry_once_and_exits_0_on_completion() -> None:
    """Entries arriving over several polls are printed once each, in order, then exit 0."""
    batches = [
        [entry("run.started"), entry("task.scheduled", task_id="a", attempt=1)],
        [entry("task.started", 1, task_id="a", attempt=1)],
        [],
        [entry("task.completed", 2, task_id="a", attempt=1), entry("run.completed", 2)],
    ]
    client = FakeClient(batches, final="completed")
    code, term = treadle(client, "run", "watch", "r1")
    assert code == 0
    assert term.out.getvalue().splitlines() == [
        "18:42:01  run  started",
        "18:42:01  task a  scheduled (attempt 1)",
        "18:42:02  task a  started (attempt 1)",
        "18:42:03  task a  completed (attempt 1)",
        "18:42:03  run  completed",
        "run r1 completed",
    ]
    # After the first read, each poll is the API's long poll (answered at once on the end).
    assert client.waits == [None, 1.0, 1.0, 1.0]
    assert term.sleeps == []


@pytest.mark.parametrize("final", ["failed", "cancelled", "timed_out"])
def test_watch_exits_1_when_the_run_ends_otherwise(final: str) -> None:
    """A run that ends without completing makes `watch` exit 1 after its last entry."""
    client = FakeClient([[entry("run.started")], [entry(f"run.{final}", 1)]], final=final)
    code, term = treadle(client, "run", "watch", "r1")
    assert code == 1
    assert term.out.getvalue().splitlines()[-1] == f"run r1 {final}"


def test_watch_of_an_unknown_run_is_one_line() -> None:
    """Watching a run that does not exist exits 1 with the API's 404."""
    code, term = treadle(FakeClient([]), "run", "watch", "nope")
    assert code == 1
    assert "Run not found" in term.err.getvalue()


def test_run_start_wait_polls_until_the_run_ends() -> None:
    """--wait prints the final run and exits by its status, waiting by the API's long poll."""
    client = FakeClient([[], [], []], final="failed")
    code, term = treadle(client, "run", "start", "order", "--input", "{}", "--wait")
    assert code == 1
    assert json.loads(term.out.getvalue())["status"] == "failed"
    assert client.waits == [25.0, 25.0, 25.0]
    assert term.sleeps == []
