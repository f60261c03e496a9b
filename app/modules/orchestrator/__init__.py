"""The orchestrator role: run control, the events consumer, durable timers, outbox relay."""

from treadle.modules.orchestrator._changes import changes_from_decision
from treadle.modules.orchestrator._consumer import EventConsumer
from treadle.modules.orchestrator._ids import new_run_id
from treadle.modules.orchestrator._orchestrator import Orchestrator
from treadle.modules.orchestrator._relay import Relay
from treadle.modules.orchestrator._runs import RunService
from treadle.modules.orchestrator._schedules import ScheduleService
from treadle.modules.orchestrator._timers import TimerAlarm

__all__ = [
    "EventConsumer",
    "Orchestrator",
    "Relay",
    "RunService",
    "ScheduleService",
    "TimerAlarm",
    "changes_from_decision",
    "new_run_id",
]
