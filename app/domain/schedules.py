"""Schedules: cron (in a time zone) or fixed-interval triggers that start one run per tick.

Pure: parsing and validating a schedule, the next fire time, and which ticks to run when
the orchestrator finds a schedule due (catch-up after downtime). Cron expressions are read
by `cronsim`, which follows cron's own DST rules: a local time skipped by a spring-forward
fires at the first instant after the gap, one repeated by a fall-back fires once.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

from treadle.domain.durations import parse_duration
from treadle.domain.errors import TreadleError, ValidationIssue
from treadle.domain.limits import KEY_CHARS, MAX_VERSION, NAME_CHARS, TIMEZONE_CHARS, text_problem
from treadle.domain.tags import tag_issues

MIN_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 100 * 366 * 86_400.0
"""About a century: a longer interval could not be added to a date (`datetime` ends in 9999)."""
LATEST_START = datetime(9000, 1, 1, tzinfo=UTC)
"""`start_at` comes before this, so its first ticks (a cron's may be years apart) are dates."""
MISFIRE_GRACE_SECONDS = 60.0
"""A tick found due later than this is missed, and the catch-up policy decides about it."""
GRACE_FRACTION = 0.5
"""...and so is one found later than this share of the gap to the next tick..."""
MIN_GRACE_SECONDS = 1.0
"""...unless it is found within this (a loaded loop's delay is not an outage)."""
_MAX_SCAN = 100_000  # cron ticks walked when catching up, before jumping to the present
MAX_BACKFILL_TICKS = 10_000
"""Runs one backfill may start: a larger range is split by the operator, not by surprise."""
MAX_BACKFILL_CONCURRENCY = 100
CRON_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""Vixie cron's nicknames, kept as written on the schedule and read as their five fields."""


class OverlapPolicy(StrEnum):
    """What a tick does while the schedule's previous run is still active."""

    SKIP = "skip"
    ALLOW = "allow"
    CANCEL_PREVIOUS = "cancel_previous"


class CatchUpPolicy(StrEnum):
    """What happens to ticks missed while no orchestrator was running."""

    SKIP = "skip"
    RUN_ONCE = "run_once"


class ScheduleInvalid(TreadleError):
    """A schedule failed validation."""

    def __init__(self, issues: list[ValidationIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues) or "invalid schedule")


class ScheduleNotFound(TreadleError):
    """No schedule has this id."""

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"schedule {schedule_id!r} does not exist")


class BackfillInProgress(TreadleError):
    """The schedule already has a backfill that has not finished."""

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(f"schedule {schedule_id!r} already has a backfill in progress")


class ScheduleExists(TreadleError):
    """Another schedule already has this name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a schedule named {name!r} already exists")


class Trigger(msgspec.Struct, frozen=True, kw_only=True):
    """When a schedule fires: a cron expression in a time zone, or a fixed interval."""

    cron: str | None = None
    timezone: str = "UTC"
    interval_seconds: float | None = None


class ScheduleSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A schedule as a user writes it (the body of `POST /v1/schedules`)."""

    name: str
    workflow: str
    version: int | None = None
    input: Any = None
    cron: str | None = None
    timezone: str = "UTC"
    interval: str | float | None = None
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catch_up: CatchUpPolicy = CatchUpPolicy.SKIP
    start_at: datetime | None = None
    paused: bool = False
    tags: dict[str, Any] | None = None


class Backfill(msgspec.Struct, frozen=True, kw_only=True):
    """A backfill in progress: one run per tick in [start, end), at most `max_concurrent`
    running at once. Kept on the schedule's row and advanced by the schedule loop, so a
    restart resumes it at `next` (each run's per-tick key makes a repeat start a no-op)."""

    start: datetime
    end: datetime
    max_concurrent: int = 1
    next: datetime | None
    """The next tick to start a run for; None once every tick has one."""
    active: list[str] = []
    """The runs it started that had not ended when last looked at."""
    started: int = 0


class BackfillSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /v1/schedules/{id}/backfill`."""

    start: datetime
    end: datetime
    max_concurrent: int = 1


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """A stored schedule and where it stands."""

    id: str
    name: str
    workflow: str
    version: int | None = None
    input: Any = None
    trigger: Trigger
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catch_up: CatchUpPolicy = CatchUpPolicy.SKIP
    paused: bool = False
    next_fire_at: datetime
    last_fire_at: datetime | None = None
    last_run_id: str | None = None
    created_at: datetime
    tags: dict[str, str] = {}
    """Given to every run the schedule starts (over its definition's default tags)."""
    backfill: Backfill | None = None


class TickPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What to do with a due schedule: the ticks to start runs for, and the next fire time."""

    ticks: list[datetime]
    next_fire_at: datetime
    missed: int = 0


# --- parsing ------------------------------------------------------------------------


def parse_schedule(data: Any) -> tuple[ScheduleSpec, Trigger]:
    """Decode and validate a schedule; raises `ScheduleInvalid` listing every issue."""
    try:
        spec = msgspec.convert(data, ScheduleSpec)
    except msgspec.ValidationError as exc:
        raise ScheduleInvalid([_issue(exc)]) from None
    issues: list[ValidationIssue] = []
    if not spec.name.strip():
        issues.append(ValidationIssue(path="name", message="must not be empty"))
    if spec.start_at is not None:
        problem = _start_problem(spec.start_at)
        if problem is not None:
            issues.append(ValidationIssue(path="start_at", message=problem))
    _check_columns(spec, issues)
    if spec.tags is not None:
        issues += tag_issues(spec.tags)
    if issues:  # a value the store cannot keep is not parsed further
        raise ScheduleInvalid(issues)
    trigger = _trigger(spec, issues)
    if issues:
        raise ScheduleInvalid(issues)
    return spec, trigger


def cron_fields(cron: str) -> str:
    """The five fields of `cron`, a nickname (`@daily`) read as the fields it stands for."""
    return CRON_NICKNAMES.get(cron.strip().lower(), cron)


def _check_columns(spec: ScheduleSpec, issues: list[ValidationIssue]) -> None:
    """Each text fits its column in the store, and the version its 32-bit integer."""
    texts = [("name", spec.name, NAME_CHARS), ("workflow", spec.workflow, NAME_CHARS)]
    texts += [("cron", spec.cron or "", KEY_CHARS), ("timezone", spec.timezone, TIMEZONE_CHARS)]
    for path, value, most in texts:
        problem = text_problem(value, most)
        if problem is not None:
            issues.append(ValidationIssue(path=path, message=problem))
    if spec.version is not None and not 1 <= spec.version <= MAX_VERSION:
        message = f"must be between 1 and {MAX_VERSION}"
        issues.append(ValidationIssue(path="version", message=message))


def _start_problem(start_at: datetime) -> str | None:
    """Why `start_at` cannot start a schedule, or None."""
    if start_at.tzinfo is None:
        return "needs a UTC offset or Z"
    try:
        in_utc = start_at.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-14:00 is after the last instant there is
        return "must be between years 1 and 9999 once taken to UTC"
    if in_utc >= LATEST_START:
        return f"must be before {LATEST_START:%Y-%m-%d}"
    return None


def _trigger(spec: ScheduleSpec, issues: list[ValidationIssue]) -> Trigger:
    if (spec.cron is None) == (spec.interval is None):
        issues.append(ValidationIssue(path="", message="give exactly one of cron or interval"))
        return Trigger()
    if spec.cron is not None:
        _check_timezone(spec.timezone, issues)
        try:
            CronSim(cron_fields(spec.cron), datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC")))
        except CronSimError as exc:
            nicknames = ", ".join(CRON_NICKNAMES)
            message = f"{spec.cron!r} is not a 5-field cron expression or one of {nicknames}: {exc}"
            issues.append(ValidationIssue(path="cron", message=message))
        return Trigger(cron=spec.cron, timezone=spec.timezone)
    assert spec.interval is not None
    try:
        seconds = parse_duration(spec.interval)
    except ValueError as exc:
        issues.append(ValidationIssue(path="interval", message=str(exc)))
        return Trigger()
    if not math.isfinite(seconds) or seconds < MIN_INTERVAL_SECONDS:
        message = f"must be at least {MIN_INTERVAL_SECONDS:g}s, got {seconds:g}s"
        issues.append(ValidationIssue(path="interval", message=message))
    elif seconds > MAX_INTERVAL_SECONDS:
        message = f"must be at most {MAX_INTERVAL_SECONDS:.0f}s (about 100 years), got {seconds:g}s"
        issues.append(ValidationIssue(path="interval", message=message))
    return Trigger(interval_seconds=seconds)


def _check_timezone(name: str, issues: list[ValidationIssue]) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        message = f"{name!r} is not an IANA time zone (e.g. 'UTC', 'Europe/Berlin')"
        issues.append(ValidationIssue(path="timezone", message=message))


def _issue(exc: msgspec.ValidationError) -> ValidationIssue:
    # msgspec says e.g. "Expected `str`, got `int` - at `$.cron`".
    reason, sep, where = str(exc).rpartition(" - at `")
    if not sep:
        reason, where = str(exc), "$"
    path = where.rstrip("`").removeprefix("$").removeprefix(".")
    if "`" in reason and reason.startswith(("Object missing", "Object contains")):
        field = reason.split("`")[1]
        path = f"{path}.{field}" if path else field
    return ValidationIssue(path=path, message=reason.replace("`", ""))


