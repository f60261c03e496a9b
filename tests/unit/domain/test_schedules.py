"""Schedule parsing, next fire times (cron with time zones and DST, intervals), catch-up."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from treadle.domain.schedules import (
    CatchUpPolicy,
    ScheduleInvalid,
    Trigger,
    first_fire,
    next_fire,
    parse_schedule,
    plan_ticks,
)

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _paths(data: dict[str, object]) -> list[str]:
    with pytest.raises(ScheduleInvalid) as caught:
        parse_schedule({"name": "n", "workflow": "w", **data})
    return [issue.path for issue in caught.value.issues]


def test_parse_accepts_cron_with_zone_and_interval_durations() -> None:
    """A cron schedule keeps its zone; an interval is a duration string or seconds."""
    _, cron = parse_schedule({"name": "n", "workflow": "w", "cron": "0 9 * * 1-5",
                              "timezone": "Europe/Berlin"})  # fmt: skip
    assert cron == Trigger(cron="0 9 * * 1-5", timezone="Europe/Berlin")
    _, every = parse_schedule({"name": "n", "workflow": "w", "interval": "1m30s"})
    assert every.interval_seconds == 90.0
    _, number = parse_schedule({"name": "n", "workflow": "w", "interval": 5})
    assert number.interval_seconds == 5.0


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "every day"}, "cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"interval": "soon"}, "interval"),
        ({"interval": "100ms"}, "interval"),
        ({"interval": "1s", "overlap": "sometimes"}, "overlap"),
        ({"interval": "1s", "catch_up": "all"}, "catch_up"),
        ({"interval": "1s", "start_at": "tomorrow"}, "start_at"),
        ({"interval": "1s", "start_at": "2030-01-01T00:00:00"}, "start_at"),
        ({"interval": "1s", "start_at": "9999-12-31T23:59:59-14:00"}, "start_at"),
        ({"cron": "0 0 29 2 1", "start_at": "9999-01-01T00:00:00Z"}, "start_at"),
        ({"interval": "99999999999999d"}, "interval"),
        ({"interval": 2**64}, "interval"),
        ({"cron": "* * * * *", "interval": "1s"}, ""),
        ({}, ""),
    ],
)
def test_bad_schedules_name_the_field(data: dict[str, object], path: str) -> None:
    """Every unreadable cron, zone, duration, policy or timestamp is an issue at its path."""
    assert path in _paths(data)


def test_cron_next_fire_uses_the_time_zone() -> None:
    """`0 9 * * *` in Berlin is 08:00 UTC in winter and 07:00 UTC in summer."""
    trigger = Trigger(cron="0 9 * * *", timezone="Europe/Berlin")
    assert next_fire(trigger, T0) == datetime(2030, 1, 2, 8, 0, tzinfo=UTC)
    summer = datetime(2030, 7, 1, 12, 0, tzinfo=UTC)
    assert next_fire(trigger, summer) == datetime(2030, 7, 2, 7, 0, tzinfo=UTC)


def test_cron_across_spring_forward_fires_once_after_the_gap() -> None:
    """02:30 does not exist in Berlin on 2024-03-31: the tick fires at 03:00 local instead."""
    trigger = Trigger(cron="30 2 * * *", timezone="Europe/Berlin")
    before = datetime(2024, 3, 30, 12, 0, tzinfo=BERLIN)
    fired = next_fire(trigger, before)
    assert fired.astimezone(BERLIN) == datetime(2024, 3, 31, 3, 0, tzinfo=BERLIN)
    again = next_fire(trigger, fired)
    assert again.astimezone(BERLIN) == datetime(2024, 4, 1, 2, 30, tzinfo=BERLIN)


def test_hourly_cron_across_fall_back_keeps_real_hours() -> None:
    """On the night clocks go back, an hourly schedule's ticks stay an hour apart in UTC."""
    trigger = Trigger(cron="0 * * * *", timezone="Europe/Berlin")
    tick = datetime(2024, 10, 26, 23, 30, tzinfo=UTC)
    ticks = []
    for _ in range(4):
        tick = next_fire(trigger, tick)
        ticks.append(tick)
    gaps = {b - a for a, b in itertools.pairwise(ticks)}
    assert gaps == {timedelta(hours=1)}


def test_first_fire_honours_start_at() -> None:
    """A future start_at is the first tick of an interval schedule."""
    trigger = Trigger(interval_seconds=60)
    start = T0 + timedelta(hours=1)
    assert first_fire(trigger, T0, start) == start
    assert first_fire(trigger, T0) == T0 + timedelta(minutes=1)


def test_plan_runs_a_tick_that_is_on_time() -> None:
    """A tick due a moment ago runs, and the next one is one interval later."""
    trigger = Trigger(interval_seconds=10)
    plan = plan_ticks(trigger, T0, T0 + timedelta(seconds=0.3), CatchUpPolicy.SKIP)
    assert plan.ticks == [T0]
    assert plan.next_fire_at == T0 + timedelta(seconds=10)
    assert plan.missed == 0


