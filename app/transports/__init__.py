"""Transport adapters, built from settings.

Each adapter's module is imported only when it is chosen, so a NATS user never
imports aio-pika or aiokafka (and need not have them installed).
"""

from __future__ import annotations

import importlib
from typing import cast

from treadle.config import TransportSettings
from treadle.ports import Transport
from treadle.transports._errors import TransportUnavailable, UnknownTransport

__all__ = [
    "DEAD_FROM_HEADER",
    "DEAD_REASON_HEADER",
    "TransportUnavailable",
    "UnknownTransport",
    "build_transport",
]

DEAD_REASON_HEADER = "x-treadle-dead-reason"
"""Header a dead-lettered message carries: why it was given up on."""
DEAD_FROM_HEADER = "x-treadle-dead-from"
"""Header a dead-lettered message carries: the logical channel it was taken from."""
REJECTED = "rejected"
"""Dead reason: a consumer nacked it with requeue=False."""
MAX_DELIVERIES = "max_deliveries"
"""Dead reason: it was delivered `max_deliveries` times without an ack."""

# kind -> (module, class); every class takes `(settings: TransportSettings)`.
_ADAPTERS = {
    "memory": ("treadle.transports.memory", "MemoryTransport"),
    "rabbitmq": ("treadle.transports.rabbitmq", "RabbitMQTransport"),
    "kafka": ("treadle.transports.kafka", "KafkaTransport"),
    "nats": ("treadle.transports.nats", "NatsTransport"),
}


def build_transport(settings: TransportSettings) -> Transport:
    """The (not yet connected) transport that `settings.kind` names."""
    try:
        module_name, class_name = _ADAPTERS[settings.kind]
    except KeyError:
        raise UnknownTransport(settings.kind) from None
    adapter = getattr(importlib.import_module(module_name), class_name)
    return cast("Transport", adapter(settings))