# --- time -----------------------------------------------------------------------------


def next_fire(trigger: Trigger, after: datetime) -> datetime:
    """The first tick strictly after `after` (aware; the answer is in UTC)."""
    utc = ZoneInfo("UTC")
    if trigger.interval_seconds is not None:
        return (after + timedelta(seconds=trigger.interval_seconds)).astimezone(utc)
    assert trigger.cron is not None
    local = after.astimezone(ZoneInfo(trigger.timezone))
    found: datetime = next(iter(CronSim(cron_fields(trigger.cron), local)))
    return found.astimezone(utc)


def first_fire(trigger: Trigger, now: datetime, start_at: datetime | None = None) -> datetime:
    """The first tick of a new (or resumed) schedule: at `start_at`, else the next one."""
    if start_at is not None and start_at > now:
        if trigger.interval_seconds is not None:
            return start_at.astimezone(ZoneInfo("UTC"))
        return next_fire(trigger, start_at - timedelta(microseconds=1))
    return next_fire(trigger, now)


def plan_ticks(
    trigger: Trigger,
    due_at: datetime,
    now: datetime,
    catch_up: CatchUpPolicy,
    grace_seconds: float = MISFIRE_GRACE_SECONDS,
) -> TickPlan:
    """The ticks from `due_at` to `now` to start runs for (at most one), and the first tick
    after `now`.

    Only the latest due tick can be on time: it is when found within `misfire_grace` of
    its due time. Every earlier one is at least one interval late, so it was missed (an
    outage, or a loop that could not keep up). `skip` drops missed ticks, so after an
    outage nothing starts until the next future tick; `run_once` starts one run, for the
    latest tick, however many were missed.
    """
    if due_at > now:
        return TickPlan(ticks=[], next_fire_at=due_at)
    latest, earlier = _latest_due(trigger, due_at, now)
    following = next_fire(trigger, latest)
    on_time = now - latest <= misfire_grace(latest, following, grace_seconds)
    missed = earlier + (0 if on_time else 1)
    fire = on_time or (missed > 0 and catch_up is CatchUpPolicy.RUN_ONCE)
    return TickPlan(ticks=[latest] if fire else [], next_fire_at=following, missed=missed)


def misfire_grace(tick: datetime, following: datetime, grace_seconds: float) -> timedelta:
    """How late `tick` may fire and still be on time: half the gap to the next tick, at
    least `MIN_GRACE_SECONDS` and at most `grace_seconds` (a 4 s schedule has 2 s, an
    hourly one the full minute). Only the latest due tick is ever on time, so a grace as
    long as the gap (a 1 s schedule's) still starts one run, never a burst."""
    half = (following - tick) * GRACE_FRACTION
    return min(timedelta(seconds=grace_seconds), max(half, timedelta(seconds=MIN_GRACE_SECONDS)))


def _latest_due(trigger: Trigger, tick: datetime, now: datetime) -> tuple[datetime, int]:
    """(the last tick at or before `now`, counting from `tick`; how many came before it)."""
    if trigger.interval_seconds is not None:
        step = trigger.interval_seconds
        count = math.floor((now - tick).total_seconds() / step)
        latest = tick + timedelta(seconds=step * count)
        if latest > now:  # float rounding at an exact multiple
            count, latest = count - 1, latest - timedelta(seconds=step)
        return latest, count
    count = 0
    following = next_fire(trigger, tick)
    while following <= now and count < _MAX_SCAN:
        count, tick = count + 1, following
        following = next_fire(trigger, tick)
    if following <= now:  # years of ticks behind: jump without counting the rest
        tick = _previous_cron_tick(trigger, now)
    return tick, count


def _previous_cron_tick(trigger: Trigger, now: datetime) -> datetime:
    """The last cron tick at or before `now` (cronsim walks backwards too)."""
    assert trigger.cron is not None
    local = (now + timedelta(microseconds=1)).astimezone(ZoneInfo(trigger.timezone))
    found: datetime = next(iter(CronSim(cron_fields(trigger.cron), local, reverse=True)))
    return found.astimezone(ZoneInfo("UTC"))


# --- operating a schedule -------------------------------------------------------------


def spec_of(schedule: Schedule) -> dict[str, Any]:
    """The schedule as the body that would create it (what a PATCH is merged over)."""
    spec: dict[str, Any] = {
        "name": schedule.name,
        "workflow": schedule.workflow,
        "version": schedule.version,
        "input": schedule.input,
        "timezone": schedule.trigger.timezone,
        "overlap": schedule.overlap.value,
        "catch_up": schedule.catch_up.value,
        "tags": schedule.tags,
    }
    if schedule.trigger.cron is not None:
        spec["cron"] = schedule.trigger.cron
    else:
        spec["interval"] = schedule.trigger.interval_seconds
    return spec


