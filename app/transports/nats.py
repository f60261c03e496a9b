"""NATS JetStream transport: one stream per namespace, a durable pull consumer per group.

Layout: the stream `<namespace>` (dots made safe) holds the subjects `<namespace>.>`, so
channel `tasks.default` is subject `<namespace>.tasks.default`. A consumer group is a
durable pull consumer filtered on the channel's subject: members of a group pull from
the same consumer and so compete, and a message stored before the first member arrives
waits in the stream (deliver policy "all").

Broadcast: a subscription to a broadcast channel (`is_broadcast`) is an ephemeral
consumer of its own (deliver policy "new": what is published from its creation on),
deleted when the subscription closes; the server drops one whose process died once it has
been inactive for `BROADCAST_INACTIVE_SECONDS`.

Poison: the consumer's `max_deliver` is `max_deliveries + 1`. A nack on the last
allowed delivery moves the message to the dead subject at once; the one extra delivery
exists for a consumer that died holding its last attempt (the ack wait expired), which
the next member moves to the dead subject instead of handing it out again. With
`max_deliver == max_deliveries` the server would silently stop redelivering such a
message and it would never reach the dead channel.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ClassVar

import anyio
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StorageType,
    StreamConfig,
)

from treadle._tls import ssl_context
from treadle.config import TransportSettings
from treadle.messages import DEAD_CHANNEL, Message, is_broadcast
from treadle.observability import get_logger, strip_url_passwords
from treadle.ports import Delivery
from treadle.transports import DEAD_FROM_HEADER, DEAD_REASON_HEADER, MAX_DELIVERIES, REJECTED
from treadle.transports._errors import TransportUnavailable
from treadle.transports._tls import nats_connect_kwargs

log = get_logger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"
KEY_HEADER = "x-treadle-key"
"""NATS has no message key, so `Message.key` rides in this header (hidden from readers)."""
FETCH_SECONDS = 1.0
"""How long one pull waits for messages; short, so a closed subscription leaves no
long-lived pull request behind on the server to swallow messages."""
REQUEST_SECONDS = 10.0
CONNECT_ATTEMPTS = 2
CLOSE_SECONDS = 30.0
BROADCAST_INACTIVE_SECONDS = 60.0
"""How long the server keeps a broadcast consumer nobody pulls from (its process died)."""
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


@contextmanager
def _driver_errors(url: str) -> Iterator[None]:
    """The one place nats-py errors (and socket errors) become `TransportUnavailable`."""
    try:
        yield
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        raise TransportUnavailable(url, str(exc) or type(exc).__name__) from exc


def _safe_name(raw: str) -> str:
    """A stream/consumer name from free text: NATS forbids dots, wildcards and spaces.

    A short digest of the raw text keeps `a.b` and `a_b` apart once both become `a_b`.
    """
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{_UNSAFE_NAME.sub('_', raw)}-{digest}"


class _NatsDelivery:
    """One JetStream message; the first ack/nack settles it, later ones do nothing."""

    def __init__(self, subscription: _Subscription, msg: Msg) -> None:
        self._subscription = subscription
        self.msg = msg
        self.message = _to_message(msg)
        self.delivery_count: int = msg.metadata.num_delivered

    async def ack(self) -> None:
        if self._subscription.settle(self):
            await self._subscription.run(self.msg.ack_sync(timeout=REQUEST_SECONDS))

    async def nack(self, *, requeue: bool = True) -> None:
        if not self._subscription.settle(self):
            return
        if not requeue:
            await self._subscription.dead_letter(self.msg, REJECTED)
        elif self.delivery_count >= self._subscription.max_deliveries:
            await self._subscription.dead_letter(self.msg, MAX_DELIVERIES)
        else:
            await self._subscription.run(self.msg.nak())


def _to_message(msg: Msg) -> Message:
    # `Nats-*` headers belong to the protocol (e.g. Nats-Expected-Stream), not the sender.
    headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
    key = headers.pop(KEY_HEADER, "")
    return Message(key=key, body=msg.data, headers=headers)


class _Subscription:
    """One member of a group: pulls at most `prefetch` unsettled messages at a time."""

    def __init__(
        self,
        transport: NatsTransport,
        psub: JetStreamContext.PullSubscription,
        channel: str,
        prefetch: int,
    ) -> None:
        self._transport = transport
        self._psub = psub
        self._channel = channel
        self._prefetch = max(1, prefetch)
        self.max_deliveries = transport.max_deliveries
        self._unsettled: dict[_NatsDelivery, None] = {}
        self._fetched: list[Msg] = []
        self._settled = anyio.Event()
        self._closed = False

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Delivery:
        # A class, not an async generator: a cancelled wait (a consumer's timeout) must
        # leave the iterator usable, and a generator is finished by the cancellation.
        while True:
            if self._closed or self._transport.closed:
                raise StopAsyncIteration
            if self._fetched:
                msg = self._fetched.pop(0)
                if msg.metadata.num_delivered > self.max_deliveries:
                    # Its consumer died during the last allowed attempt; see the module doc.
                    await self.dead_letter(msg, MAX_DELIVERIES)
                    continue
                delivery = _NatsDelivery(self, msg)
                self._unsettled[delivery] = None
                return delivery
            if len(self._unsettled) >= self._prefetch:
                await self._settled.wait()
                continue
            self._fetched = await self._fetch(self._prefetch - len(self._unsettled))

    async def _fetch(self, batch: int) -> list[Msg]:
        try:
            return await self._psub.fetch(batch=batch, timeout=FETCH_SECONDS)
        except (nats.errors.TimeoutError, TimeoutError):
            # Nothing to fetch in time. nats-py also raises a bare asyncio.TimeoutError on
            # this path, and that is an OSError: it must not reach the clause below.
            return []
        except (nats.errors.ConnectionReconnectingError, nats.errors.StaleConnectionError):
            # nats-py is reconnecting by itself; try again once it is back.
            await anyio.sleep(FETCH_SECONDS)
            return []
        except nats.errors.ConnectionClosedError as exc:
            if self._transport.closed:
                return []
            raise TransportUnavailable(self._transport.url, "connection closed") from exc
        except (nats.errors.Error, OSError) as exc:
            raise TransportUnavailable(self._transport.url, str(exc)) from exc

    def settle(self, delivery: _NatsDelivery) -> bool:
        """Forget an unsettled delivery; False if it was settled or given back already."""
        if delivery not in self._unsettled:
            return False
        del self._unsettled[delivery]
        self._settled.set()
        self._settled = anyio.Event()
        return True

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        await self.run(self._transport.dead_letter(msg, self._channel, reason))

    async def run(self, operation: Awaitable[Any]) -> None:
        with _driver_errors(self._transport.url):
            await operation

    async def close(self) -> None:
        """Give back what was fetched or handed out but not settled, as a dying consumer
        would after ack_wait, only sooner; then stop pulling."""
        if self._closed:
            return
        self._closed = True
        self._settled.set()
        fetched, self._fetched = self._fetched, []
        unsettled = list(self._unsettled)
        self._unsettled.clear()
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_SECONDS):
            try:
                for delivery in unsettled:
                    if delivery.delivery_count >= self.max_deliveries:
                        await self._transport.dead_letter(
                            delivery.msg, self._channel, MAX_DELIVERIES
                        )
                    else:
                        await delivery.msg.nak()
                for msg in fetched:
                    await msg.nak()
                await self._psub.unsubscribe()
            except nats.errors.Error:
                log.warning("nats could not give messages back; they return after ack_wait")
        self._transport.forget(self)


class NatsTransport:
    """Transport over NATS JetStream (nats-py)."""

    name: ClassVar[str] = "nats"
    DURABLE: ClassVar[bool] = True
    COUNTS_LOST_DELIVERIES: ClassVar[bool] = True
    ORDERED_PER_KEY: ClassVar[bool] = False

    def __init__(self, settings: TransportSettings) -> None:
        self._settings = settings
        self._raw_url = settings.url or DEFAULT_URL
        self.url = strip_url_passwords(self._raw_url)
        self.max_deliveries = settings.max_deliveries
        self.stream = _safe_name(settings.namespace)
        self._tls = ssl_context(settings.tls, "transport.tls")
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self.closed = False
        self._subscriptions: set[_Subscription] = set()

    # --- lifecycle ----------------------------------------------------------------

    async def connect(self) -> None:
        """Connect (reconnecting forever afterwards) and create or update the stream."""
        if self._nc is not None:
            return
        self.closed = False
        with _driver_errors(self.url):
            nc = await nats.connect(
                self._raw_url,
                max_reconnect_attempts=CONNECT_ATTEMPTS,
                reconnect_time_wait=1,
                connect_timeout=5,
                allow_reconnect=True,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                **nats_connect_kwargs(self._tls),
            )
            # nats-py applies one attempt limit to the first connection and to reconnects;
            # we want connect() to fail fast but a live connection never to give up.
            nc.options["max_reconnect_attempts"] = -1
            self._nc = nc
            self._js = nc.jetstream(timeout=REQUEST_SECONDS)
            await self._ensure_stream()

    async def close(self) -> None:
        """Close open subscriptions (giving back their messages), flush acks, disconnect."""
        for subscription in list(self._subscriptions):
            await subscription.close()
        self.closed = True
        if self._nc is None:
            return
        nc, self._nc, self._js = self._nc, None, None
        with _driver_errors(self.url):
            if nc.is_connected:
                await nc.flush(timeout=5)
            await nc.close()

    async def delete_stream(self) -> None:
        """Remove the namespace's stream and everything in it (tests and uninstall)."""
        with _driver_errors(self.url):
            await self._jetstream().delete_stream(self.stream)

    async def _ensure_stream(self) -> None:
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self._settings.namespace}.>"],
            storage=StorageType.FILE,
        )
        js = self._jetstream()
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            # The stream exists with another configuration (an older Treadle): adopt ours.
            await js.update_stream(config)

    # --- publishing ---------------------------------------------------------------

    def subject(self, channel: str) -> str:
        """The NATS subject of a logical channel."""
        return f"{self._settings.namespace}.{channel}"

    async def publish(self, channel: str, messages: Sequence[Message]) -> None:
        """Publish the batch and wait for every JetStream ack, all of them concurrently."""
        subject = self.subject(channel)
        # asyncio.gather, not a task group: nats-py is asyncio-only anyway, and gather
        # hands back the driver's own error (no ExceptionGroup) for `_driver_errors`.
        results = await asyncio.gather(
            *(
                self._publish_one(subject, m.body, {**m.headers, KEY_HEADER: m.key})
                for m in messages
            ),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            with _driver_errors(self.url):
                raise failures[0]

    async def _publish_one(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        await self._jetstream().publish(subject, body, stream=self.stream, headers=headers)

    async def dead_letter(self, msg: Msg, channel: str, reason: str) -> None:
        """Copy a message to the dead subject, then stop the server redelivering it."""
        headers: dict[str, Any] = {
            **(msg.headers or {}),
            DEAD_REASON_HEADER: reason,
            DEAD_FROM_HEADER: channel,
        }
        await self._publish_one(self.subject(DEAD_CHANNEL), msg.data, headers)
        await msg.term()

    # --- consuming ----------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self, channel: str, group: str, prefetch: int
    ) -> AsyncIterator[AsyncIterator[Delivery]]:
        """Pull from the group's durable consumer, at most `prefetch` unsettled at once."""
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        subject = self.subject(channel)
        broadcast = is_broadcast(channel)
        if broadcast:
            name = _safe_name(f"{channel}.{uuid.uuid4().hex[:12]}")
            config = self._broadcast_config(name, subject)
        else:
            name = _safe_name(f"{group}.{channel}")
            config = self._consumer_config(name, subject)
        with _driver_errors(self.url):
            js = self._jetstream()
            await js.add_consumer(self.stream, config)
            if broadcast:
                psub = await js.pull_subscribe_bind(name=name, stream=self.stream)
            else:
                psub = await js.pull_subscribe_bind(durable=name, stream=self.stream)
        subscription = _Subscription(self, psub, channel, prefetch)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            await subscription.close()
            if broadcast:
                await self._delete_consumer(name)

    async def _delete_consumer(self, name: str) -> None:
        """Delete a broadcast subscription's consumer; if that fails the server expires it."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(REQUEST_SECONDS):
            try:
                await self._jetstream().delete_consumer(self.stream, name)
            except (nats.errors.Error, TransportUnavailable, OSError):
                log.info("nats broadcast consumer is left to expire", consumer=name)

    def _broadcast_config(self, name: str, subject: str) -> ConsumerConfig:
        return ConsumerConfig(
            name=name,
            filter_subject=subject,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._settings.ack_wait_seconds,
            max_deliver=self.max_deliveries + 1,
            inactive_threshold=BROADCAST_INACTIVE_SECONDS,
        )

    def forget(self, subscription: _Subscription) -> None:
        """A subscription has closed."""
        self._subscriptions.discard(subscription)

    def _consumer_config(self, durable: str, subject: str) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=durable,
            name=durable,
            filter_subject=subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._settings.ack_wait_seconds,
            max_deliver=self.max_deliveries + 1,
        )

    # --- plumbing -----------------------------------------------------------------

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise TransportUnavailable(self.url, "not connected (call connect first)")
        return self._js

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats error", url=self.url, error=str(exc))

    async def _on_disconnected(self) -> None:
        if self.closed:
            return
        log.warning("nats disconnected; reconnecting", url=self.url)

    async def _on_reconnected(self) -> None:
        log.info("nats reconnected", url=self.url)