def test_catch_up_skip_drops_ticks_missed_during_downtime() -> None:
    """After an hour down, `skip` starts nothing and jumps to the next future tick."""
    trigger = Trigger(interval_seconds=60)
    now = T0 + timedelta(hours=1, seconds=90.5)
    plan = plan_ticks(trigger, T0, now, CatchUpPolicy.SKIP)
    assert plan.next_fire_at > now
    assert plan.next_fire_at - now <= timedelta(seconds=60)
    assert plan.missed > 50
    # Ticks within the grace period are on time, not missed.
    assert all(now - t <= timedelta(seconds=60) for t in plan.ticks)


def test_catch_up_run_once_starts_one_run_for_missed_ticks() -> None:
    """`run_once` starts a single run for the latest missed tick, then resumes the rhythm."""
    trigger = Trigger(cron="0 * * * *", timezone="UTC")
    now = T0 + timedelta(hours=5, minutes=30)
    plan = plan_ticks(trigger, T0, now, CatchUpPolicy.RUN_ONCE)
    assert plan.ticks == [T0 + timedelta(hours=5)]
    assert plan.missed == 6
    assert plan.next_fire_at == T0 + timedelta(hours=6)
    skipped = plan_ticks(trigger, T0, now, CatchUpPolicy.SKIP)
    assert skipped.ticks == []


@pytest.mark.parametrize("late", [3.0, 10.0, 77.0])
def test_skip_after_an_outage_starts_nothing_for_missed_ticks(late: float) -> None:
    """Every 4 s, found due `late` s after the due tick: every tick more than 2 s late is
    missed, so `skip` starts at most the one tick still within its grace."""
    trigger = Trigger(interval_seconds=4)
    now = T0 + timedelta(seconds=late)
    plan = plan_ticks(trigger, T0, now, CatchUpPolicy.SKIP)
    assert all(now - tick <= timedelta(seconds=2) for tick in plan.ticks)
    assert len(plan.ticks) <= 1
    assert now < plan.next_fire_at <= now + timedelta(seconds=4)


def test_the_issue_outage_of_77_seconds_on_a_4_second_schedule() -> None:
    """Due at T0 and found 77.3 s later (ticks up to T0+76, 1.3 s ago): one run for that
    tick, the 19 before it missed (the 60 s grace used to start 15 runs)."""
    trigger = Trigger(interval_seconds=4)
    now = T0 + timedelta(seconds=77.3)
    plan = plan_ticks(trigger, T0, now, CatchUpPolicy.SKIP)
    assert plan.ticks == [T0 + timedelta(seconds=76)]
    assert plan.missed == 19
    assert plan.next_fire_at == T0 + timedelta(seconds=80)
    later = plan_ticks(trigger, T0, now + timedelta(seconds=1), CatchUpPolicy.SKIP)
    assert later.ticks == []  # 2.3 s late: missed too
    assert later.missed == 20


@pytest.mark.parametrize("late", [0.1, 3.0, 59.0, 77.0, 3600.0])
def test_run_once_starts_exactly_one_run_however_late(late: float) -> None:
    """`run_once` starts one run (for the latest due tick) whether one tick or many are due."""
    trigger = Trigger(interval_seconds=4)
    now = T0 + timedelta(seconds=late)
    plan = plan_ticks(trigger, T0, now, CatchUpPolicy.RUN_ONCE)
    assert len(plan.ticks) == 1
    assert timedelta(0) <= now - plan.ticks[0] < timedelta(seconds=4)
    assert now < plan.next_fire_at


def test_the_grace_is_half_the_gap_and_at_most_a_minute() -> None:
    """A 4 s schedule's tick is on time 2 s late, a 1 s one's 1 s, an hourly cron's 60 s."""
    every4 = Trigger(interval_seconds=4)
    assert plan_ticks(every4, T0, T0 + timedelta(seconds=1.9), CatchUpPolicy.SKIP).ticks == [T0]
    assert plan_ticks(every4, T0, T0 + timedelta(seconds=2.1), CatchUpPolicy.SKIP).ticks == []
    every1 = Trigger(interval_seconds=1)  # at least 1 s: a busy loop's delay is no outage
    assert plan_ticks(every1, T0, T0 + timedelta(seconds=0.9), CatchUpPolicy.SKIP).ticks == [T0]
    hourly = Trigger(cron="0 * * * *")
    assert plan_ticks(hourly, T0, T0 + timedelta(seconds=59), CatchUpPolicy.SKIP).ticks == [T0]
    assert plan_ticks(hourly, T0, T0 + timedelta(seconds=61), CatchUpPolicy.SKIP).ticks == []


def test_a_schedule_not_yet_due_plans_nothing() -> None:
    """A due time in the future starts nothing and keeps the due time."""
    trigger = Trigger(interval_seconds=4)
    plan = plan_ticks(trigger, T0 + timedelta(seconds=4), T0, CatchUpPolicy.RUN_ONCE)
    assert plan.ticks == []
    assert plan.next_fire_at == T0 + timedelta(seconds=4)


def test_cron_years_behind_jumps_to_the_latest_tick() -> None:
    """Past the scan bound, `run_once` still runs the latest tick and resumes after it."""
    trigger = Trigger(cron="* * * * *")
    now = T0 + timedelta(days=400, seconds=30)
    plan = plan_ticks(trigger, T0, now, CatchUpPolicy.RUN_ONCE)
    assert plan.ticks == [T0 + timedelta(days=400)]
    assert plan.next_fire_at == T0 + timedelta(days=400, minutes=1)