SCHEDULE_SPEC_FIELDS = (
    "workflow",
    "version",
    "input",
    "trigger",
    "overlap",
    "catch_up",
    "tags",
    "next_fire_at",
)
"""What a PATCH rewrites of a stored schedule (`ScheduleStore.update_schedule`)."""

PATCHABLE = frozenset(
    {"workflow", "version", "input", "cron", "timezone", "interval"}
    | {"overlap", "catch_up", "start_at", "tags"}
)


def patched_spec(schedule: Schedule, patch: Any) -> dict[str, Any]:
    """The body `patch` makes of the schedule's; raises `ScheduleInvalid` for a field that
    cannot change in place. Giving `cron` drops the interval, and the other way round."""
    if not isinstance(patch, dict):
        raise ScheduleInvalid([ValidationIssue(path="", message="must be a JSON object")])
    unknown = sorted(k for k in patch if k not in PATCHABLE)
    if unknown:
        why = {"name": "cannot change (create a new schedule)", "paused": "use pause or resume"}
        issues = [
            ValidationIssue(path=k, message=why.get(k, "is not a field a PATCH may change"))
            for k in unknown
        ]
        raise ScheduleInvalid(issues)
    merged = {**spec_of(schedule), **patch}
    if "cron" in patch:
        merged.pop("interval", None)
    elif "interval" in patch:
        merged.pop("cron", None)
    return merged


def parse_backfill(data: Any, trigger: Trigger, now: datetime) -> Backfill:
    """Validate a backfill request against the schedule's trigger; raises `ScheduleInvalid`."""
    try:
        spec = msgspec.convert(data, BackfillSpec)
    except msgspec.ValidationError as exc:
        raise ScheduleInvalid([_issue(exc)]) from None
    issues: list[ValidationIssue] = []
    for path, value in (("start", spec.start), ("end", spec.end)):
        problem = _start_problem(value)
        if problem is not None:
            issues.append(ValidationIssue(path=path, message=problem))
    if not 1 <= spec.max_concurrent <= MAX_BACKFILL_CONCURRENCY:
        message = f"must be between 1 and {MAX_BACKFILL_CONCURRENCY}"
        issues.append(ValidationIssue(path="max_concurrent", message=message))
    if issues:
        raise ScheduleInvalid(issues)
    if spec.end <= spec.start:
        issues.append(ValidationIssue(path="end", message="must be after start"))
    elif spec.end > now:
        issues.append(ValidationIssue(path="end", message="must not be in the future"))
    if issues:
        raise ScheduleInvalid(issues)
    first = first_backfill_tick(trigger, spec.start)
    count = count_ticks(trigger, first, spec.end, MAX_BACKFILL_TICKS + 1)
    if count > MAX_BACKFILL_TICKS:
        message = f"holds more than {MAX_BACKFILL_TICKS} ticks; backfill it in parts"
        raise ScheduleInvalid([ValidationIssue(path="end", message=message)])
    return Backfill(
        start=spec.start.astimezone(UTC),
        end=spec.end.astimezone(UTC),
        max_concurrent=spec.max_concurrent,
        next=first if first < spec.end else None,
    )


def first_backfill_tick(trigger: Trigger, start: datetime) -> datetime:
    """The first tick at or after `start` (an interval's ticks count from `start`)."""
    if trigger.interval_seconds is not None:
        return start.astimezone(UTC)
    return next_fire(trigger, start - timedelta(microseconds=1))


def count_ticks(trigger: Trigger, first: datetime, end: datetime, most: int) -> int:
    """How many ticks from `first` come before `end`, counting at most `most`."""
    if trigger.interval_seconds is not None:
        span = (end - first).total_seconds()
        return 0 if span <= 0 else min(most, math.ceil(span / trigger.interval_seconds))
    count, tick = 0, first
    while tick < end and count < most:
        count, tick = count + 1, next_fire(trigger, tick)
    return count


def backfill_ticks(
    trigger: Trigger, backfill: Backfill, room: int
) -> tuple[list[datetime], datetime | None]:
    """Up to `room` ticks to start from the backfill's cursor, and the cursor after them."""
    ticks: list[datetime] = []
    tick = backfill.next
    while tick is not None and len(ticks) < room:
        ticks.append(tick)
        tick = next_fire(trigger, tick)
        if tick >= backfill.end:
            tick = None
    return ticks, tick
