"""The wire contract between roles: one envelope, a tagged union of payloads, JSON.

Channels: `tasks.<queue>` carries `DispatchTask`; `events` carries worker results
(`TaskStarted`, `TaskCompleted`, `TaskFailed`, `TaskHeartbeat`) and the orchestrator's own
child-run traffic (`StartChildRun`, `CancelChildRun`, `ChildRunFinished`), written
through the outbox so it survives a crash; `dead` carries poison. `broadcast.control`
carries `CancelAttempts` (`task.cancel`) from orchestrators to every worker (see
`is_broadcast`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from treadle.domain.events import (
    CancelAttempts,
    CancelChildRun,
    ChildRunFinished,
    DispatchTask,
    StartChildRun,
    TaskCompleted,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
)

Payload = (
    DispatchTask
    | TaskStarted
    | TaskCompleted
    | TaskFailed
    | TaskHeartbeat
    | StartChildRun
    | CancelChildRun
    | ChildRunFinished
    | CancelAttempts
)

EVENTS_CHANNEL = "events"
DEAD_CHANNEL = "dead"
BROADCAST_PREFIX = "broadcast."
CONTROL_CHANNEL = f"{BROADCAST_PREFIX}control"
"""Where orchestrators tell workers to stop attempts (`task.cancel`)."""


def is_broadcast(channel: str) -> bool:
    """Whether every subscriber of `channel` gets every message (see `Transport.subscribe`).

    A broadcast channel keeps nothing for later: a message reaches the subscriptions open
    when it is published, and a subscription leaves nothing behind on the broker.
    """
    return channel.startswith(BROADCAST_PREFIX)


TASKS_PREFIX = "tasks."


def tasks_channel(queue: str) -> str:
    """The channel a task queue's dispatches travel on."""
    return f"{TASKS_PREFIX}{queue}"


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """Every message on every channel. `correlation_id` is the run id."""

    event_id: str
    event_type: str
    timestamp: datetime
    source: str
    correlation_id: str
    traceparent: str | None = None
    payload: Payload


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """What a transport moves: an opaque body, a partition/ordering key, and headers."""

    key: str
    body: bytes
    headers: dict[str, str] = {}


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)


def envelope(payload: Payload, *, source: str, traceparent: str | None = None) -> Envelope:
    """Wrap a payload, stamping a fresh event id and the time."""
    return Envelope(
        event_id=uuid.uuid4().hex,
        event_type=type(payload).__struct_config__.tag,  # type: ignore[arg-type]
        timestamp=datetime.now(UTC),
        source=source,
        correlation_id=payload.run_id,
        traceparent=traceparent,
        payload=payload,
    )


EARLIER_DELIVERIES = "treadle-earlier-deliveries"
"""A message header: how many deliveries of this dispatch the broker never saw (it ran
eagerly, from its outbox row, before the row was published; see `delivered_once_more`)."""


def delivered_once_more(message: Message) -> Message:
    """`message` marked as delivered once more outside the broker: an eager dispatch's
    row published after its attempt ran (given back) or after its process died (lease run
    out). The broker counts from 1 again; the worker adds this (`earlier_deliveries`)."""
    headers = {**message.headers, EARLIER_DELIVERIES: str(earlier_deliveries(message) + 1)}
    return msgspec.structs.replace(message, headers=headers)


def earlier_deliveries(message: Message) -> int:
    """The deliveries `delivered_once_more` recorded on `message` (0 for none; a bad value
    counts as none, since an uncounted delivery only risks one more run)."""
    raw = message.headers.get(EARLIER_DELIVERIES, "0")
    return int(raw) if raw.isdigit() else 0


def to_message(env: Envelope) -> Message:
    """Encode an envelope; the routing facts ride as headers too, for brokers and tools."""
    headers = {
        "event_type": env.event_type,
        "correlation_id": env.correlation_id,
        "event_id": env.event_id,
    }
    if env.traceparent:
        headers["traceparent"] = env.traceparent
    return Message(key=env.correlation_id, body=_encoder.encode(env), headers=headers)


def decode(body: bytes) -> Envelope:
    """Decode a message body; raises `msgspec.DecodeError`/`ValidationError` on poison."""
    return _decoder.decode(body)
