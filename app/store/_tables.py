"""The schema, as SQLAlchemy Core tables. Migrations create it; queries are built on it.

Every JSON value is msgspec-encoded text (see `_types`), every timestamp aware UTC.
Indexes exist for each hot query; the comment beside each names the query it serves.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    false,
    text,
)

from treadle.domain.limits import ID_CHARS, KEY_CHARS, NAME_CHARS, TIMEZONE_CHARS
from treadle.domain.tags import TAG_KEY_CHARS, TAG_VALUE_CHARS
from treadle.store._types import BIG_ID, BYTES, JSON_TEXT, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}
VERSION_TABLE = "treadle_alembic_version"

metadata = MetaData(naming_convention=NAMING)

# The sizes are the domain's, which the API checks every value against (see its docs).
_ID = ID_CHARS  # run ids are uuids (hex); room for user-chosen ids
_NAME = NAME_CHARS  # workflow and task names
_KEY = KEY_CHARS  # idempotency keys, channels, message keys
# Queries repeat these exact texts (never bound parameters) so that SQLite and PostgreSQL
# can prove the partial indexes apply.
ACTIVE_TASK = text("status IN ('scheduled', 'running')")
UNSENT = text("sent_at IS NULL")
# `ddl_if` takes a tuple of dialect names at run time though its annotation says str.
_PARTIAL: Any = ("postgresql", "sqlite")
_MYSQL: Any = ("mysql", "mariadb")

workflows = Table(
    "treadle_workflows",
    metadata,
    Column("name", String(_NAME), primary_key=True),
    Column("version", Integer, primary_key=True),  # PK (name, version) also finds the latest
    Column("digest", String(128), nullable=False),
    Column("definition", JSON_TEXT, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

runs = Table(
    "treadle_runs",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("workflow", String(_NAME), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", JSON_TEXT),
    Column("output", JSON_TEXT),
    Column("error", JSON_TEXT),
    Column("idempotency_key", String(_KEY), unique=True),  # NULLs never collide
    Column("parent_run_id", String(_ID)),
    Column("parent_task_id", String(_NAME)),
    Column("signals", JSON_TEXT),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    # +1 in every decision's transaction: it locks the run, and tells a process whether
    # the state it kept from its own last decision is still the run's (see SqlStore.apply)
    Column("revision", BigInteger, nullable=False, server_default=text("0")),
    Column("tags", JSON_TEXT),  # the run's tags as read back; `run_tags` is what finds them
    # list_runs: newest first, keyset on (created_at, id), optionally by workflow and/or
    # status and a created_at range; count_runs: per status, by workflow and created_at.
    # A filter on idempotency_key uses its unique index.
    Index(None, "created_at", "id"),
    Index(None, "workflow", "created_at", "id"),
    Index(None, "status", "created_at", "id"),
    Index(None, "workflow", "status", "created_at", "id"),
    Index(None, "parent_run_id"),  # finding a parent's children
)

tasks = Table(
    "treadle_tasks",
    metadata,
    Column("run_id", String(_ID), ForeignKey(runs.c.id, ondelete="CASCADE"), primary_key=True),
    Column("task_id", String(_NAME), primary_key=True),
    Column("position", Integer, nullable=False),  # keeps the definition's order
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("input", JSON_TEXT),
    Column("output", JSON_TEXT),
    Column("error", JSON_TEXT),
    Column("scheduled_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("progress", JSON_TEXT),  # a map task's MapProgress
    Column("child_run_id", String(_ID)),  # a workflow task's child run
    # The current attempt's delivery number and schedule-to-start re-sends (TaskState)
    Column("delivery", Integer, nullable=False, server_default=text("1")),
    Column("resends", Integer, nullable=False, server_default=text("0")),
    Column("heartbeat", JSON_TEXT),  # the last heartbeat: {at, attempt, details}
    # inflight_attempts: scheduled/running rows in run-id order. PostgreSQL and SQLite
    # index just those rows; MySQL has no partial index, so it leads with the status.
    Index(
        "ix_treadle_tasks_active",
        "run_id",
        "task_id",
        postgresql_where=ACTIVE_TASK,
        sqlite_where=ACTIVE_TASK,
    ).ddl_if(dialect=_PARTIAL),
    Index("ix_treadle_tasks_status", "status", "run_id", "task_id").ddl_if(dialect=_MYSQL),
)

map_items = Table(
    "treadle_map_items",
    metadata,
    Column("run_id", String(_ID), ForeignKey(runs.c.id, ondelete="CASCADE"), primary_key=True),
    Column("task_id", String(_NAME), primary_key=True),
    # The PK (run_id, task_id, item_index) serves the per-event loads, the ordered read of
    # a finished map's outputs and the items page of the API.
    Column("item_index", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("input", JSON_TEXT),
    Column("output", JSON_TEXT),
    Column("error", JSON_TEXT),
    Column("scheduled_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("delivery", Integer, nullable=False, server_default=text("1")),
    Column("resends", Integer, nullable=False, server_default=text("0")),
    Column("heartbeat", JSON_TEXT),  # the last heartbeat: {at, attempt, details}
)

run_tags = Table(
    "treadle_run_tags",
    metadata,
    # A run's tags, one row each, written with the run and never changed. The run's
    # created_at is repeated so that a tag filter reads (key, value) newest first, in
    # the order and keyset of list_runs, from the index alone.
    Column("run_id", String(_ID), ForeignKey(runs.c.id, ondelete="CASCADE"), primary_key=True),
    Column("key", String(TAG_KEY_CHARS), primary_key=True),
    Column("value", String(TAG_VALUE_CHARS), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "key", "value", "created_at", "run_id"),  # list_runs by tag
)

history = Table(
    "treadle_history",
    metadata,
    Column("id", BIG_ID, primary_key=True, autoincrement=True),
    Column("run_id", String(_ID), ForeignKey(runs.c.id, ondelete="CASCADE"), nullable=False),
    Column("type", String(64), nullable=False),
    Column("task_id", String(_NAME)),
    Column("attempt", Integer),
    Column("data", JSON_TEXT),
    Column("at", UTCDateTime, nullable=False),
    Index(None, "run_id", "id"),  # list_history: a run's entries in order
)

outbox = Table(
    "treadle_outbox",
    metadata,
    Column("id", BIG_ID, primary_key=True, autoincrement=True),
    Column("channel", String(_KEY), nullable=False),
    Column("key", String(_KEY), nullable=False),
    Column("body", BYTES, nullable=False),
    Column("headers", JSON_TEXT),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    # Set while a worker of the writing process runs the dispatch eagerly (renewed as it
    # runs): the sweeper leaves the row alone until then.
    Column("leased_until", UTCDateTime),
    # claim_unsent and outbox_backlog read only unsent rows, oldest first; as above,
    # MySQL gets a full index led by sent_at instead of a partial one.
    Index(
        "ix_treadle_outbox_unsent",
        "created_at",
        "id",
        postgresql_where=UNSENT,
        sqlite_where=UNSENT,
    ).ddl_if(dialect=_PARTIAL),
    Index("ix_treadle_outbox_sent", "sent_at", "created_at", "id").ddl_if(dialect=_MYSQL),
)

timers = Table(
    "treadle_timers",
    metadata,
    Column("run_id", String(_ID), ForeignKey(runs.c.id, ondelete="CASCADE"), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("task_id", String(_NAME), primary_key=True),  # '' when the timer has no task
    Column("attempt", Integer, primary_key=True),
    Column("fire_at", UTCDateTime, nullable=False),
    Column("leased_until", UTCDateTime),
    Column("traceparent", String(64)),  # the starting decision's: firing joins its trace
    Index(None, "fire_at"),  # claim_due_timers and next_timer_at
)

deliveries = Table(
    "treadle_deliveries",
    metadata,
    # How many times workers were handed each attempt, counted before running it, for the
    # transports whose broker does not count a delivery that died with its consumer
    # (Kafka re-reads uncommitted records with their old count).
    Column("run_id", String(_ID), ForeignKey(runs.c.id, ondelete="CASCADE"), primary_key=True),
    Column("task_id", String(_NAME), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("item", Integer, primary_key=True),  # -1 when the attempt is not a map item's
    Column("count", Integer, nullable=False),
)

schedules = Table(
    "treadle_schedules",
    metadata,
    Column("id", String(_ID), primary_key=True),
    Column("name", String(_NAME), nullable=False, unique=True),  # list_schedules: by name
    Column("workflow", String(_NAME), nullable=False),
    Column("version", Integer),
    Column("input", JSON_TEXT),
    Column("cron", String(_KEY)),
    Column("timezone", String(TIMEZONE_CHARS), nullable=False),
    Column("interval_ms", BigInteger),
    Column("overlap", String(16), nullable=False),
    Column("catch_up", String(16), nullable=False),
    Column("paused", Boolean, nullable=False),
    Column("next_fire_at", UTCDateTime, nullable=False),
    Column("leased_until", UTCDateTime),
    Column("last_fire_at", UTCDateTime),
    Column("last_run_id", String(_ID)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("tags", JSON_TEXT),  # given to every run it starts
    Column("backfill", JSON_TEXT),  # the backfill in progress (a `Backfill`), else NULL
    Index(None, "next_fire_at"),  # claim_due_schedules
)

api_keys = Table(
    "treadle_api_keys",
    metadata,
    Column("id", String(32), primary_key=True),  # authenticate: one key by id
    Column("name", String(_NAME), nullable=False),
    Column("secret_hash", String(128), nullable=False),  # hex SHA-256 of the secret
    Column("scopes", String(64), nullable=False),  # comma-separated
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)

workers = Table(
    "treadle_workers",
    metadata,
    Column("id", String(_NAME), primary_key=True),  # "worker@host:pid:nonce"
    Column("host", String(_NAME), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("queues", JSON_TEXT, nullable=False),  # JSON list of names
    Column("handlers", JSON_TEXT, nullable=False),  # JSON list of names
    Column("concurrency", Integer, nullable=False),
    Column("inflight", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
)
