"""Flapping: a chattering key reaches operators as one FLAPPING and one STABLE.

The core first (counting, the FLAPPING and the STABLE, per kind of alert,
retries and replays, operators' actions, the shadow's view), then its
bounds as properties, then what the adapters and the backtest make of it,
then the function end to end under moto.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from telemetry import actions, backtest, handler
from telemetry.adapters.influxdb import InfluxRecords
from telemetry.adapters.sns import attributes, subject
from telemetry.adapters.timestream import alert_record
from telemetry.core.alerts import (
    LEVEL_CHANGES,
    NODATA,
    AlertState,
    Evaluation,
    Severity,
    StateKey,
    Status,
    Transition,
    evaluate,
    quiet_oldest_first,
    state_from_json,
    state_to_json,
)
from telemetry.core.flapping import SUPPRESSED, kind_of, setting_for
from telemetry.core.flapping import due_ms as flapping_due_ms
from telemetry.core.messages import Reading, iso_utc
from telemetry.core.mirror import mirror_entries
from telemetry.core.operators import apply_action, finalize, parse_action, timers
from telemetry.core.rules import (
    DEVICE_THRESHOLD_RULE,
    Flapping,
    RuleSet,
    parse_rule_document,
    parse_rule_file,
)
from telemetry.core.silence import sweep
from telemetry.core.state import DeviceRecord, OutboxEntry
from tests.localaws import LocalAws, local_stack, message
from tests.strategies import chattering_histories

NOW = 1_764_237_600_000  # 2025-11-27T10:00:00Z
MINUTE = 60_000
DEVICE = "boiler-3"
RULES_TEXT = """
rules:
  - name: boiler-temp
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    nodata: 5m
    repeat: 30m
    flapping: {changes: 4, within: 10m}
