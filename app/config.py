"""Settings: `config/default.toml`, then an optional file, then `TREADLE_*` environment variables.

`TREADLE_<SECTION>__<KEY>` sets any key; a few short names (`TREADLE_DATABASE_URL`,
`TREADLE_TRANSPORT`, `TREADLE_BROKER_URL`, `TREADLE_HANDLERS`) are kept for convenience.
A bad value stops start-up with one line that names the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from treadle.domain.errors import TreadleError
from treadle.domain.limits import Limits

DEFAULT_FILE = Path(__file__).with_name("default.toml")


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base for settings sections: unknown keys are a typo, so they are an error."""


class TlsSettings(_Section, frozen=True, kw_only=True):
    """TLS to a database or broker (`[database.tls]`, `[transport.tls]`); see app/_tls.py."""

    enabled: bool = False
    ca_file: str = ""
    """PEM file of the CAs to trust; empty: the system's default CAs."""
    cert_file: str = ""
    """PEM client certificate, for servers that ask for one (mutual TLS)."""
    key_file: str = ""
    """The client certificate's private key; empty: it is inside `cert_file`."""
    verify: bool = True
    """Check the server's certificate against the CAs. Off only for testing."""
    check_hostname: bool = True
    """Check the certificate names the host connected to (needs `verify`)."""


class DatabaseSettings(_Section, frozen=True, kw_only=True):
    url: str = "sqlite+aiosqlite:///./treadle.db"
    pool_size: int = 10
    echo: bool = False
    migrate_on_start: bool | None = None
    """None: migrate automatically on SQLite only."""
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    """SQLite's `synchronous` in WAL mode: normal survives a killed process, full a power cut."""
    tls: TlsSettings = TlsSettings()


class TransportSettings(_Section, frozen=True, kw_only=True):
    kind: Literal["memory", "rabbitmq", "kafka", "nats"] = "memory"
    url: str = ""
    namespace: str = "treadle"
    """Prefix of every queue, topic, stream and subject, so installs can share a broker."""
    prefetch: int = 64
    max_deliveries: int = 5
    partitions: int = 8
    ack_wait_seconds: float = 30.0
    """NATS: how long an unacked delivery is held before the broker redelivers it."""
    kafka_idempotence: bool = True
    """Kafka: idempotent producer; turn off for brokers without InitProducerId (Tansu)."""
    kafka_fetch_max_wait_ms: Annotated[int, msgspec.Meta(ge=0)] = 100
    """Kafka: the longest a fetch waits for records. Kafka answers a waiting fetch as soon
    as a record arrives; a broker that waits the whole time (Tansu) adds up to this much
    latency to every message. 100 ms costs an idle consumer ten small fetches a second."""
    connect_timeout_seconds: float = 60.0
    """Start-up: how long to keep retrying (with backoff) a broker that refuses to connect."""
    tls: TlsSettings = TlsSettings()


