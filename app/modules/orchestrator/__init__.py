"""The orchestrator role: run control, the events consumer, durable timers, outbox relay."""

from app.modules.orchestrator._changes import changes_from_decision
from app.modules.orchestrator._ids import new_run_id
from app.modules.orchestrator._orchestrator import Orchestrator
from app.modules.orchestrator._relay import Relay
from app.modules.orchestrator._runs import RunService
from app.modules.orchestrator._schedules import ScheduleService
from app.modules.orchestrator._timers import TimerAlarm

__all__ = [
    "Orchestrator",
    "Relay",
    "RunService",
    "ScheduleService",
    "TimerAlarm",
    "changes_from_decision",
    "new_run_id",
]