"""
RULES = RuleSet(parse_rule_file(RULES_TEXT, "flapping.yaml"))
UNWATCHED = RuleSet(parse_rule_file(RULES_TEXT.replace("flapping:", "# flapping:"), "plain.yaml"))
KEY: StateKey = ("temp-1", "boiler-temp")
OK, WARN, CRIT = 70.0, 80.0, 95.0
CHATTER = (WARN, OK, CRIT, OK)
"""Four changes of level: RAISED WARNING, RESOLVED, RAISED CRITICAL, RESOLVED."""


def reading(value: float, at: int) -> Reading:
    return Reading(DEVICE, "temp-1", value, at, "temperature", "C", "boiler-room")


def feed(
    state: dict[StateKey, AlertState], value: float, at: int, rules: RuleSet = RULES
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    done = finalize(evaluate([reading(value, at)], state, rules, at), rules, at)
    return done.state, done.transitions


def swept(
    state: dict[StateKey, AlertState], at: int, rules: RuleSet = RULES
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    """What Pipeline.sweep decides for the device as of `at`."""
    done = finalize(sweep_decision(state, at, rules), rules, at)
    return done.state, done.transitions


def sweep_decision(state: dict[StateKey, AlertState], at: int, rules: RuleSet) -> Evaluation:
    silences = sweep(DEVICE, state, rules, at)
    timed = timers(DEVICE, silences.state, rules, at)
    return Evaluation(
        timed.state, [*silences.transitions, *timed.transitions], silences.changed or timed.changed
    )


def chatter(
    values: Sequence[float] = CHATTER, start: int = NOW, every: int = MINUTE
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    state: dict[StateKey, AlertState] = {}
    history: list[Transition] = []
    for i, value in enumerate(values):
        state, transitions = feed(state, value, start + i * every)
        history += transitions
    return state, history


def published(transitions: Sequence[Transition]) -> list[tuple[str, str]]:
    return [(t.status.value, t.severity.name) for t in transitions if not t.muted]


def changes_of(transitions: Sequence[Transition]) -> list[tuple[str, str, int]]:
    return [(t.status.value, t.severity.name, t.time_ms) for t in transitions if is_change(t)]


def is_change(t: Transition) -> bool:
    return t.status in LEVEL_CHANGES


def act(
    state: dict[StateKey, AlertState], kind: str, at: int, **extra: Any
) -> tuple[dict[StateKey, AlertState], list[Transition], str | None]:
    raw = {"action": kind, "deviceId": DEVICE, "sensorId": KEY[0], "rule": KEY[1], "by": "maria"}
    outcome = apply_action(DEVICE, state, parse_action(raw | extra, at), RULES, at)
    done = finalize(outcome.evaluation, RULES, at)
    return done.state, done.transitions, outcome.refusal


# ---------------------------------------------------------------- the core


def test_four_changes_in_ten_minutes_send_one_flapping_and_keep_every_change() -> None:
    # Given a rule with flapping {changes: 4, within: 10m}
    # When a sensor changes level four times within four minutes
    state, history = chatter()

    # Then the history holds the four changes, and operators get the first three and
    # one FLAPPING in place of the fourth
    assert changes_of(history) == [
        ("RAISED", "WARNING", NOW),
        ("RESOLVED", "OK", NOW + MINUTE),
        ("RAISED", "CRITICAL", NOW + 2 * MINUTE),
        ("RESOLVED", "OK", NOW + 3 * MINUTE),
    ]
    assert published(history) == [
        ("RAISED", "WARNING"),
        ("RESOLVED", "OK"),
        ("RAISED", "CRITICAL"),
        ("FLAPPING", "CRITICAL"),
    ]
    # and the FLAPPING carries the episode of the change it replaces, the most severe
    # level in the window, how many changes within which window, and no level crossed
    fourth, flapping = history[-2:]
    assert (fourth.muted, fourth.suppressed) == (True, SUPPRESSED)
    assert flapping.alert_id == fourth.alert_id == history[2].alert_id
    assert (flapping.changes, flapping.within_ms, flapping.threshold) == (4, 10 * MINUTE, None)
    assert flapping.time_ms == fourth.time_ms
    assert flapping.routing_severity is Severity.CRITICAL
    assert state[KEY].flapping

    # When it goes on changing: nothing more is published, all of it is history
    for i, value in enumerate((WARN, CRIT, OK), start=4):
        state, transitions = feed(state, value, NOW + i * MINUTE)
        assert transitions
        assert published(transitions) == []
        assert all(t.suppressed == SUPPRESSED for t in transitions)


def test_a_sweep_after_a_quiet_window_says_stable_where_the_key_is() -> None:
    # Given a key flapping since 10:03, last changed at 10:05 (RAISED WARNING)
    state, _ = chatter((*CHATTER, OK, WARN))
    assert state[KEY].flapping
    # Then the device is due for the sweep when the last change is 10 minutes old (or
    # sooner, for its no-data window)
    last_change = NOW + 5 * MINUTE
    assert flapping_due_ms(state) == last_change + 10 * MINUTE
    assert (DeviceRecord(DEVICE, state=state).due_ms() or 0) <= last_change + 10 * MINUTE

    # When the sweep runs a second before that: nothing
    _, transitions = swept(state, last_change + 10 * MINUTE - 1_000)
    assert [t.status for t in transitions if t.direction != NODATA] == []

    # When it runs after it (with no reading meanwhile)
    at = last_change + 12 * MINUTE
    state, transitions = swept(state, at)

    # Then one STABLE, published, says where the key is now: WARNING, the current
    # episode, timed when the quiet window ended and routed as its FLAPPING was
    (stable,) = [t for t in transitions if t.status is Status.STABLE]
    assert (stable.severity, stable.muted) == (Severity.WARNING, False)
    assert stable.alert_id == state[KEY].alert_id
    assert stable.time_ms == last_change + 10 * MINUTE
    assert stable.routing_severity is Severity.CRITICAL
    assert not state[KEY].flapping
    # and a retried (or later) sweep says nothing more
    _, again = swept(state, at)
    assert [t for t in again if t.status is Status.STABLE] == []


def test_a_stable_key_back_at_ok_says_stable_at_ok_with_its_last_episode() -> None:
    # Given a key flapping whose last change resolved its alert
    state, history = chatter()

    # When the sweep finds it quiet
    state, transitions = swept(state, NOW + 3 * MINUTE + 10 * MINUTE)

    # Then STABLE at OK, with the alertId of the last episode
    (stable,) = [t for t in transitions if t.status is Status.STABLE]
    assert (stable.severity, stable.alert_id) == (Severity.OK, history[-1].alert_id)
    assert subject(stable) == "[CRITICAL] boiler-3 temperature stable at OK (boiler-temp)"


def test_a_reading_after_the_quiet_window_says_stable_before_what_it_does() -> None:
    # Given a key flapping, back at OK since 10:03
    state, _ = chatter()

    # When, with no sweep meanwhile, a reading at 10:20 raises it again
    state, transitions = feed(state, WARN, NOW + 20 * MINUTE)

    # Then first STABLE at OK (when the window ended), then the RAISED, both published
    assert published(transitions) == [("STABLE", "OK"), ("RAISED", "WARNING")]
    assert transitions[0].time_ms == NOW + 13 * MINUTE
    assert not state[KEY].flapping
    # and the sweep has nothing left to say
    _, later = swept(state, NOW + 21 * MINUTE)
    assert [t for t in later if t.status is Status.STABLE] == []


def test_below_the_threshold_nothing_changes() -> None:
    # Given three changes within ten minutes, and four spread over more than ten
    _, three = chatter(CHATTER[:3])
    _, spread = chatter(CHATTER, every=4 * MINUTE)

    # Then every change is published as it is, and no FLAPPING
    assert published(three) == [("RAISED", "WARNING"), ("RESOLVED", "OK"), ("RAISED", "CRITICAL")]
    assert [t.status for t in spread] == [
        Status.RAISED,
        Status.RESOLVED,
        Status.RAISED,
        Status.RESOLVED,
    ]
    assert not any(t.muted for t in spread)


def test_hysteresis_and_for_apply_underneath_flapping() -> None:
    # Given a rule whose levels clear 3 degrees lower and need two readings
    rules = RuleSet(
        parse_rule_file(
            RULES_TEXT.replace("nodata: 5m", "hysteresis: 3\n    for: 2"), "underneath.yaml"
        )
    )
    # When the value wobbles around the level, one reading at a time
    state: dict[StateKey, AlertState] = {}
    history: list[Transition] = []
    for i, value in enumerate((76, 74, 76, 74, 76, 76, 74, 71, 76, 76)):
        state, transitions = feed(state, value, NOW + i * 10_000, rules)
        history += transitions

    # Then only the changes the state machine makes are counted: three, no FLAPPING
    assert published(history) == [("RAISED", "WARNING"), ("RESOLVED", "OK"), ("RAISED", "WARNING")]


def test_a_key_without_a_setting_keeps_no_watch() -> None:
    # Given the same rule without flapping
    state: dict[StateKey, AlertState] = {}
    history: list[Transition] = []
    for i, value in enumerate(CHATTER * 3):
        state, transitions = feed(state, value, NOW + i * MINUTE, UNWATCHED)
        history += transitions

    # Then every change is published and nothing is kept for flapping
    assert len(published(history)) == 12
    assert state[KEY].flaps == {}
    assert "flaps" not in state[KEY].to_json()


def test_the_notifications_default_applies_to_every_rule_and_a_rule_may_override_it() -> None:
    # Given a default of 3 changes in 5 minutes, and a rule of its own
    document = parse_rule_document(
        """
