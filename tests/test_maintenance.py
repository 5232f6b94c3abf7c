"""Maintenance windows: their syntax, their arithmetic (midnight, DST), what
they hold back and what operators hear when they end, on the pure core, under
the local AWS, and in backtest's event time."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings

from telemetry import actions, backtest, handler
from telemetry.adapters.influxdb import InfluxRecords
from telemetry.adapters.timestream import alert_record
from telemetry.core.alerts import (
    AlertState,
    Severity,
    Silence,
    StateKey,
    Status,
    Transition,
    evaluate,
)
from telemetry.core.connectivity import Connection, Presence, sweep_device
from telemetry.core.maintenance import Maintenance, Window, WindowError, parse_every
from telemetry.core.messages import Reading, iso_utc
from telemetry.core.mirror import mirror_entries
from telemetry.core.notify import admit
from telemetry.core.operators import (
    apply_action,
    finalize,
    key_view,
    operator_due_ms,
    parse_action,
    timers,
)
from telemetry.core.rules import (
    RuleFileError,
    RuleSet,
    compiled_rule_set,
    compiled_rules_text,
    load_rules,
    parse_rule_document,
)
from telemetry.core.silence import sweep as sweep_silences
from telemetry.local import alerts_cli
from tests.localaws import LocalAws, local_stack, message
from tests.strategies import every_texts, recurring_windows, window_instants

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# Sunday 6 December 2026; Europe/Paris is UTC+1: `SUN 02:00-04:00` is 01:00Z to 03:00Z.
WINDOW_START = at("2026-12-06T01:00:00+00:00")
WINDOW_END = at("2026-12-06T03:00:00+00:00")
RULES_TEXT = """
rules:
  - name: temperature-high
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    hysteresis: 2
    repeat: 30m
  - name: pressure-silent
    match: {type: pressure}
    nodata: 10m
  - name: line-offline
    match: {deviceId: "line3-*"}
    offline: 5m
maintenance:
  - name: line-3-weekly
    match: {deviceId: "line3-*"}
    every: "SUN 02:00-04:00"
    timezone: Europe/Paris
  - name: boiler-service
    match: {deviceId: "boiler-7"}
    from: "2026-12-20T08:00:00Z"
    to: "2026-12-20T12:00:00Z"