class ApiSettings(_Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1_048_576
    max_page_size: int = 500
    default_page_size: int = 50
    allowed_hosts: list[str] = []
    """Host names, besides localhost, 127.0.0.1 and [::1], that a keyless loopback API
    serves (DNS rebinding guard), e.g. a name in /etc/hosts for this machine."""
    shutdown_delay_seconds: float = 0.0
    """On SIGTERM, /readyz answers 503 this long, everything still serving, before the
    roles stop and the listener closes (any role: every process serves /readyz)."""


class WorkerSettings(_Section, frozen=True, kw_only=True):
    concurrency: int = 32
    max_sync_threads: Annotated[int, msgspec.Meta(gt=0)] = 64
    """Threads sync handlers may hold at once, counting those of attempts that timed out or
    were cancelled while their handler kept running (a thread cannot be stopped: it is
    held until the function returns). At the bound the worker takes no deliveries (the
    backlog stays on the broker) and /readyz answers 503. Above `concurrency`, so only such
    abandoned threads reach it."""
    queues: list[str] = msgspec.field(default_factory=lambda: ["default"])
    handlers: list[str] = []
    drain_seconds: float = 30.0
    report_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """Seconds between the worker's reports of itself (`WorkerRegistry`), read by
    `GET /v1/workers`: a worker silent for more than three is shown as silent."""
    traceback_lines: int = 20
    lost_after_deliveries: Annotated[int, msgspec.Meta(ge=2)] = 3
    """A dispatch delivered this many times (the copies before never finished: the process
    running them ended) is not run: its attempt fails with `AttemptLost` and follows its
    retry policy, so an attempt that kills its process cannot crash-loop it."""
    eager: bool = True
    """Run a dispatch decided in this process on this process's worker, without the broker
    round trip, when its queue is served here, its (async) handler registered here and a
    slot free. Its outbox row stays unsent under a lease renewed while it runs, so if the
    process dies the row is published once the lease runs out."""
    eager_lease_seconds: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    """How long an eager dispatch's lease lasts; renewed every third of it while it runs.
    After a crash, its attempt runs again elsewhere within about this long."""
    decide_locally: bool = True
    """In a process that also runs the orchestrator role, over a broker, the worker's
    results (starts, heartbeats) are decided in the process instead of crossing the
    events channel; one that cannot be decided here (the database is away) goes over the
    broker as before. (The in-process transport's events channel is a memory queue
    already.)"""


class OrchestratorSettings(_Section, frozen=True, kw_only=True):
    default_task_timeout: float = 300.0
    """Start-to-close seconds for an attempt whose task sets no timeout."""
    default_schedule_to_start_timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Seconds a dispatched attempt may wait unstarted before it is sent again, for a task
    that sets no `schedule_to_start_timeout`. None (off): a durable broker with publisher
    confirms loses no dispatch, and the check costs a timer write per step. Turn it on for
    a broker that can lose messages (Kafka-protocol brokers on memory storage)."""
    timer_poll_seconds: float = 1.0
    timer_lease_seconds: float = 30.0
    timer_batch: int = 200
    sweep_interval_seconds: float = 5.0
    outbox_stale_seconds: float = 10.0
    outbox_retention_seconds: Annotated[float, msgspec.Meta(ge=0)] = 3600.0
    """How long an outbox row is kept after it was published; each sweep deletes the older
    ones. 0: a published row goes at the next sweep."""
    event_prefetch: int = 128


class LogSettings(_Section, frozen=True, kw_only=True):
    level: str = "info"
    format: Literal["auto", "json", "console"] = "auto"
    max_value_bytes: int = 2048
    """A logged value (a task input, an output) larger than this as JSON is elided."""
    quiet_loggers: list[str] = msgspec.field(
        default_factory=lambda: [
            *("aiokafka", "aio_pika", "aiormq", "nats", "httpx", "httpcore"),
            "alembic",  # a dozen lines per start-up; the store logs one when it migrates
        ]
    )
    """Chatty third-party loggers held at WARNING whatever `level` says."""


class MetricsSettings(_Section, frozen=True, kw_only=True):
    # No port of its own: every process serves /metrics on api.host:api.port (a process
    # without the api role serves only /healthz, /readyz and /metrics there).
    gauge_interval_seconds: float = 15.0
    """How often an orchestrator reads the outbox backlog and timer lag from the store."""


class HttpSettings(_Section, frozen=True, kw_only=True):
    """The `http` task type, run by workers (see app/modules/worker/_http.py)."""

    allow: list[str] = []
    """CIDRs (`127.0.0.1/32`) or host names the SSRF guard lets through although they are
    loopback, private, link-local or otherwise internal. Empty: only public addresses."""
    default_timeout: float = 30.0
    """Seconds for a request whose definition sets no `request.timeout`."""
    connect_timeout: float = 10.0
    max_response_bytes: int = 1_048_576
    """A response body larger than this fails the attempt (HttpResponseTooLarge)."""
    max_connections: int = 100
    max_keepalive_connections: int = 20
    follow_redirects: bool = False
    """Off: a 3xx is the answer. On: each target is checked by the SSRF guard again."""
    max_redirects: int = 5
    secret_prefix: str = "TREADLE_SECRET_"  # noqa: S105 -- a variable-name prefix, no secret
    """`${ secret.NAME }` reads the worker's environment variable `<prefix>NAME`."""
    breaker_failures: int = 5
    """Consecutive failures (5xx, connect error, timeout) that open a host's circuit."""
    breaker_cooldown_seconds: float = 30.0
    """How long an open circuit rejects calls before one probe may try again."""


class AuthSettings(_Section, frozen=True, kw_only=True):
    """API authentication with keys (`treadle keys create`), sent as `Authorization: Bearer`."""

    mode: Literal["auto", "keys", "off"] = "auto"
    """auto: keys are required once any key has been created (revoking the last one leaves
    the API locked, never open again), and always off loopback; keys: always; off: never
    (refused off loopback unless `allow_insecure`)."""
    allow_insecure: bool = False
    """Serve a non-loopback address without keys; set by `treadle serve --insecure-no-auth`."""
    cache_seconds: float = 5.0
    """How long a key lookup is reused: a revoked key stops working within this bound."""
    last_used_interval_seconds: float = 60.0
    """How often the batch of keys' last-use times is written."""
    open_metrics: bool = False
    """Serve /metrics without a key (for a scraper that cannot send one)."""
    bootstrap_key: str = ""
    """A first key, `trd_<12 hex>_<secret>`, made outside Treadle (a deployment's Secret):
    the api role stores it (its digest, scope admin, named "bootstrap") at start-up unless
    its id is stored already, so a fresh install can listen off loopback. Prefer
    `bootstrap_key_file`; set at most one."""
    bootstrap_key_file: str = ""
    """A file holding `bootstrap_key` (a mounted Secret), read at start-up."""
    bootstrap_key_create: bool = False
    """When `bootstrap_key_file` does not exist, write a new random key there (mode 0600)
    and use it: a container with no configuration starts on 0.0.0.0 (the image sets it)."""


class LimitsSettings(_Section, frozen=True, kw_only=True):
    """Caps on what one request or one run may ask for; each refusal names its key."""

    max_definition_bytes: int = 1_048_576
    """A workflow definition larger than this as JSON is refused (413)."""
    max_tasks: int = 1000
    """A definition with more tasks is refused (422)."""
    max_run_input_bytes: int = 1_048_576
    """A run input larger than this as JSON is refused (413)."""
    max_signal_payload_bytes: int = 262_144
    """A signal payload larger than this as JSON is refused (413)."""
    max_expression_bytes: int = 4_194_304
    """An expression value (or any value it builds) larger than this as JSON fails its task
    (ExpressionLimit), or the registration when the expression reads no run data."""
    max_map_items: int = 100_000
    """A map task whose list is longer fails (MapTooLarge)."""
    max_expression_cost: Annotated[int, msgspec.Meta(ge=1)] = 200_000
    """Cost units one expression evaluation may spend (~0.1 µs each): over it the task fails
    (ExpressionLimit, not retried), or the registration when it reads no run data."""
    max_decision_expression_cost: Annotated[int, msgspec.Meta(ge=1)] = 400_000
    """Cost units all the expressions of one decision may spend together (ExpressionLimit)."""
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 1000
    """A task's `retry.max_attempts` above this is refused (422)."""
    min_retry_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 0.1
    """A `retry.initial_interval` or `max_interval` shorter than this is refused (422)."""
    max_json_depth: Annotated[int, msgspec.Meta(ge=1, le=256)] = 64
    """A JSON request body nesting arrays and objects deeper than this is refused (400)."""
    max_output_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1_048_576
    """A task output (a handler's return value, an http answer) larger than this as JSON
    fails its attempt (OutputTooLarge, not retried); checked by the worker."""
    max_inline_value_bytes: Annotated[int, msgspec.Meta(ge=1)] = 65_536
    """A run or task input or output larger than this as JSON is left out of a run's JSON
    (`GET /v1/runs/{id}` and the items page) as `{"$elided": {bytes, href}}`; its `href`
    (`/v1/runs/{id}/values/...`) answers the one value, and `?inline=all` every value."""

    def domain(self) -> Limits:
        """The part the pure decider applies, carried by each compiled workflow."""
        return Limits(
            max_tasks=self.max_tasks,
            max_expression_bytes=self.max_expression_bytes,
            max_map_items=self.max_map_items,
            max_expression_cost=self.max_expression_cost,
            max_decision_expression_cost=self.max_decision_expression_cost,
            max_attempts=self.max_attempts,
            min_retry_interval_seconds=self.min_retry_interval_seconds,
        )


class UiSettings(_Section, frozen=True, kw_only=True):
    """The web dashboard at `/ui`."""

    trace_url_template: Annotated[
        str, msgspec.Meta(pattern=r"^(https?://\S*\{trace_id\}\S*)?$")
    ] = ""
    """A tracing UI's page of one trace, `{trace_id}` standing for the id (Jaeger:
    `http://localhost:16686/trace/{trace_id}`); the dashboard links trace ids to it. Empty:
    trace ids are shown as text."""


class Settings(_Section, frozen=True, kw_only=True):
    database: DatabaseSettings = DatabaseSettings()
    transport: TransportSettings = TransportSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    orchestrator: OrchestratorSettings = OrchestratorSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    http: HttpSettings = HttpSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitsSettings = LimitsSettings()
    ui: UiSettings = UiSettings()


class ConfigError(TreadleError):
    """A setting has a bad value or an unknown key."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"config {key}: {reason}")


_SHORT_NAMES = {
    "TREADLE_DATABASE_URL": ("database", "url"),
    "TREADLE_TRANSPORT": ("transport", "kind"),
    "TREADLE_BROKER_URL": ("transport", "url"),
    "TREADLE_HANDLERS": ("worker", "handlers"),
}
_LIST_KEYS = {
    ("worker", "handlers"),
    ("worker", "queues"),
    ("log", "quiet_loggers"),
    ("http", "allow"),
    ("api", "allowed_hosts"),
}


def load_settings(
    file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Merge the defaults, an optional TOML file and the environment into `Settings`."""
    env = os.environ if environ is None else environ
    raw = _read_toml(DEFAULT_FILE)
    file = file or env.get("TREADLE_CONFIG")
    if file:
        _merge(raw, _read_toml(Path(file)))
    _merge(raw, _from_environment(env))
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(*_key_and_reason(str(exc))) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML ({exc})") from None


def _from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        if name in _SHORT_NAMES:
            section, key = _SHORT_NAMES[name]
        elif name.startswith("TREADLE_") and "__" in name:
            section, _, key = name.removeprefix("TREADLE_").lower().partition("__")
        else:
            continue
        parsed: Any = value
        if (section, key) in _LIST_KEYS:
            parsed = [part.strip() for part in value.split(",") if part.strip()]
        # A nested table: TREADLE_DATABASE__TLS__CA_FILE sets [database.tls] ca_file.
        *tables, leaf = key.split("__")
        target = out.setdefault(section, {})
        for table in tables:
            target = target.setdefault(table, {})
        target[leaf] = parsed
    return out


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> None:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _key_and_reason(message: str) -> tuple[str, str]:
    # msgspec says e.g. "Expected `int`, got `str` - at `$.api.port`"
    reason, sep, where = message.rpartition(" - at `")
    if not sep:  # at the root msgspec omits the location, e.g. an unknown section
        reason, where = message, "$`"
    key = where.rstrip("`").removeprefix("$.")
    if reason.startswith("Object contains unknown field"):
        field = reason.split("`")[1]
        return (f"{key}.{field}" if key != "$" else field), "unknown key"
    return (key if key != "$" else "settings"), reason
