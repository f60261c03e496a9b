"""Each decision stamps its run's trace id on the history it writes."""

from __future__ import annotations

from datetime import UTC, datetime

from treadle.domain.events import Decision, HistoryEntry
from treadle.domain.state import RunState
from treadle.modules.orchestrator._runs import with_trace_id

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = RunState(id="r", workflow="w", version=1, created_at=NOW)


def decision(*entries: HistoryEntry) -> Decision:
    """A decision with these history entries and no commands."""
    return Decision(state=STATE, history=list(entries))


def test_entries_with_mapping_or_no_data_get_the_trace_id() -> None:
    """Dict data keeps its keys and gains trace_id; absent data becomes {trace_id}."""
    stamped = with_trace_id(
        decision(
            HistoryEntry(type="task.completed", at=NOW, task_id="a", data={"output": 1}),
            HistoryEntry(type="run.started", at=NOW),
            HistoryEntry(type="signal.received", at=NOW, data=[1, 2]),
        ),
        TRACEPARENT,
    )
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert [e.data for e in stamped.history] == [
        {"output": 1, "trace_id": trace_id},
        {"trace_id": trace_id},
        [1, 2],
    ]


def test_without_a_valid_traceparent_history_is_unchanged() -> None:
    """No tracing context (or a malformed header) leaves the decision as it was."""
    original = decision(HistoryEntry(type="run.started", at=NOW))
    assert with_trace_id(original, None) is original
    assert with_trace_id(original, "garbage") is original