"""


def rule_set(text: str = RULES_TEXT) -> RuleSet:
    doc = parse_rule_document(text, "maintenance.yaml")
    return RuleSet(doc.rules, maintenance=Maintenance(doc.maintenance))


RULES = rule_set()
LINE = "line3-pump"
HOT: StateKey = ("temp-1", "temperature-high")


def window(every: str, timezone: str = "UTC", name: str = "w") -> Window:
    days, start, end = parse_every(every)
    return Window(name, (), days, start, end, timezone)


def iso(ms: int | None) -> str | None:
    return None if ms is None else iso_utc(ms).replace(".000Z", "Z")


def occurrence(w: Window, text: str) -> tuple[str | None, str | None]:
    found = w.covering(at(text))
    return (None, None) if found is None else (iso(found[0]), iso(found[1]))


# ---------------------------------------------------------------- syntax


@pytest.mark.parametrize(
    ("every", "days", "start", "end"),
    [
        ("SUN 02:00-04:00", {6}, 120, 240),
        ("MON-FRI 22:00-02:00", {0, 1, 2, 3, 4}, 1320, 120),
        ("FRI-MON 01:00-02:00", {4, 5, 6, 0}, 60, 120),
        ("SAT,SUN 00:00-24:00", {5, 6}, 0, 1440),
        ("MON,WED-FRI 12:00-13:30", {0, 2, 3, 4}, 720, 810),
        ("* 03:00-03:30", set(range(7)), 180, 210),
        ("sun 02:00-04:00", {6}, 120, 240),
    ],
)
def test_every_takes_days_lists_ranges_and_a_time_range(
    every: str, days: set[int], start: int, end: int
) -> None:
    # Given an `every` as operators write it
    # When it is parsed
    parsed = parse_every(every)

    # Then it means those weekdays (Monday 0) and that range in minutes
    assert parsed == (frozenset(days), start, end)


@pytest.mark.parametrize(
    ("every", "words"),
    [
        ("SUN 04:00-04:00", "04:00-04:00 is empty: it never occurs"),
        ("SUX 02:00-04:00", "'SUX' is not a day"),
        ("SUN 25:00-26:00", "'25:00' is not a time of day"),
        ("SUN 02:00", "must be days and a time range"),
        ("02:00-04:00", "must be days and a time range"),
        ("SUN 24:00-02:00", "cannot start at 24:00"),
        ("SUN 02:00-24:30", "'24:30' is not a time of day"),
        ("SAT,,SUN 02:00-04:00", "an empty day in the list"),
    ],
)
def test_a_malformed_every_is_refused_in_words(every: str, words: str) -> None:
    # Given a malformed `every`
    # When it is parsed
    with pytest.raises(WindowError) as caught:
        parse_every(every)

    # Then the problem says what is wrong, naming the field
    assert caught.value.field == "every"
    assert words in str(caught.value)


def test_the_contract_example_loads_and_survives_the_compiled_cache() -> None:
    # Given the issue's example
    # When it is loaded, compiled and read back
    text = compiled_rules_text(RULES, "digest")
    read = compiled_rule_set(text, "digest")

    # Then both windows are there, equal, value for value
    assert read is not None
    assert read.maintenance.windows == RULES.maintenance.windows
    weekly, boiler = read.maintenance.windows
    assert (weekly.name, weekly.timezone, weekly.days) == (
        "line-3-weekly",
        "Europe/Paris",
        frozenset({6}),
    )
    assert (boiler.from_ms, boiler.to_ms) == (
        at("2026-12-20T08:00:00+00:00"),
        at("2026-12-20T12:00:00+00:00"),
    )


def test_a_rule_set_without_windows_compiles_as_before() -> None:
    # Given rules with no maintenance section
    plain = rule_set("rules:\n  - name: t\n    above: {warning: 1}\n")

    # When compiled
    payload = json.loads(compiled_rules_text(plain, "d").splitlines()[1])

    # Then the compiled payload has no maintenance key (older caches stay byte-identical)
    assert "maintenance" not in payload


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"every": "SUN 04:00-04:00"}, "every: 04:00-04:00 is empty: it never occurs"),
        (
            {"every": "SUN 02:00-04:00", "timezone": "Europe/Pariss"},
            "timezone: 'Europe/Pariss' is not an IANA time zone name",
        ),
        (
            {"from": "2026-12-20T12:00:00Z", "to": "2026-12-20T08:00:00Z"},
            "to: must come after from: this window never occurs",
        ),
        (
            {"from": "2026-12-20T12:00:00Z", "to": "2026-12-20T12:00:00Z"},
            "to: must come after from",
        ),
        ({"from": "2026-12-20T12:00:00Z"}, "to: a one-off window needs both"),
        ({"from": "next tuesday", "to": "2026-12-20T12:00:00Z"}, "from: must be a date and time"),
        (
            {"every": "SUN 02:00-04:00", "from": "2026-12-20T12:00:00Z"},
            "every: a window is either recurring (every) or one-off (from, to)",
        ),
        ({}, "every: needs every"),
        (
            {"from": "2026-12-20T08:00:00Z", "to": "2026-12-20T12:00:00Z", "timezone": "UTC"},
            "timezone: only a recurring window (every) takes one",
        ),
        ({"every": "SUN 02:00-04:00", "evry": 1}, "evry: not a setting here"),
        ({"every": "SUN 02:00-04:00", "match": {"device": "x"}}, "match.device: not a setting"),
    ],
)
def test_a_bad_window_is_a_rule_file_error_in_the_writers_words(
    entry: dict[str, Any], problem: str
) -> None:
    # Given a rule file with one bad window
    text = json.dumps({"rules": [{"name": "t", "above": {"warning": 1}}]})
    document = json.loads(text) | {"maintenance": [{"name": "bad", **entry}]}

    # When it is checked
    with pytest.raises(RuleFileError) as caught:
        parse_rule_document(json.dumps(document), "m.yaml")

    # Then the problem names the file, the window and the field
    (found,) = caught.value.problems
    assert found.startswith("m.yaml: maintenance 'bad': ")
    assert problem in found


def test_window_names_are_unique_across_the_files_of_a_set(tmp_path: Path) -> None:
    # Given two files defining a window of the same name
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(
            "rules: []\nmaintenance:\n  - name: twice\n    every: '* 01:00-02:00'\n"
        )
    (tmp_path / "c.yaml").write_text("rules:\n  - name: t\n    above: {warning: 1}\n")

    # When the set is loaded
    with pytest.raises(RuleFileError) as caught:
        load_rules(tmp_path)

    # Then the second is refused, pointing at the first
    assert any("maintenance 'twice': name: duplicate" in p for p in caught.value.problems)


def test_rules_check_refuses_a_one_off_window_that_has_ended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a rule file whose one-off window ended in 2020
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - name: t\n    above: {warning: 1}\nmaintenance:\n  - name: old\n"
        "    from: '2020-12-20T08:00:00Z'\n    to: '2020-12-20T12:00:00Z'\n"
    )
    from telemetry.cli import main

    # When `telemetry rules check` runs
    status = main(["rules", "check", str(path)])

    # Then it fails with one line saying the window never occurs again
    assert status == 1
    err = capsys.readouterr().err
    assert "maintenance 'old': to: the window ended at 2020-12-20T12:00:00Z" in err
    assert "never occurs again" in err


def test_the_json_schema_describes_a_window() -> None:
    # Given the rule file schema
    from telemetry.core.rules import rule_file_schema

    schema = rule_file_schema()

    # When its maintenance entry is inspected
    spec = schema["$defs"]["MaintenanceSpec"]

    # Then it is closed, with every/from/to/timezone, one form or the other
    assert spec["additionalProperties"] is False
    assert set(spec["properties"]) == {
        "name",
        "description",
        "match",
        "every",
        "timezone",
        "from",
        "to",
    }
    assert spec["oneOf"] == [{"required": ["every"]}, {"required": ["from", "to"]}]
    assert schema["properties"]["maintenance"]["type"] == "array"


@given(every=every_texts())
def test_any_every_the_schema_pattern_accepts_the_loader_accepts(
    every: tuple[str, frozenset[int], int, int],
) -> None:
    # Given an `every` in capitals, matching the schema's pattern
    import re

    from telemetry.core.rule_specs import EVERY_PATTERN

    text = every[0].upper()

    # When both judge it
    # Then both accept it, and the loader reads the days and times it says
    assert re.match(EVERY_PATTERN, text)
    assert parse_every(text) == every[1:]


# ---------------------------------------------------------------- arithmetic


def test_a_range_that_crosses_midnight_belongs_to_the_day_it_starts() -> None:
    # Given Sunday 22:00 to 02:00 in UTC
    w = window("SUN 22:00-02:00")

    # When instants around it are judged
    # Then Monday 01:00 is inside (Sunday's occurrence), Sunday 01:00 is not
    assert occurrence(w, "2026-12-07T01:00:00+00:00") == (
        "2026-12-06T22:00:00Z",
        "2026-12-07T02:00:00Z",
    )
    assert occurrence(w, "2026-12-06T01:00:00+00:00") == (None, None)
    assert occurrence(w, "2026-12-07T02:00:00+00:00") == (None, None)
    assert occurrence(w, "2026-12-06T21:59:59+00:00") == (None, None)


def test_a_window_covers_its_start_not_its_end() -> None:
    w = window("SUN 02:00-04:00", "Europe/Paris")
    assert w.covering(WINDOW_START) == (WINDOW_START, WINDOW_END)
    assert w.covering(WINDOW_END - 1) == (WINDOW_START, WINDOW_END)
    assert w.covering(WINDOW_END) is None
    assert w.covering(WINDOW_START - 1) is None


def test_on_the_spring_forward_sunday_the_skipped_hour_shortens_the_window() -> None:
    # Given SUN 02:00-04:00 in Paris, and 29 March 2026 when 02:00 CET jumps to 03:00 CEST
    w = window("SUN 02:00-04:00", "Europe/Paris")

    # When that Sunday is judged
    # Then the window runs from the jump (01:00Z, 03:00 CEST) to 04:00 CEST (02:00Z): one hour
    assert occurrence(w, "2026-03-29T01:30:00+00:00") == (
        "2026-03-29T01:00:00Z",
        "2026-03-29T02:00:00Z",
    )
    assert occurrence(w, "2026-03-29T00:59:00+00:00") == (None, None)
    # and the Sunday before and after keep their two hours, in CET then in CEST
    assert occurrence(w, "2026-03-22T01:30:00+00:00") == (
        "2026-03-22T01:00:00Z",
        "2026-03-22T03:00:00Z",
    )
    assert occurrence(w, "2026-04-05T00:30:00+00:00") == (
        "2026-04-05T00:00:00Z",
        "2026-04-05T02:00:00Z",
    )


def test_on_the_fall_back_sunday_the_repeated_hour_lengthens_the_window() -> None:
    # Given SUN 02:00-04:00 in Paris, and 25 October 2026 when 03:00 CEST falls back to 02:00 CET
    w = window("SUN 02:00-04:00", "Europe/Paris")

    # When that Sunday is judged
    # Then the window starts at the first 02:00 (CEST, 00:00Z) and ends at 04:00 CET (03:00Z)
    assert occurrence(w, "2026-10-25T02:30:00+00:00") == (
        "2026-10-25T00:00:00Z",
        "2026-10-25T03:00:00Z",
    )


def test_a_range_inside_the_skipped_hour_does_not_occur_that_day() -> None:
    # Given 02:30-03:00 in Paris: 02:30 does not exist on 29 March 2026
    w = window("SUN 02:30-03:00", "Europe/Paris")

    # When that day is judged, and the week after
    # Then it does not occur that day (03:00 CEST is before 02:30 read as CET), but does next week
    assert w.covering(at("2026-03-29T01:15:00+00:00")) is None
    assert w.covering(at("2026-03-29T00:45:00+00:00")) is None
    assert occurrence(w, "2026-04-05T00:45:00+00:00") == (
        "2026-04-05T00:30:00Z",
        "2026-04-05T01:00:00Z",
    )


def test_a_midnight_crossing_range_over_a_dst_change_keeps_its_wall_clock_ends() -> None:
    # Given SAT 23:00-03:00 in Paris, across the night of the spring change
    w = window("SAT 23:00-03:00", "Europe/Paris")

    # When that night is judged
    # Then it runs 23:00 CET (22:00Z) to 03:00 CEST (01:00Z): three hours
    assert occurrence(w, "2026-03-29T00:30:00+00:00") == (
        "2026-03-28T22:00:00Z",
        "2026-03-29T01:00:00Z",
    )


def test_a_one_off_window_covers_from_to_to() -> None:
    boiler = RULES.maintenance.windows[1]
    assert boiler.covering(at("2026-12-20T08:00:00+00:00")) is not None
    assert boiler.covering(at("2026-12-20T11:59:59+00:00")) is not None
    assert boiler.covering(at("2026-12-20T12:00:00+00:00")) is None
    assert boiler.covering(at("2026-12-20T07:59:59+00:00")) is None


@settings(max_examples=300)
@given(w=recurring_windows(), t=window_instants())
def test_an_occurrence_covering_an_instant_holds_it_and_is_a_sane_length(w: Window, t: int) -> None:
    # Given any recurring window and instant
    # When the occurrence covering it is found
    found = w.covering(t)

    # Then it holds the instant, lasts more than nothing and at most a day and a DST hour,
    # and the key counts from no earlier than its end
    if found is not None:
        start, end = found
        assert start <= t < end
        assert 0 < end - start <= DAY + HOUR
        counts = Maintenance([w]).counts_from("d", "s", None, None, t)
        assert counts is not None
        assert counts >= end
    else:
        counts = Maintenance([w]).counts_from("d", "s", None, None, t)
        assert counts is None or counts <= t


@settings(max_examples=300)
@given(w=recurring_windows(), t=window_instants())
def test_a_valid_recurring_window_always_comes_round_within_a_week(w: Window, t: int) -> None:
    # Given any valid recurring window
    # When the next occurrence after any instant is looked for
    start = w.next_start(t)

    # Then there is one within eight days (no valid range never occurs)
    assert start is not None
    assert t < start <= t + 8 * DAY


@settings(max_examples=300)
@given(every=every_texts(), t=window_instants())
def test_in_utc_a_window_covers_exactly_the_minutes_its_text_says(
    every: tuple[str, frozenset[int], int, int], t: int
) -> None:
    # Given a window in UTC, and the same rule by plain arithmetic
    text, days, start, end = every
    w = window(text)
    moment = datetime.fromtimestamp(t / 1000, UTC)
    minute = moment.hour * 60 + moment.minute + (moment.second * 1000 + t % 1000) / 60_000
    today, yesterday = moment.weekday(), (moment.weekday() - 1) % 7
    if end > start:
        expected = today in days and start <= minute < end
    else:  # crosses midnight: today's evening part, or yesterday's morning part
        expected = (today in days and minute >= start) or (yesterday in days and minute < end)

    # When the window judges it
    # Then both agree
    assert (w.covering(t) is not None) == expected


@settings(max_examples=300)
@given(w=recurring_windows(), t=window_instants())
def test_a_window_starts_when_the_local_clock_shows_its_start(w: Window, t: int) -> None:
    # Given an occurrence that starts away from any clock change
    found = w.covering(t)
    if found is None:
        return
    zone = ZoneInfo(w.timezone)
    start = datetime.fromtimestamp(found[0] / 1000, UTC)
    offsets = {(start + timedelta(hours=h)).astimezone(zone).utcoffset() for h in (-26, 0, 26)}
    if len(offsets) != 1:
        return

    # When its start is read on the local clock
    local = start.astimezone(zone)

    # Then it shows the start time of the text, on one of its days
    assert local.hour * 60 + local.minute == w.start_min
    assert w.days is not None
    assert local.weekday() in w.days


# ---------------------------------------------------------------- the lifecycle, pure


def reading(value: float, t: int, device: str = LINE, sensor: str = "temp-1") -> Reading:
    kind = "temperature" if sensor.startswith("temp") else "pressure"
    return Reading(device, sensor, value, t, kind)


def feed(
    state: dict[StateKey, AlertState], value: float, t: int, device: str = LINE
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    done = finalize(evaluate([reading(value, t, device)], state, RULES, t), RULES, t)
    return done.state, done.transitions


def tick(
    state: dict[StateKey, AlertState], t: int, device: str = LINE
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    done = finalize(timers(device, state, RULES, t), RULES, t)
    return done.state, done.transitions


def published(transitions: list[Transition]) -> list[tuple[str, str, str]]:
    return [
        (t.status.value, t.previous_severity.name, t.severity.name)
        for t in transitions
        if not t.muted
    ]


def test_inside_a_window_changes_are_muted_and_its_end_reports_what_is_still_true() -> None:
    # Given a quiet pump on line 3
    state, _ = feed({}, 70, WINDOW_START - 10 * MINUTE)

    # When it raises, then escalates inside the window, and the sweep runs at its end
    state, raised = feed(state, 80, WINDOW_START + 10 * MINUTE)
    state, escalated = feed(state, 95, WINDOW_START + 20 * MINUTE)
    held_state = state
    state, at_end = tick(state, WINDOW_END)

    # Then both changes were muted, naming the window; the key said when it ends; the
    # shadow entry named it; and the end brought one message: RAISED, OK to CRITICAL
    assert [(t.status, t.muted, t.maintenance, t.suppressed) for t in raised + escalated] == [
        (Status.RAISED, True, "line-3-weekly", "maintenance"),
        (Status.ESCALATED, True, "line-3-weekly", "maintenance"),
    ]
    assert operator_due_ms(held_state) == WINDOW_END
    (entry,) = mirror_entries(held_state)
    assert entry[1]["maintenance"] == "line-3-weekly"
    assert published(at_end) == [("RAISED", "OK", "CRITICAL")]
    assert at_end[0].alert_id == raised[0].alert_id
    assert state[HOT].maintenance is None
    assert state[HOT].heard is None
    # and the next sweep sends nothing more
    assert tick(state, WINDOW_END + MINUTE)[1] == []


def test_a_key_that_raised_and_resolved_inside_the_window_sends_nothing() -> None:
    # Given a quiet pump
    state, _ = feed({}, 70, WINDOW_START - 10 * MINUTE)

    # When it raises and resolves inside the window, and the sweep runs at its end
    state, raised = feed(state, 95, WINDOW_START + 10 * MINUTE)
    state, resolved = feed(state, 60, WINDOW_START + 20 * MINUTE)
    state, at_end = tick(state, WINDOW_END)

    # Then everything was muted, and its end sends nothing
    assert [t.muted for t in raised + resolved] == [True, True]
    assert at_end == []
    assert state[HOT].maintenance is None


def test_an_alert_raised_before_the_window_and_resolved_inside_is_resolved_at_its_end() -> None:
    # Given a warning operators heard of before the window
    state, before = feed({}, 80, WINDOW_START - 10 * MINUTE)
    assert published(before) == [("RAISED", "OK", "WARNING")]

    # When it resolves inside the window, and the window ends
    state, resolved = feed(state, 60, WINDOW_START + 10 * MINUTE)
    state, at_end = tick(state, WINDOW_END)

    # Then the resolution is muted, and the end says RESOLVED, of the same episode
    assert published(resolved) == []
    assert published(at_end) == [("RESOLVED", "WARNING", "OK")]
    assert at_end[0].alert_id == before[0].alert_id


def test_a_device_the_window_does_not_match_is_published_as_usual() -> None:
    state, raised = feed({}, 95, WINDOW_START + 10 * MINUTE, device="pump-17")
    assert published(raised) == [("RAISED", "OK", "CRITICAL")]
    assert state[HOT].maintenance is None


def test_operators_actions_are_published_inside_a_window() -> None:
    # Given a warning raised before the window
    state, _ = feed({}, 80, WINDOW_START - 10 * MINUTE)

    # When an operator acknowledges it inside the window
    now = WINDOW_START + 5 * MINUTE
    raw = {
        "action": "acknowledge",
        "deviceId": LINE,
        "sensorId": "temp-1",
        "rule": "temperature-high",
        "by": "maria",
    }
    outcome = apply_action(LINE, state, parse_action(raw, now), RULES, now)
    done = finalize(outcome.evaluation, RULES, now)

    # Then the acknowledgement is published
    assert published(done.transitions) == [("ACKNOWLEDGED", "WARNING", "WARNING")]


def test_a_reminder_due_inside_a_window_waits_for_its_end() -> None:
    # Given an unacknowledged warning (repeat 30m) raised 20 minutes before the window
    state, _ = feed({}, 80, WINDOW_START - 20 * MINUTE)

    # When the sweep runs when its reminder is due, inside the window, then at its end
    state, inside = tick(state, WINDOW_START + 10 * MINUTE)
    due = operator_due_ms(state)
    state, at_end = tick(state, WINDOW_END)

    # Then no reminder inside (none written to history either); it comes at the window's end
    assert inside == []
    assert due == WINDOW_END
    assert published(at_end) == [("REMINDER", "WARNING", "WARNING")]


def test_a_snooze_ending_inside_a_window_leaves_the_catch_up_to_the_window() -> None:
    # Given a warning snoozed until the middle of the window
    state, _ = feed({}, 80, WINDOW_START - 20 * MINUTE)
    now = WINDOW_START - 10 * MINUTE
    raw = {
        "action": "snooze",
        "deviceId": LINE,
        "sensorId": "temp-1",
        "rule": "temperature-high",
        "by": "maria",
        "until": iso_utc(WINDOW_START + HOUR),
    }
    state = finalize(
        apply_action(LINE, state, parse_action(raw, now), RULES, now).evaluation, RULES, now
    ).state

    # When it escalates inside the window, the snooze ends, then the window ends
    state, escalated = feed(state, 95, WINDOW_START + 10 * MINUTE)
    state, snooze_end = tick(state, WINDOW_START + HOUR)
    state, window_end = tick(state, WINDOW_END)

    # Then nothing at the snooze's end; one ESCALATED, WARNING to CRITICAL, at the window's
    assert published(escalated) == []
    assert published(snooze_end) == []
    assert published(window_end) == [("ESCALATED", "WARNING", "CRITICAL")]


def test_muted_transitions_do_not_count_against_the_notification_budget() -> None:
    # Given a budget of one message per window and transitions a window muted
    from telemetry.core.notify import GroupState
    from telemetry.core.rules import Notifications

    _, muted = feed({}, 95, WINDOW_START + 10 * MINUTE)
    _, loud = feed({}, 95, WINDOW_START + 10 * MINUTE, device="pump-17")
    policy = Notifications(max_per_window=1)

    # When the group admits them, the muted first
    admission = admit(GroupState(), [*muted, *loud], policy, WINDOW_START + 10 * MINUTE)

    # Then the unmuted one is published within the budget; the muted neither sent nor held
    assert [t.device_id for t in admission.publish] == ["pump-17"]
    assert admission.hold == ()


def silent_sensor(seen: int) -> dict[StateKey, AlertState]:
    silence = Silence(seen, 10 * MINUTE, 1.0, "pressure")
    return {("press-1", "pressure-silent"): AlertState(silence=silence)}


def test_no_data_does_not_start_counting_until_the_window_ends() -> None:
    # Given a pressure sensor last heard 5 minutes before the window (nodata 10m)
    state = silent_sensor(WINDOW_START - 5 * MINUTE)

    # When the sweep runs inside the window, then just before and after 10 minutes past its end
    inside = sweep_silences(LINE, state, RULES, WINDOW_START + 30 * MINUTE)
    before = sweep_silences(LINE, inside.state, RULES, WINDOW_END + 9 * MINUTE)
    after = sweep_silences(LINE, before.state, RULES, WINDOW_END + 10 * MINUTE)

    # Then nothing is raised inside, the sensor's next look is a window after the end,
    # and it is raised then
    assert inside.transitions == []
    silence = inside.state[("press-1", "pressure-silent")].silence
    assert silence is not None
    assert silence.due_ms == WINDOW_END + 10 * MINUTE
    assert before.transitions == []
    assert [(t.status, t.severity) for t in after.transitions] == [
        (Status.RAISED, Severity.WARNING)
    ]


def test_a_sweep_that_first_looks_after_the_window_still_counts_from_its_end() -> None:
    # Given a sensor silent since well before the window, never swept meanwhile
    state = silent_sensor(WINDOW_START - 5 * MINUTE)

    # When the first sweep comes 5 minutes after the window's end
    swept = sweep_silences(LINE, state, RULES, WINDOW_END + 5 * MINUTE)

    # Then it is not raised yet: its window counts from the end of the maintenance
    assert swept.transitions == []
    assert sweep_silences(LINE, swept.state, RULES, WINDOW_END + 10 * MINUTE).transitions


def test_a_device_the_window_does_not_match_goes_silent_as_usual() -> None:
    state = silent_sensor(WINDOW_START - 5 * MINUTE)
    swept = sweep_silences("pump-17", state, RULES, WINDOW_START + 30 * MINUTE)
    assert [t.status for t in swept.transitions] == [Status.RAISED]


def test_offline_alerts_do_not_start_counting_until_the_window_ends() -> None:
    # Given a line 3 device disconnected 2 minutes before the window (offline 5m)
    presence = Presence(Connection(1, False, WINDOW_START - 2 * MINUTE))

    # When the sweep runs inside the window, then 4 and 5 minutes after its end
    inside = sweep_device(LINE, {}, presence, RULES, WINDOW_START + 30 * MINUTE)
    early = sweep_device(LINE, {}, presence, RULES, WINDOW_END + 4 * MINUTE)
    due = sweep_device(LINE, {}, presence, RULES, WINDOW_END + 5 * MINUTE)

    # Then it is raised only a whole offline window after the maintenance ended
    assert inside.evaluation.transitions == []
    assert early.evaluation.transitions == []
    assert [t.status for t in due.evaluation.transitions] == [Status.RAISED]


def test_the_offline_check_is_put_off_to_the_windows_end() -> None:
    # Given a device disconnected just before the window
    from telemetry.core.connectivity import offline_check_ms

    presence = Presence(Connection(1, False, WINDOW_START - 2 * MINUTE))

    # When its next check is planned from inside the window
    check = offline_check_ms(LINE, {}, presence, RULES, WINDOW_START + 10 * MINUTE)

    # Then it is a whole offline window after the maintenance ends
    assert check == WINDOW_END + 5 * MINUTE


def test_a_state_held_by_a_window_survives_its_json_round_trip() -> None:
    # Given a key held by a window, with its no-data count put off
    state, _ = feed({}, 95, WINDOW_START + 10 * MINUTE)
    swept = sweep_silences(
        LINE, silent_sensor(WINDOW_START - 5 * MINUTE), RULES, WINDOW_START + MINUTE
    )
    state |= swept.state

    # When written and read back
    from telemetry.core.alerts import state_from_json, state_to_json

    again = state_from_json(json.loads(json.dumps(state_to_json(state))))

    # Then nothing is lost
    assert again == state
    assert again[HOT].maintenance is not None


def test_a_held_transition_round_trips_its_wire_form() -> None:
    _, (raised,) = feed({}, 95, WINDOW_START + 10 * MINUTE)
    wire = raised.to_json()
    assert wire["maintenance"] == "line-3-weekly"
    assert wire["suppressed"] == "maintenance"
    assert Transition.from_json(wire) == raised


def test_the_alert_history_names_the_window_that_held_a_change() -> None:
    # Given a change a window held back, and one it did not
    _, (held,) = feed({}, 95, WINDOW_START + 10 * MINUTE)
    _, (free,) = feed({}, 95, WINDOW_END + 10 * MINUTE)

    # When both are made into Timestream records and InfluxDB points
    def measures(t: Transition) -> dict[str, str]:
        return {m["Name"]: m["Value"] for m in alert_record(t)["MeasureValues"]}

    # Then the held one says it was held and by which window, beside `suppressed`
    assert measures(held)["suppressed"] == "maintenance"
    assert measures(held)["maintenance"] == "line-3-weekly"
    line = InfluxRecords().alert(held).line
    assert 'suppressed="maintenance"' in line
    assert 'maintenance="line-3-weekly"' in line
    # and the free one says neither
    assert "maintenance" not in measures(free)
    assert "maintenance" not in InfluxRecords().alert(free).line


def test_evaluation_without_windows_is_untouched() -> None:
    # Given rules with no maintenance section
    plain = rule_set(RULES_TEXT.split("maintenance:", maxsplit=1)[0])
    done = finalize(evaluate([reading(95, WINDOW_START)], {}, plain, WINDOW_START), plain, 0)
    assert [t.muted for t in done.transitions] == [False]


# ---------------------------------------------------------------- under the local AWS


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[LocalAws]:
    (tmp_path / "rules.yaml").write_text(RULES_TEXT)
    with local_stack([LINE, "pump-17"], WINDOW_START) as stack:
        stack.rules_path = str(tmp_path / "rules.yaml")  # type: ignore[attr-defined]
        yield stack


def send(aws: LocalAws, rt: handler.Runtime, device: str, t: int, *data: tuple[str, float]) -> None:
    aws.now_ms = t
    handler.handle(message(device, t, *data), rt)


def sweep(aws: LocalAws, rt: handler.Runtime, t: int) -> None:
    aws.now_ms = t
    event = {"detail-type": "Scheduled Event", "source": "aws.events", "time": iso_utc(t)}
    handler.handle(event, rt)


def history(aws: LocalAws) -> list[str]:
    return [
        d["Value"] for r in aws.records("alert") for d in r["Dimensions"] if d["Name"] == "status"
    ]


def test_the_function_holds_back_a_window_and_catches_up_once_at_its_end(
    aws: LocalAws,
) -> None:
    # Given the function with the line 3 window, a quiet line 3 pump and a pump elsewhere
    rt, _ = aws.runtime(RULES_PATH=aws.rules_path)  # type: ignore[attr-defined]
    send(aws, rt, LINE, WINDOW_START - 10 * MINUTE, ("temp-1", 70))

    # When both get hot inside the window, the line 3 pump escalates, sweeps run inside
    # and after the window's end
    send(aws, rt, LINE, WINDOW_START + 10 * MINUTE, ("temp-1", 80))
    send(aws, rt, "pump-17", WINDOW_START + 10 * MINUTE, ("temp-1", 80))
    send(aws, rt, LINE, WINDOW_START + 20 * MINUTE, ("temp-1", 95))
    inside = aws.alerts()
    shadow = aws.shadow(LINE)["alerts"]["temp-1"]
    sweep(aws, rt, WINDOW_START + HOUR)
    still_inside = aws.alerts()
    sweep(aws, rt, WINDOW_END + 30_000)
    at_end = aws.alerts()
    sweep(aws, rt, WINDOW_END + 2 * MINUTE)

    # Then only the other pump was published inside; line 3's changes reached the history
    # and the shadow (which names the window); the first sweep after the end sent one
    # RAISED (OK to CRITICAL) with the episode's alertId, and nothing after that
    assert [(a["deviceId"], a["status"]) for a in inside] == [("pump-17", "RAISED")]
    assert history(aws)[:3] == ["RAISED", "RAISED", "ESCALATED"]
    assert shadow["maintenance"] == "line-3-weekly"
    assert shadow["severity"] == "CRITICAL"
    assert [a for a in still_inside if a["deviceId"] == LINE] == []
    assert [
        (a["status"], a["previousSeverity"], a["severity"]) for a in at_end if a["deviceId"] == LINE
    ] == [("RAISED", "OK", "CRITICAL")]
    assert [a["alertId"] for a in at_end if a["deviceId"] == LINE] == [shadow["alertId"]]
    assert "maintenance" not in aws.shadow(LINE)["alerts"]["temp-1"]
    assert [a for a in aws.alerts() if a["deviceId"] == LINE] == []


def test_the_function_sends_nothing_for_a_raise_resolved_inside_the_window(
    aws: LocalAws,
) -> None:
    # Given the function and a quiet line 3 pump
    rt, _ = aws.runtime(RULES_PATH=aws.rules_path)  # type: ignore[attr-defined]
    send(aws, rt, LINE, WINDOW_START - 10 * MINUTE, ("temp-1", 70))

    # When it raises and resolves inside the window, and sweeps run to past its end
    send(aws, rt, LINE, WINDOW_START + 10 * MINUTE, ("temp-1", 95))
    send(aws, rt, LINE, WINDOW_START + 20 * MINUTE, ("temp-1", 60))
    sweep(aws, rt, WINDOW_END + 30_000)

    # Then operators received nothing; the history has both changes
    assert aws.alerts() == []
    assert history(aws) == ["RAISED", "RESOLVED"]


def test_the_function_holds_no_data_until_the_window_ends(aws: LocalAws) -> None:
    # Given a line 3 pressure sensor (nodata 10m) heard 5 minutes before the window
    rt, _ = aws.runtime(RULES_PATH=aws.rules_path)  # type: ignore[attr-defined]
    send(aws, rt, LINE, WINDOW_START - 5 * MINUTE, ("press-1", 3.0))

    # When it stays silent through the window, swept every half hour, then after the end
    for minutes in (15, 45, 75, 105):
        sweep(aws, rt, WINDOW_START + minutes * MINUTE)
    inside = history(aws)
    sweep(aws, rt, WINDOW_END + 5 * MINUTE)
    early = history(aws)
    sweep(aws, rt, WINDOW_END + 11 * MINUTE)

    # Then no no-data alert inside nor 5 minutes after; one, published, 10 after the end
    assert inside == []
    assert early == []
    (raised,) = aws.alerts()
    assert (raised["status"], raised["direction"]) == ("RAISED", "nodata")


def test_operators_actions_reach_operators_inside_a_window(aws: LocalAws) -> None:
    # Given a warning raised on line 3 before the window
    rt, _ = aws.runtime(RULES_PATH=aws.rules_path)  # type: ignore[attr-defined]
    send(aws, rt, LINE, WINDOW_START - 10 * MINUTE, ("temp-1", 80))
    aws.alerts()

    # When Maria acknowledges it inside the window
    aws.now_ms = WINDOW_START + 10 * MINUTE
    answer = actions.handle_action(
        {
            "action": "acknowledge",
            "deviceId": LINE,
            "sensorId": "temp-1",
            "rule": "temperature-high",
            "by": "maria",
        },
        rt,
    )

    # Then it is applied and published
    assert answer["applied"] is True
    assert [a["status"] for a in aws.alerts()] == ["ACKNOWLEDGED"]


def test_an_action_answer_and_alerts_list_show_the_window_holding_the_key(
    aws: LocalAws,
) -> None:
    # Given a warning raised on line 3 inside the window, so held back
    rt, _ = aws.runtime(RULES_PATH=aws.rules_path)  # type: ignore[attr-defined]
    send(aws, rt, LINE, WINDOW_START + 5 * MINUTE, ("temp-1", 80))

    # When Maria acknowledges it inside the window
    aws.now_ms = WINDOW_START + 10 * MINUTE
    answer = actions.handle_action(
        {
            "action": "acknowledge",
            "deviceId": LINE,
            "sensorId": "temp-1",
            "rule": "temperature-high",
            "by": "maria",
        },
        rt,
    )

    # Then the answer's state names the window and when it ends, as the shadow does
    hold = {"name": "line-3-weekly", "until": iso_utc(WINDOW_END)}
    assert answer["state"]["maintenance"] == hold
    assert aws.shadow(LINE)["alerts"]["temp-1"]["maintenance"] == "line-3-weekly"
    # and the CLI says so, on the action's line and in the list's `held` column
    said = f"maintenance: line-3-weekly until {iso_utc(WINDOW_END)}"
    assert said in alerts_cli._state_line(answer["state"])
    row = alerts_cli._row(answer["state"])
    assert row[-1] == "ack maria, maintenance: line-3-weekly to 2026-12-06T03:00Z"


def test_a_key_no_window_holds_shows_no_maintenance() -> None:
    state, _ = feed({}, 95, WINDOW_END + 10 * MINUTE)
    view = key_view(LINE, HOT, state[HOT])
    assert view["maintenance"] is None
    assert "maintenance" not in alerts_cli._state_line(view)
    assert "maintenance" not in alerts_cli._row(view)[-1]


# ---------------------------------------------------------------- backtest, in event time


def test_backtest_judges_windows_in_event_time() -> None:
    # Given a recorded history of a line 3 pump: hot inside the window, still hot after it,
    # and a second episode raised and resolved inside next week's window
    lines = [
        message(LINE, WINDOW_START - 10 * MINUTE, ("temp-1", 70)),
        message(LINE, WINDOW_START + 10 * MINUTE, ("temp-1", 80)),
        message(LINE, WINDOW_START + 20 * MINUTE, ("temp-1", 95)),
        message(LINE, WINDOW_END + 30 * MINUTE, ("temp-1", 96)),
        message(LINE, WINDOW_END + HOUR, ("temp-1", 60)),
        message(LINE, WINDOW_START + 7 * DAY + MINUTE, ("temp-1", 95)),
        message(LINE, WINDOW_START + 7 * DAY + 2 * MINUTE, ("temp-1", 60)),
        message(LINE, WINDOW_END + 7 * DAY + HOUR, ("temp-1", 61)),
    ]
    stdin = io.BytesIO("".join(json.dumps(m) + "\n" for m in lines).encode())

    # When it is replayed through the rules with the window
    result = backtest.run(["-"], RULES, order="event", stdin=stdin, on_bad_line=lambda _: None)

    # Then the changes inside the windows are listed muted with the window's name; the first
    # window's end reports RAISED CRITICAL once; the second window's end reports nothing;
    # the episodes are counted once each
    rows = [
        (iso_utc(t.time_ms)[:16], t.status.value, t.severity.name, t.maintenance, t.muted)
        for t in result.transitions
        if t.rule == "temperature-high"
    ]
    assert rows == [
        ("2026-12-06T01:10", "RAISED", "WARNING", "line-3-weekly", True),
        ("2026-12-06T01:20", "ESCALATED", "CRITICAL", "line-3-weekly", True),
        ("2026-12-06T03:00", "RAISED", "CRITICAL", None, False),
        ("2026-12-06T04:00", "RESOLVED", "OK", None, False),
        ("2026-12-13T01:01", "RAISED", "CRITICAL", "line-3-weekly", True),
        ("2026-12-13T01:02", "RESOLVED", "OK", "line-3-weekly", True),
    ]
    (summary,) = [
        s
        for s in backtest.summarize(result, RULES, flap_window_ms=5 * MINUTE)
        if s.rule == "temperature-high"
    ]
    assert summary.episodes == 2