notifications:
  flapping: {changes: 3, within: 5m}
rules:
  - name: plain
    match: {type: temperature}
    above: {warning: 75}
  - name: own
    match: {type: pressure}
    above: {warning: 8}
    flapping: {changes: 10, within: 1h}
""",
        "defaults.yaml",
    )
    rules = RuleSet(document.rules, notifications=document.notifications)

    # Then each rule gets what applies to it, the implicit device-thresholds rule included
    assert setting_for(rules, "plain") == Flapping(3, 5 * MINUTE)
    assert setting_for(rules, "own") == Flapping(10, 60 * MINUTE)
    assert setting_for(rules, DEVICE_THRESHOLD_RULE) == Flapping(3, 5 * MINUTE)
    assert setting_for(rules, "removed") is None
    # and a device's own thresholds flap like any rule
    state: dict[StateKey, AlertState] = {}
    statuses: list[str] = []
    for i, value in enumerate((WARN, OK, WARN)):
        own = Reading(DEVICE, "temp-9", value, NOW + i * MINUTE, None, None, None, 75.0, 90.0)
        done = finalize(evaluate([own], state, rules, NOW + i * MINUTE), rules, NOW)
        state = done.state
        statuses += [t.status.value for t in done.transitions if not t.muted]
    assert statuses == ["RAISED", "RESOLVED", "FLAPPING"]


def test_the_threshold_and_no_data_alerts_of_a_key_are_counted_apart() -> None:
    # Given two threshold changes and two no-data changes of the same key, within 10 minutes
    state, history = chatter((WARN, OK))
    state, silent = swept(state, NOW + MINUTE + 8 * MINUTE)
    state, back = feed(state, OK, NOW + 9 * MINUTE + 30_000)
    history += silent + back

    # Then each kind has two changes of its own: none is flapping, all are published
    assert [(t.status.value, t.direction) for t in history if not t.muted] == [
        ("RAISED", "above"),
        ("RESOLVED", "above"),
        ("RAISED", NODATA),
        ("RESOLVED", NODATA),
    ]
    assert sorted(state[KEY].flaps) == ["nodata", "threshold"]
    assert kind_of("below") == kind_of("above") == "threshold"


def test_a_no_data_alert_that_flaps_is_counted_in_the_sweeps_time() -> None:
    # Given a no-data rule with flapping {changes: 2, within: 1h}
    rules = RuleSet(
        parse_rule_file(
            RULES_TEXT.replace("changes: 4, within: 10m", "changes: 2, within: 1h"), "nd.yaml"
        )
    )
    state, _ = feed({}, OK, NOW, rules)

    # When the sweep finds it silent and a reading brings it back
    state, raised = swept(state, NOW + 8 * MINUTE, rules)
    state, back = feed(state, OK, NOW + 9 * MINUTE, rules)

    # Then the RAISED (in the sweep's time) went out, the RESOLVED made it flapping
    assert [(t.status.value, t.time_ms) for t in raised] == [("RAISED", NOW + 8 * MINUTE)]
    assert published(back) == [("FLAPPING", "WARNING")]
    assert back[-1].direction == NODATA
    # and the shadow says nothing of it: the no-data alert is not active
    assert mirror_entries(state) == []


def test_a_replayed_or_retried_batch_counts_nothing_twice() -> None:
    # Given a key that changed three times
    state, _ = chatter(CHATTER[:3])

    # When the same readings arrive again (a duplicate delivery): they are late
    replay = evaluate(
        [reading(v, NOW + i * MINUTE) for i, v in enumerate(CHATTER[:3])], state, RULES
    )
    again = finalize(replay, RULES, NOW + 5 * MINUTE)

    # Then nothing is counted or sent
    assert again.transitions == []
    assert again.state == state
    # and a retry of the next batch decides exactly as its first attempt
    first = finalize(evaluate([reading(OK, NOW + 3 * MINUTE)], state, RULES), RULES, NOW)
    retry = finalize(evaluate([reading(OK, NOW + 3 * MINUTE)], state, RULES), RULES, NOW + 1)
    assert first.transitions == retry.transitions
    assert first.state == retry.state
    assert first.transitions[-1].status is Status.FLAPPING


def test_the_watch_survives_the_state_store_and_older_items_still_load() -> None:
    # Given a flapping key, written and read back as the state store does
    state, _ = chatter()
    back = state_from_json(json.loads(json.dumps(state_to_json(state))))

    # Then it is the same watch, and the same decisions follow
    assert back == state
    assert swept(back, NOW + 20 * MINUTE) == swept(state, NOW + 20 * MINUTE)
    # and an item written before flapping existed loads without a watch
    old = state_from_json({"temp-1/boiler-temp": {"severity": "OK", "last": NOW}})
    assert old[KEY].flaps == {}
    # and a store that must forget quiet keys never forgets a flapping one
    quiet = {("temp-2", "boiler-temp"): AlertState(last_ms=NOW - MINUTE), **state}
    assert quiet_oldest_first(quiet) == [("temp-2", "boiler-temp")]


def test_the_watch_is_bounded_by_the_setting() -> None:
    # Given a key chattering for an hour, once a minute
    state, _ = chatter(CHATTER * 15)

    # Then at most `changes` times are kept
    assert len(state[KEY].flaps["threshold"].changes) == 4


def test_the_largest_watch_stays_a_small_part_of_a_dynamodb_item() -> None:
    # Given the largest setting (100 changes within 24h) and a key changing 150 times
    rules = rules_for(Flapping(100, 86_400_000))
    state: dict[StateKey, AlertState] = {}
    for i, value in enumerate(CHATTER * 38):
        state, _ = feed(state, value, NOW + i * 1_000, rules)

    # Then its watch keeps 100 changes, in about 3 KB of the item's 400 KB
    watch_json = json.dumps(state[KEY].to_json()["flaps"], separators=(",", ":"))
    assert len(state[KEY].flaps["threshold"].changes) == 100
    assert len(watch_json.encode()) < 4_096


def test_flapping_transitions_survive_the_outbox() -> None:
    # Given a FLAPPING and the suppressed change beside it
    _, history = chatter()
    for t in history[-2:]:
        # When committed to the outbox and read back
        entry = OutboxEntry.from_json(json.loads(json.dumps(OutboxEntry(t, "o", NOW).to_json())))
        # Then nothing is lost
        assert entry.transition == t
        assert (entry.transition.muted, entry.transition.suppressed) == (t.muted, t.suppressed)
    assert history[-1].to_json()["changes"] == 4
    assert history[-1].to_json()["within"] == 600


# ---------------------------------------------------------------- operators' actions


def test_acknowledging_a_flapping_key_is_published_and_leaves_it_flapping() -> None:
    # Given a key flapping with an active WARNING
    state, _ = chatter((*CHATTER, WARN))

    # When Maria acknowledges it
    state, transitions, refusal = act(state, "acknowledge", NOW + 5 * MINUTE)

    # Then ACKNOWLEDGED goes out, and the key still flaps
    assert refusal is None
    assert published(transitions) == [("ACKNOWLEDGED", "WARNING")]
    assert state[KEY].flapping


def test_no_reminder_while_a_key_flaps() -> None:
    # Given a key flapping with an active WARNING raised at 10:04 (repeat: 30m)
    state, _ = chatter((*CHATTER, WARN))

    # When the sweep runs while it flaps, past when a reminder would be due
    state, transitions = swept(state, NOW + 4 * MINUTE + 9 * MINUTE)

    # Then no reminder
    assert [t for t in transitions if t.status is Status.REMINDER] == []


def test_a_snooze_mutes_flapping_and_stable_too() -> None:
    # Given a key snoozed for an hour, then flapping
    state, _ = feed({}, OK, NOW - MINUTE)
    state, snoozed, _ = act(state, "snooze", NOW - MINUTE, until="1h")
    assert published(snoozed) == [("SNOOZED", "OK")]
    history: list[Transition] = []
    for i, value in enumerate(CHATTER):
        state, transitions = feed(state, value, NOW + i * MINUTE)
        history += transitions

    # Then the FLAPPING is history, muted by the snooze
    assert [t.status for t in history][-1] is Status.FLAPPING
    assert published(history) == []
    # and so is the STABLE of a sweep within the snooze
    state, transitions = swept(state, NOW + 20 * MINUTE)
    assert [t.status for t in transitions if t.direction != NODATA] == [Status.STABLE]
    assert published(transitions) == []


def test_a_snooze_ending_while_the_key_still_flaps_holds_back_its_catch_up() -> None:
    # Given a key snoozed until 10:05 that started flapping meanwhile and is at WARNING
    state, _ = feed({}, OK, NOW - MINUTE)
    state, _, _ = act(state, "snooze", NOW - MINUTE, until=str(NOW + 5 * MINUTE))
    for i, value in enumerate((*CHATTER, WARN)):
        state, _ = feed(state, value, NOW + i * MINUTE)

    # When the snooze ends at the sweep of 10:06, the key still flapping
    state, transitions = swept(state, NOW + 6 * MINUTE)

    # Then its catch-up (RAISED) is held back like any change, and not counted
    (catch_up,) = [t for t in transitions if t.direction != NODATA]
    assert (catch_up.status, catch_up.suppressed) == (Status.RAISED, SUPPRESSED)
    assert len(state[KEY].flaps["threshold"].changes) == 4
    assert state[KEY].flaps["threshold"].last_ms == NOW + 4 * MINUTE


def test_disabling_a_flapping_key_ends_its_flapping_and_reset_does_not() -> None:
    # Given a key flapping with an active WARNING
    state, _ = chatter((*CHATTER, WARN))

    # When it is reset: RESET goes out, it stays flapping
    reset, transitions, _ = act(state, "reset", NOW + 5 * MINUTE)
    assert published(transitions) == [("RESET", "OK")]
    assert reset[KEY].flapping

    # When it is disabled: DISABLED goes out, the flapping ends with evaluation
    disabled, transitions, _ = act(state, "disable", NOW + 5 * MINUTE)
    assert published(transitions) == [("DISABLED", "OK")]
    assert not disabled[KEY].flapping
    assert DeviceRecord(DEVICE, state=disabled).due_ms() is None


# ---------------------------------------------------------------- the shadow


def test_the_shadow_entry_says_flapping_while_it_lasts() -> None:
    # Given a key flapping with an active WARNING
    state, _ = chatter((*CHATTER, WARN))

    # Then the shadow entry says so
    ((sensor, entry),) = mirror_entries(state)
    assert (sensor, entry["severity"], entry["flapping"]) == ("temp-1", "WARNING", True)

    # When it is stable again: the entry no longer says so
    state, _ = swept(state, NOW + 20 * MINUTE)
    ((_, entry),) = mirror_entries(state)
    assert "flapping" not in entry


# ---------------------------------------------------------------- properties


def run(
    history: list[tuple[str, int, float]], rules: RuleSet, *, retry: bool = False
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    """Readings and sweeps in time order, as the pipeline decides them; with
    `retry`, each decision is made twice (a retried invocation) and the second kept."""
    state: dict[StateKey, AlertState] = {}
    out: list[Transition] = []
    for what, at, value in history:
        for attempt in range(2 if retry else 1):
            if what == "reading":
                decided = evaluate([reading(value, at)], state, rules, at)
            else:
                decided = sweep_decision(state, at, rules)
            done = finalize(decided, rules, at + attempt)
        state = done.state
        out += done.transitions
    return state, out


def rules_for(setting: Flapping) -> RuleSet:
    within = f"{setting.within_ms // 1000}s"
    text = RULES_TEXT.replace(
        "changes: 4, within: 10m", f"changes: {setting.changes}, within: {within}"
    )
    return RuleSet(parse_rule_file(text, "property.yaml"))


@given(chattering_histories())
@settings(max_examples=150, deadline=None)
def test_published_changes_never_reach_the_setting_in_any_window(
    case: tuple[Flapping, list[tuple[str, int, float]]],
) -> None:
    # Given any readings and sweeps under a flapping setting
    setting, history = case
    _, out = run(history, rules_for(setting))

    # Then, per kind of alert, the published changes of level in any window never
    # reach the setting
    for kind in ("threshold", NODATA):
        told = [
            t.time_ms for t in out if is_change(t) and not t.muted and kind_of(t.direction) == kind
        ]
        for i, start in enumerate(told):
            within = [at for at in told[i:] if at < start + setting.within_ms]
            assert len(within) <= setting.changes - 1


@given(chattering_histories())
@settings(max_examples=150, deadline=None)
def test_every_change_is_in_the_history_and_flapping_alternates_with_stable(
    case: tuple[Flapping, list[tuple[str, int, float]]],
) -> None:
    # Given any readings and sweeps, with and without the flapping setting
    setting, history = case
    rules = rules_for(setting)
    _, watched = run(history, rules)
    _, plain = run(history, UNWATCHED)

    # Then the changes of level are the same, every one of them in the history
    def bare(ts: list[Transition]) -> list[Transition]:
        return [replace(t, muted=False, suppressed=None) for t in ts if is_change(t)]

    assert bare(watched) == bare(plain)
    # and per kind, FLAPPING and STABLE alternate, each FLAPPING with the most severe
    # level of the changes that made it
    for kind in ("threshold", NODATA):
        mine = [t for t in watched if kind_of(t.direction) == kind]
        marks = [t.status for t in mine if t.status in (Status.FLAPPING, Status.STABLE)]
        assert marks == [Status.FLAPPING, Status.STABLE] * (len(marks) // 2) + [Status.FLAPPING] * (
            len(marks) % 2
        )
        for i, t in enumerate(mine):
            if t.status is Status.FLAPPING:
                made = [c for c in mine[:i] if is_change(c)][-setting.changes :]
                assert t.severity == max(c.routing_severity for c in made)
                assert made[-1].time_ms - made[0].time_ms < setting.within_ms


@given(chattering_histories())
@settings(max_examples=100, deadline=None)
def test_retries_and_replays_decide_the_same(
    case: tuple[Flapping, list[tuple[str, int, float]]],
) -> None:
    # Given any readings and sweeps
    setting, history = case
    rules = rules_for(setting)

    # When each decision is retried (another clock), and then every reading replayed
    state, once = run(history, rules)
    retried_state, retried = run(history, rules, retry=True)
    readings = [reading(v, at) for what, at, v in history if what == "reading"]
    replayed = finalize(evaluate(readings, state, rules), rules, history[-1][1] if history else NOW)

    # Then the same transitions and state, and a replay changes nothing
    assert (retried_state, retried) == (state, once)
    assert replayed.transitions == []
    assert replayed.state == state


# ---------------------------------------------------------------- adapters and the backtest


def test_operators_read_flapping_and_stable_in_their_subject_and_attributes() -> None:
    # Given a FLAPPING and, later, its STABLE
    state, history = chatter((*CHATTER, WARN))
    _, transitions = swept(state, NOW + 20 * MINUTE)
    (flapping,) = [t for t in history if t.status is Status.FLAPPING]
    (stable,) = [t for t in transitions if t.status is Status.STABLE]

    # Then their subjects say so in a person's words, and their attributes route them
    # like the changes they stand for
    assert subject(flapping) == (
        "[CRITICAL] boiler-3 temperature flapping: 4 changes in 10m (boiler-temp)"
    )
    assert subject(stable) == "[CRITICAL] boiler-3 temperature stable at WARNING (boiler-temp)"
    assert {k: v["StringValue"] for k, v in attributes(flapping).items()} == {
        "severity": "CRITICAL",
        "status": "FLAPPING",
        "deviceId": DEVICE,
        "rule": "boiler-temp",
        "sensorType": "temperature",
    }
    assert attributes(stable)["status"]["StringValue"] == "STABLE"


def test_the_history_records_carry_status_and_what_was_held_back() -> None:
    # Given the suppressed change and the FLAPPING beside it
    _, history = chatter()
    held, flapping = history[-2:]

    # Then Timestream records keep both apart (status), say what was held back, and
    # the FLAPPING draws no level
    def measures(t: Transition) -> dict[str, str]:
        return {m["Name"]: m["Value"] for m in alert_record(t)["MeasureValues"]}

    def dimensions(t: Transition) -> dict[str, str]:
        return {d["Name"]: d["Value"] for d in alert_record(t)["Dimensions"]}

    assert dimensions(held)["status"] == "RESOLVED"
    assert measures(held)["suppressed"] == "flapping"
    assert dimensions(flapping)["status"] == "FLAPPING"
    assert "threshold" not in measures(flapping)
    assert measures(flapping)["changes"] == "4"
    # and so do the InfluxDB points
    assert 'suppressed="flapping"' in InfluxRecords().alert(held).line
    line = InfluxRecords().alert(flapping).line
    assert "status=FLAPPING" in line
    assert "changes=4i" in line
    assert "threshold=" not in line


def test_backtest_shows_flapping_and_stable_when_rules_set_flapping() -> None:
    # Given recorded history of a chattering sensor, then an hour of quiet readings
    values = [*CHATTER, WARN, OK, *(OK for _ in range(6))]
    lines = [
        message(DEVICE, NOW + i * 5 * MINUTE if i > 5 else NOW + i * MINUTE, ("temp-1", v))
        for i, v in enumerate(values)
    ]

    # When it is replayed with and without the setting
    watched = backtest.replay(lines, RULES)
    plain = backtest.replay(lines, UNWATCHED)

    # Then with it, what operators would have received: three changes, FLAPPING, STABLE
    told = [t.status.value for t in watched.transitions if not t.muted and t.direction != NODATA]
    assert told == ["RAISED", "RESOLVED", "RAISED", "FLAPPING", "STABLE"]
    # and every change is listed all the same; without it, nothing of flapping
    changes = [t for t in watched.transitions if is_change(t) and t.direction != NODATA]
    assert len(changes) == 6
    assert not any(t.status in (Status.FLAPPING, Status.STABLE) for t in plain.transitions)


# ---------------------------------------------------------------- end to end


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[LocalAws]:
    (tmp_path / "rules.yaml").write_text(RULES_TEXT)
    with local_stack([DEVICE], NOW) as stack:
        stack.rules_path = str(tmp_path / "rules.yaml")  # type: ignore[attr-defined]
        yield stack


def scheduled(at_ms: int) -> dict[str, Any]:
    """What EventBridge sends on a SAM Schedule event."""
    return {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": iso_utc(at_ms)[:19] + "Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/telemetry-Sweep"],
        "detail": {},
    }


def test_a_flapping_sensor_reaches_operators_as_flapping_then_stable(aws: LocalAws) -> None:
    # Given the function with a rule that has flapping {changes: 4, within: 10m}
    rt, _ = aws.runtime(RULES_PATH=aws.rules_path)  # type: ignore[attr-defined]

    # When the boiler's sensor changes level five times in five minutes
    for i, value in enumerate((*CHATTER, WARN)):
        aws.now_ms = NOW + i * MINUTE
        handler.handle(message(DEVICE, NOW + i * MINUTE, ("temp-1", value)), rt)

    # Then SNS carried three changes and one FLAPPING, nothing after it
    told = aws.alerts()
    assert [(a["status"], a["_attributes"]["severity"]) for a in told] == [
        ("RAISED", "WARNING"),
        ("RESOLVED", "WARNING"),
        ("RAISED", "CRITICAL"),
        ("FLAPPING", "CRITICAL"),
    ]
    assert (told[-1]["changes"], told[-1]["within"], told[-1]["severity"]) == (4, 600, "CRITICAL")
    assert told[-1]["alertId"] == told[2]["alertId"]
    # and the alert history has every change, the held ones marked, and the FLAPPING
    history = [
        (
            {d["Name"]: d["Value"] for d in r["Dimensions"]}["status"],
            {m["Name"]: m["Value"] for m in r["MeasureValues"]}.get("suppressed"),
        )
        for r in aws.records("alert")
    ]
    assert history == [
        ("RAISED", None),
        ("RESOLVED", None),
        ("RAISED", None),
        ("RESOLVED", "flapping"),
        ("FLAPPING", None),
        ("RAISED", "flapping"),
    ]
    # and the shadow shows the active WARNING, flapping
    entry = aws.shadow(DEVICE)["alerts"]["temp-1"]
    assert (entry["severity"], entry["flapping"]) == ("WARNING", True)

    # When the sweep runs once the sensor has been quiet ten minutes (a heartbeat keeps
    # its no-data alert away)
    aws.now_ms = NOW + 12 * MINUTE
    handler.handle(message(DEVICE, NOW + 12 * MINUTE, ("temp-1", WARN)), rt)
    aws.now_ms = NOW + 15 * MINUTE
    handler.handle(scheduled(NOW + 15 * MINUTE), rt)

    # Then one STABLE at WARNING reaches operators, and the shadow no longer says flapping
    (stable,) = aws.alerts()
    assert (stable["status"], stable["severity"], stable["time"]) == (
        "STABLE",
        "WARNING",
        iso_utc(NOW + 14 * MINUTE),
    )
    assert stable["_attributes"]["status"] == "STABLE"
    entry = aws.shadow(DEVICE)["alerts"]["temp-1"]
    assert entry["severity"] == "WARNING"
    assert "flapping" not in entry

    # When a retried sweep runs: nothing more
    handler.handle(scheduled(NOW + 15 * MINUTE), rt)
    assert aws.alerts() == []


def test_an_operator_acts_on_a_flapping_key_through_the_actions_function(aws: LocalAws) -> None:
    # Given a flapping key at WARNING
    rt, _ = aws.runtime(RULES_PATH=aws.rules_path)  # type: ignore[attr-defined]
    for i, value in enumerate((*CHATTER, WARN)):
        aws.now_ms = NOW + i * MINUTE
        handler.handle(message(DEVICE, NOW + i * MINUTE, ("temp-1", value)), rt)
    aws.alerts()

    # When Maria acknowledges it
    aws.now_ms = NOW + 6 * MINUTE
    answer = actions.handle_action(
        {
            "action": "acknowledge",
            "deviceId": DEVICE,
            "sensorId": "temp-1",
            "rule": "boiler-temp",
            "by": "maria",
        },
        rt,
    )

    # Then it is applied and published, and the answer says the key flaps
    assert answer["applied"] is True
    assert answer["state"]["flapping"] is True
    assert [a["status"] for a in aws.alerts()] == ["ACKNOWLEDGED"]
    entry = aws.shadow(DEVICE)["alerts"]["temp-1"]
    assert (entry["flapping"], entry["acknowledged"]["by"]) == (True, "maria")
