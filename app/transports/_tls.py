"""Each broker driver's TLS arguments, built from the one `transport.tls` SSLContext.

Kept apart from the adapters so a test can check what each driver is handed without a
TLS-speaking broker; a driver module is never imported here.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

AMQPS_PORT = 5671


def rabbitmq_connect_kwargs(url: str, context: ssl.SSLContext | None) -> dict[str, Any]:
    """`aio_pika.connect_robust` arguments: aiormq picks TLS by the `amqps` scheme, so
    an `amqp://` URL is upgraded (to port 5671 unless it names one) and the context is
    passed as `ssl_context`."""
    if context is None:
        return {"url": url}
    parts = urlsplit(url)
    if parts.scheme == "amqp":
        netloc = parts.netloc if parts.port is not None else f"{parts.netloc}:{AMQPS_PORT}"
        parts = parts._replace(scheme="amqps", netloc=netloc)
    return {"url": urlunsplit(parts), "ssl_context": context}


def nats_connect_kwargs(context: ssl.SSLContext | None) -> dict[str, Any]:
    """`nats.connect` arguments: nats-py upgrades to TLS when given a `tls` context."""
    return {} if context is None else {"tls": context}


def kafka_client_kwargs(servers: list[str], context: ssl.SSLContext | None) -> dict[str, Any]:
    """Arguments shared by aiokafka's producer, consumer and admin client."""
    if context is None:
        return {"bootstrap_servers": servers}
    return {"bootstrap_servers": servers, "security_protocol": "SSL", "ssl_context": context}
