"""Operating a schedule, pure: cron nicknames, PATCH merging, backfill ranges and ticks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from treadle.domain.schedules import (
    MAX_BACKFILL_TICKS,
    Schedule,
    ScheduleInvalid,
    Trigger,
    backfill_ticks,
    next_fire,
    parse_backfill,
    parse_schedule,
    patched_spec,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)  # a Tuesday


@pytest.mark.parametrize(
    ("nickname", "expected"),
    [
        ("@hourly", datetime(2030, 1, 1, 13, 0, tzinfo=UTC)),
        ("@daily", datetime(2030, 1, 2, 0, 0, tzinfo=UTC)),
        ("@midnight", datetime(2030, 1, 2, 0, 0, tzinfo=UTC)),
        ("@weekly", datetime(2030, 1, 6, 0, 0, tzinfo=UTC)),
        ("@monthly", datetime(2030, 2, 1, 0, 0, tzinfo=UTC)),
        ("@yearly", datetime(2031, 1, 1, 0, 0, tzinfo=UTC)),
        ("@annually", datetime(2031, 1, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_cron_nicknames_are_accepted_and_fire_as_their_fields(
    nickname: str, expected: datetime
) -> None:
    """A nickname registers as written and fires when its five fields would."""
    _, trigger = parse_schedule({"name": "n", "workflow": "w", "cron": nickname})
    assert trigger.cron == nickname
    assert next_fire(trigger, T0) == expected


def test_an_unknown_nickname_is_refused_at_cron() -> None:
    """`@often` is no cron: the error names `cron` and lists the nicknames."""
    with pytest.raises(ScheduleInvalid) as caught:
        parse_schedule({"name": "n", "workflow": "w", "cron": "@often"})
    (issue,) = caught.value.issues
    assert issue.path == "cron"
    assert "@daily" in issue.message


def test_schedule_tags_are_validated_with_their_paths() -> None:
    """A schedule's tags follow the run tag rules, each problem at its path."""
    with pytest.raises(ScheduleInvalid) as caught:
        parse_schedule({"name": "n", "workflow": "w", "cron": "@daily", "tags": {"k": "v" * 201}})
    assert [i.path for i in caught.value.issues] == ["tags.k"]


def _stored(**fields: object) -> Schedule:
    values: dict[str, object] = {
        "id": "s1",
        "name": "n",
        "workflow": "w",
        "trigger": Trigger(interval_seconds=60),
        "next_fire_at": T0,
        "created_at": T0,
        **fields,
    }
    return Schedule(**values)  # type: ignore[arg-type]


def test_a_patch_with_cron_replaces_the_interval_and_keeps_the_rest() -> None:
    """`cron` over an interval schedule drops the interval; untouched fields stay."""
    merged = patched_spec(_stored(input={"a": 1}), {"cron": "@hourly"})
    spec, trigger = parse_schedule(merged)
    assert trigger == Trigger(cron="@hourly")
    assert spec.input == {"a": 1}
    back = patched_spec(_stored(trigger=Trigger(cron="@daily")), {"interval": "5m"})
    assert parse_schedule(back)[1] == Trigger(interval_seconds=300)


def test_a_patch_refuses_name_paused_and_unknown_fields_each_at_its_path() -> None:
    """What cannot change in place is a 422 naming each field."""
    with pytest.raises(ScheduleInvalid) as caught:
        patched_spec(_stored(), {"name": "x", "paused": True, "colour": "red"})
    assert [i.path for i in caught.value.issues] == ["colour", "name", "paused"]


def _window(start: datetime, end: datetime, **more: object) -> dict[str, object]:
    return {"start": start.isoformat(), "end": end.isoformat(), **more}


def test_a_backfill_walks_the_cron_ticks_in_its_half_open_range() -> None:
    """Hourly from 09:30 to 12:00: ticks 10:00 and 11:00 (12:00 is the end, excluded)."""
    trigger = Trigger(cron="@hourly")
    start, end = T0.replace(hour=9, minute=30), T0
    backfill = parse_backfill(_window(start, end, max_concurrent=5), trigger, T0)
    ticks, after = backfill_ticks(trigger, backfill, room=5)
    assert ticks == [T0.replace(hour=10), T0.replace(hour=11)]
    assert after is None
    first, rest = backfill_ticks(trigger, backfill, room=1)
    assert (first, rest) == ([T0.replace(hour=10)], T0.replace(hour=11))


def test_a_backfill_range_is_checked_with_paths() -> None:
    """End before start, in the future, too many ticks, or a naive time: each at its path."""
    trigger = Trigger(interval_seconds=1)

    def paths(data: dict[str, object]) -> list[str]:
        with pytest.raises(ScheduleInvalid) as caught:
            parse_backfill(data, trigger, T0)
        return [i.path for i in caught.value.issues]

    assert paths(_window(T0, T0 - timedelta(hours=1))) == ["end"]
    assert paths(_window(T0 - timedelta(hours=1), T0 + timedelta(seconds=1))) == ["end"]
    many = T0 - timedelta(seconds=MAX_BACKFILL_TICKS + 1)
    assert paths(_window(many, T0)) == ["end"]
    assert paths({"start": "2030-01-01T00:00:00", "end": T0.isoformat()}) == ["start"]
    assert paths(_window(T0 - timedelta(hours=1), T0, max_concurrent=0)) == ["max_concurrent"]
    assert paths({"start": T0.isoformat()}) == ["end"]
