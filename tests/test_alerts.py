"""The alert state machine: worked examples, event time, episodes, state and properties."""

from __future__ import annotations

import itertools
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telemetry.core.alerts import (
    AlertState,
    Evaluation,
    Severity,
    StateKey,
    Status,
    Streak,
    Transition,
    active_alerts,
    alert_id_for,
    evaluate,
    quiet_oldest_first,
    state_from_json,
    state_to_json,
)
from telemetry.core.messages import Reading, iso_utc
from telemetry.core.rules import Rule, RuleSet, RuleSpec, Side, compile_rule, load_rules
from tests.strategies import NOW_MS, rules_with_hysteresis, rules_with_readings

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "default.yaml"
T0 = NOW_MS - 3_600_000
MINUTE = 60_000


def make_rule(**spec: Any) -> Rule:
    return compile_rule(RuleSpec.model_validate({"name": "r", **spec}))


HOT = make_rule(name="temperature-high", above={"warning": 75, "critical": 90}, hysteresis=2)


def reading(value: float, time_ms: int, sensor_id: str = "temp-1", **fields: Any) -> Reading:
    return Reading(
        device_id=fields.pop("device_id", "pump-17"),
        sensor_id=sensor_id,
        value=value,
        time_ms=time_ms,
        **fields,
    )


def series(values: Iterable[float], step_ms: int = 1000, **fields: Any) -> list[Reading]:
    return [reading(v, T0 + i * step_ms, **fields) for i, v in enumerate(values)]


def one_by_one(
    readings: Iterable[Reading], rules: RuleSet, state: Mapping[StateKey, AlertState] | None = None
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    """Evaluate each reading in its own invocation, carrying the state."""
    current = dict(state or {})
    transitions: list[Transition] = []
    for item in readings:
        result = evaluate([item], current, rules)
        current = result.state
        transitions += result.transitions
    return current, transitions


def summary(transitions: Iterable[Transition]) -> list[tuple[float, str, str, float | None]]:
    return [(t.value, t.status.value, t.severity.name, t.threshold) for t in transitions]


def by_key(transitions: Iterable[Transition]) -> dict[tuple[str, str], list[Transition]]:
    grouped: dict[tuple[str, str], list[Transition]] = defaultdict(list)
    for t in transitions:
        grouped[(t.sensor_id, t.rule)].append(t)
    return grouped


# --- the worked examples of the issue -----------------------------------------------


def test_worked_example_with_hysteresis() -> None:
    # Given above warning 75, critical 90, hysteresis 2
    rules = RuleSet([HOT])
    readings = series([70, 80, 95, 96, 89, 88, 74, 73, 70])

    # When the readings arrive one by one
    state, transitions = one_by_one(readings, rules)

    # Then exactly four transitions are emitted, with the levels crossed
    assert summary(transitions) == [
        (80, "RAISED", "WARNING", 75),
        (95, "ESCALATED", "CRITICAL", 90),
        (88, "DEESCALATED", "WARNING", 88),
        (73, "RESOLVED", "OK", 73),
    ]
    assert [t.previous_severity.name for t in transitions] == [
        "OK",
        "WARNING",
        "CRITICAL",
        "WARNING",
    ]
    assert state[("temp-1", "temperature-high")].severity is Severity.OK


def test_worked_example_gives_the_same_in_one_batch() -> None:
    # Given the worked example's readings in one message, shuffled
    readings = series([70, 80, 95, 96, 89, 88, 74, 73, 70])
    random.Random(3).shuffle(readings)

    # When they are evaluated together
    result = evaluate(readings, {}, RuleSet([HOT]))

    # Then they are taken in reading-time order: the same four transitions
    assert [(t.value, t.status.value) for t in result.transitions] == [
        (80, "RAISED"),
        (95, "ESCALATED"),
        (88, "DEESCALATED"),
        (73, "RESOLVED"),
    ]


def test_for_three_raises_once_after_three_consecutive_breaches() -> None:
    # Given warning 7 and `for: 3`
    rules = RuleSet([make_rule(above={"warning": 7}, **{"for": 3})])

    # When 8, 8, 3, 8, 8, 8 arrive
    _, transitions = one_by_one(series([8, 8, 3, 8, 8, 8]), rules)

    # Then one RAISED, at the sixth reading (the 3 broke the streak)
    assert len(transitions) == 1
    assert transitions[0].status is Status.RAISED
    assert transitions[0].time_ms == T0 + 5 * 1000


def test_for_three_counts_each_level_separately() -> None:
    # Given warning 7, critical 10 and `for: 3`
    rules = RuleSet([make_rule(above={"warning": 7, "critical": 10}, **{"for": 3})])

    # When 8, 8, 11 arrive, then two more readings past 10
    _, first = one_by_one(series([8, 8, 11]), rules)
    _, longer = one_by_one(series([8, 8, 11, 11, 11]), rules)

    # Then WARNING is raised at the third; CRITICAL needs three readings past 10
    assert summary(first) == [(11, "RAISED", "WARNING", 7)]
    assert [(t.time_ms - T0, t.status.value, t.severity.name) for t in longer] == [
        (2000, "RAISED", "WARNING"),
        (4000, "ESCALATED", "CRITICAL"),
    ]


def test_for_three_straight_to_critical() -> None:
    # Given warning 7, critical 10 and `for: 3`
    rules = RuleSet([make_rule(above={"warning": 7, "critical": 10}, **{"for": 3})])

    # When three readings past 10 arrive
    _, transitions = one_by_one(series([11, 12, 11]), rules)

    # Then it is raised straight to CRITICAL at the third
    assert summary(transitions) == [(11, "RAISED", "CRITICAL", 10)]


def test_clearing_is_immediate_despite_for() -> None:
    # Given `for: 3` and a raised warning
    rules = RuleSet([make_rule(above={"warning": 7}, hysteresis=1, **{"for": 3})])

    # When one reading falls past the hysteresis band
    _, transitions = one_by_one(series([8, 8, 8, 6.5, 6]), rules)

    # Then it resolves at once, not after three readings
    assert summary(transitions) == [(8, "RAISED", "WARNING", 7), (6, "RESOLVED", "OK", 6)]


def test_duration_for_needs_the_breach_to_hold_in_reading_time() -> None:
    # Given warning 7 with `for: 5m`
    rules = RuleSet([make_rule(above={"warning": 7}, **{"for": "5m"})])
    times = [0, 2 * MINUTE, 5 * MINUTE - 1, 5 * MINUTE, 6 * MINUTE]
    readings = [reading(8, T0 + t) for t in times]

    # When breaching readings arrive over six minutes
    _, transitions = one_by_one(readings, rules)

    # Then it raises with the first reading five minutes after the breach began
    assert [(t.status.value, t.time_ms - T0) for t in transitions] == [("RAISED", 5 * MINUTE)]


def test_duration_for_restarts_when_the_breach_is_interrupted() -> None:
    # Given warning 7 with `for: 5m`
    rules = RuleSet([make_rule(above={"warning": 7}, **{"for": "5m"})])
    timeline = [(0, 8), (1, 3), (2, 8), (6, 8), (7, 8)]
    readings = [reading(v, T0 + m * MINUTE) for m, v in timeline]

    # When a clear reading interrupts the breach
    _, transitions = one_by_one(readings, rules)

    # Then the five minutes count from the breach's restart
    assert [(t.status.value, t.time_ms - T0) for t in transitions] == [("RAISED", 7 * MINUTE)]


def test_duration_streak_keeps_its_start_while_it_counts() -> None:
    # Given a `for: 5m` breach already counting
    rules = RuleSet([make_rule(above={"warning": 7}, **{"for": "5m"})])
    started = evaluate([reading(8, T0)], {}, rules)

    # When another breaching reading arrives within the five minutes
    again = evaluate([reading(9, T0 + MINUTE)], started.state, rules)

    # Then the streak still starts at the first breach; only the late-data line moved
    key = ("temp-1", "r")
    assert started.changed is True
    assert again.state[key].streaks == started.state[key].streaks
    assert again.state[key].last_ms == T0 + MINUTE


def test_below_side_mirrors_above() -> None:
    # Given below warning 20, critical 10, hysteresis 2
    rules = RuleSet(
        [make_rule(name="battery-low", below={"warning": 20, "critical": 10}, hysteresis=2)]
    )

    # When the value falls and recovers
    _, transitions = one_by_one(series([25, 19, 9, 11, 12, 21, 22]), rules)

    # Then the levels and clear levels are mirrored
    assert summary(transitions) == [
        (19, "RAISED", "WARNING", 20),
        (9, "ESCALATED", "CRITICAL", 10),
        (12, "DEESCALATED", "WARNING", 12),
        (22, "RESOLVED", "OK", 22),
    ]
    assert {t.direction for t in transitions} == {"below"}


def test_value_exactly_on_a_level_does_not_breach() -> None:
    # Given above warning 75 and below warning 20
    rules = RuleSet([make_rule(above={"warning": 75}, below={"warning": 20})])

    # When readings sit exactly on the levels
    _, transitions = one_by_one(series([75, 20, 75.0001]), rules)

    # Then only a value strictly past a level breaches it
    assert summary(transitions) == [(75.0001, "RAISED", "WARNING", 75)]


def test_rule_with_both_sides_switches_episode_when_the_side_changes() -> None:
    # Given a pressure band: above 8/10, below 1.2/0.8, hysteresis 0.2
    rules = RuleSet(
        [
            make_rule(
                name="pressure-range",
                above={"warning": 8, "critical": 10},
                below={"warning": 1.2, "critical": 0.8},
                hysteresis=0.2,
            )
        ]
    )

    # When pressure goes high, then straight to very low, then back to normal
    _, transitions = one_by_one(series([5, 9, 0.5, 5]), rules)

    # Then the high episode resolves and a new low one is raised, then resolved
    assert [(t.status.value, t.severity.name, t.direction, t.threshold) for t in transitions] == [
        ("RAISED", "WARNING", "above", 8),
        ("RESOLVED", "OK", "above", 7.8),
        ("RAISED", "CRITICAL", "below", 0.8),
        ("RESOLVED", "OK", "below", 1.4),
    ]
    assert transitions[0].alert_id == transitions[1].alert_id
    assert transitions[2].alert_id == transitions[3].alert_id
    assert transitions[0].alert_id != transitions[2].alert_id


def test_steady_breach_emits_nothing_and_only_moves_the_late_data_line() -> None:
    # Given a raised warning
    rules = RuleSet([HOT])
    raised = evaluate([reading(80, T0)], {}, rules)
    before = raised.state[("temp-1", "temperature-high")]

    # When many more readings stay at the same level
    last = T0 + 100 * 1000
    steady = evaluate(
        [reading(80 + i % 5, T0 + (i + 1) * 1000) for i in range(100)], raised.state, rules
    )

    # Then nothing is emitted; the episode is unchanged but for its late-data line,
    # which follows the newest reading (one write for the whole batch)
    assert len(raised.transitions) == 1
    assert steady.transitions == []
    after = steady.state[("temp-1", "temperature-high")]
    assert after == replace(before, last_ms=last)


def test_normal_readings_need_no_state_write() -> None:
    # Given a sensor with no alert
    # When normal readings arrive
    result = evaluate(series([20, 21, 22]), {}, RuleSet([HOT]))

    # Then no state is recorded, not even a high-water mark
    assert (result.changed, result.state, result.evaluated) == (False, {}, 3)


# --- episodes ----------------------------------------------------------------------------


def test_alert_id_is_shared_by_an_episode_and_deterministic() -> None:
    # Given the worked example, evaluated twice from scratch
    readings = series([70, 80, 95, 96, 89, 88, 74, 73, 70])
    _, first = one_by_one(readings, RuleSet([HOT]))
    _, retry = one_by_one(readings, RuleSet([HOT]))

    # When the alert ids are compared
    ids = {t.alert_id for t in first}

    # Then one id for the whole episode, the same on a retry, derived from its raise
    assert len(ids) == 1
    assert [t.alert_id for t in retry] == [t.alert_id for t in first]
    assert ids == {alert_id_for("pump-17", "temp-1", "temperature-high", T0 + 1000)}
    assert {t.since_ms for t in first} == {T0 + 1000}


def test_each_episode_gets_its_own_alert_id() -> None:
    # Given two separate breaches
    _, transitions = one_by_one(series([80, 70, 80, 70]), RuleSet([HOT]))

    # When their ids are compared
    first, second = transitions[0].alert_id, transitions[2].alert_id

    # Then each episode has its own id
    assert [t.status.value for t in transitions] == ["RAISED", "RESOLVED", "RAISED", "RESOLVED"]
    assert first == transitions[1].alert_id
    assert second == transitions[3].alert_id
    assert first != second


# --- event time ----------------------------------------------------------------------


def test_late_reading_never_changes_the_state() -> None:
    # Given a warning raised at T0 + 10 s
    rules = RuleSet([HOT])
    raised = evaluate([reading(80, T0 + 10_000)], {}, rules)

    # When readings older than that change arrive, one clear and one critical
    late = evaluate([reading(20, T0 + 5_000), reading(99, T0 + 10_000)], raised.state, rules)

    # Then they neither resolve nor escalate anything
    assert late.transitions == []
    assert late.changed is False
    assert late.late == 2
    assert late.state == raised.state


def test_late_reading_does_not_resolve_after_newer_data_decided() -> None:
    # Given a resolved episode
    rules = RuleSet([HOT])
    state, transitions = one_by_one(series([80, 70]), rules)

    # When an old breaching reading turns up afterwards
    late = evaluate([reading(95, T0 + 500)], state, rules)

    # Then it raises nothing
    assert len(transitions) == 2
    assert late.transitions == []
    assert late.state == state


def test_a_late_reading_never_resolves_an_alert_that_a_newer_reading_kept() -> None:
    # Given 80 at 10:10 raised an alert and 81 at 10:20 held it (one invocation each)
    rules = RuleSet([HOT])
    state, raised = one_by_one(
        [reading(80, T0 + 10 * MINUTE), reading(81, T0 + 20 * MINUTE)], rules
    )

    # When a 70 stamped 10:15 arrives afterwards
    late = evaluate([reading(70, T0 + 15 * MINUTE)], state, rules)

    # Then it is late: the alert stays raised, nothing is resolved
    assert [t.status for t in raised] == [Status.RAISED]
    assert late.transitions == []
    assert late.late == 1
    assert late.state[("temp-1", "temperature-high")].severity is Severity.WARNING


def test_a_late_reading_never_de_escalates_what_a_newer_reading_kept() -> None:
    # Given 95 raised CRITICAL and a newer 93 held it
    rules = RuleSet([HOT])
    state, _ = one_by_one([reading(95, T0), reading(93, T0 + 2 * MINUTE)], rules)

    # When an older 80 turns up
    late = evaluate([reading(80, T0 + MINUTE)], state, rules)

    # Then the alert is still CRITICAL
    assert late.transitions == []
    assert late.state[("temp-1", "temperature-high")].severity is Severity.CRITICAL


def test_a_quiet_sensor_costs_no_state_write_per_reading() -> None:
    # Given a sensor reading inside its levels
    rules = RuleSet([HOT])

    # When it keeps reporting quiet values
    result = evaluate(series([60, 61, 62, 63]), {}, rules)

    # Then nothing needs writing
    assert result.changed is False


def test_batch_is_evaluated_in_reading_time_order_regardless_of_arrival() -> None:
    # Given readings arriving newest first
    readings = [reading(70, T0 + 3000), reading(95, T0 + 2000), reading(80, T0 + 1000)]

    # When they are evaluated in one batch
    result = evaluate(readings, {}, RuleSet([HOT]))

    # Then they are judged oldest first
    assert summary(result.transitions) == [
        (80, "RAISED", "WARNING", 75),
        (95, "ESCALATED", "CRITICAL", 90),
        (70, "RESOLVED", "OK", 73),
    ]


def test_sensors_and_rules_have_independent_state() -> None:
    # Given two rules matching one sensor, and two sensors
    rules = RuleSet([HOT, make_rule(name="very-hot", above={"critical": 100})])

    # When one sensor is hot and the other very hot
    result = evaluate([reading(80, T0, sensor_id="a"), reading(120, T0, sensor_id="b")], {}, rules)

    # Then each (sensor, rule) has its own state
    assert {k: s.severity.name for k, s in result.state.items()} == {
        ("a", "temperature-high"): "WARNING",
        ("b", "temperature-high"): "CRITICAL",
        ("b", "very-hot"): "CRITICAL",
    }


# --- transitions on the wire --------------------------------------------------------


def test_transition_carries_every_field_of_the_contract() -> None:
    # Given a reading with type, location and unit that raises a warning
    item = reading(81.2, NOW_MS, type="temperature", location="line-3", unit="C")

    # When it is evaluated
    (transition,) = evaluate([item], {}, RuleSet([HOT])).transitions

    # Then the wire form carries every field, times as ISO-8601 UTC
    assert transition.to_json() == {
        "alertId": alert_id_for("pump-17", "temp-1", "temperature-high", NOW_MS),
        "status": "RAISED",
        "severity": "WARNING",
        "previousSeverity": "OK",
        "deviceId": "pump-17",
        "sensorId": "temp-1",
        "rule": "temperature-high",
        "value": 81.2,
        "threshold": 75.0,
        "direction": "above",
        "time": "2025-11-27T10:00:00.000Z",
        "since": "2025-11-27T10:00:00.000Z",
        "type": "temperature",
        "location": "line-3",
        "unit": "C",
    }


def test_transition_omits_unknown_labels_and_keeps_since_of_the_episode() -> None:
    # Given an escalation a minute after the raise, readings with no labels
    _, transitions = one_by_one([reading(80, T0), reading(95, T0 + MINUTE)], RuleSet([HOT]))

    # When the escalation is serialised
    wire = transitions[1].to_json()

    # Then labels are absent and since is the raise time
    assert not {"type", "location", "unit"} & set(wire)
    assert wire["time"] == iso_utc(T0 + MINUTE)
    assert wire["since"] == iso_utc(T0)
    assert wire["time"].endswith("Z")


def test_transition_json_round_trip() -> None:
    # Given the worked example's transitions
    _, transitions = one_by_one(
        series([70, 80, 95, 96, 89, 88, 74, 73, 70], type="temperature", unit="C"),
        RuleSet([HOT]),
    )

    # When each goes through JSON text and back
    back = [Transition.from_json(json.loads(json.dumps(t.to_json()))) for t in transitions]

    # Then nothing is lost
    assert back == transitions


def test_routing_severity_is_the_more_severe_side_of_a_change() -> None:
    # Given a raise to CRITICAL and its resolution
    _, transitions = one_by_one(series([95, 20]), RuleSet([HOT]))

    # When their routing severities are read
    routing = [t.routing_severity for t in transitions]

    # Then both route as CRITICAL
    assert routing == [Severity.CRITICAL, Severity.CRITICAL]


# --- state --------------------------------------------------------------------------


def test_state_json_round_trip_with_alerts_and_streaks() -> None:
    # Given a state with an active alert and a counting streak
    rules = RuleSet(
        [HOT, make_rule(name="slow", above={"warning": 7, "critical": 85}, **{"for": 3})]
    )
    result = evaluate(series([80, 86]), {}, rules)

    # When it goes through JSON text and back
    back = state_from_json(json.loads(json.dumps(state_to_json(result.state))))

    # Then it is the same state
    assert back == result.state
    assert any(s.streaks for s in back.values())
    assert any(s.severity is not Severity.OK for s in back.values())


def fleet_cycle(count: int) -> list[Reading]:
    """`count` readings cycling through the same pattern on four sensors."""
    types = ["temperature", "pressure", "vibration", "humidity"]
    pattern = {
        "temperature": [70, 80, 95, 96, 89, 88, 74, 73, 70, 60],
        "pressure": [5, 9, 9, 9, 11, 11, 11, 0.5, 0.5, 0.5],
        "vibration": [2, 5, 6, 8, 8, 1, 2, 3, 5, 7.5],
        "humidity": [50, 75, 80, 90, 95, 15, 5, 40, 50, 50],
    }
    out = []
    for i in range(count):
        kind = types[i % 4]
        step = i // 4
        out.append(
            reading(pattern[kind][step % 10], T0 + step * 15_000, sensor_id=f"{kind}-1", type=kind)
        )
    return out


def test_state_size_does_not_grow_with_the_number_of_readings() -> None:
    # Given the default rules and the same cyclic pattern on four sensors
    rules = load_rules(DEFAULT_RULES)

    # When 40 readings and 40,000 readings are evaluated (same phase at the end)
    short = evaluate(fleet_cycle(40), {}, rules)
    long = evaluate(fleet_cycle(40_000), {}, rules)

    # Then the serialised state has the same keys and the same size
    short_json = json.dumps(state_to_json(short.state))
    long_json = json.dumps(state_to_json(long.state))
    assert set(state_to_json(long.state)) == set(state_to_json(short.state))
    assert len(long_json) <= len(short_json) + 16
    assert len(long.transitions) > len(short.transitions)


def test_active_alerts_picks_the_most_severe_per_sensor() -> None:
    # Given a sensor warned by one rule and critical by another, and a quiet sensor
    rules = RuleSet([HOT, make_rule(name="very-hot", above={"critical": 92})])
    result = evaluate(
        [
            reading(95, T0, sensor_id="a"),
            reading(80, T0, sensor_id="b"),
            reading(20, T0, sensor_id="c"),
        ],
        {},
        rules,
    )
    result = evaluate([reading(93, T0 + 1000, sensor_id="a")], result.state, rules)

    # When the active alerts are read
    active = active_alerts(result.state)

    # Then each alerting sensor shows its most severe alert; the quiet one is absent
    assert {sensor: (a.rule, a.severity.name) for sensor, a in active.items()} == {
        "a": ("temperature-high", "CRITICAL"),
        "b": ("temperature-high", "WARNING"),
    }


def test_active_alerts_prefers_the_older_episode_on_a_tie() -> None:
    # Given two rules critical on one sensor, raised at different times
    rules = RuleSet(
        [
            make_rule(name="z-first", above={"critical": 50}),
            make_rule(name="a-later", above={"critical": 90}),
        ]
    )
    result = evaluate([reading(60, T0), reading(95, T0 + 1000)], {}, rules)

    # When the active alerts are read
    alert = active_alerts(result.state)["temp-1"]

    # Then the older episode wins
    assert (alert.rule, alert.since_ms) == ("z-first", T0)


# --- properties -----------------------------------------------------------------------


def evaluate_in_batches(
    readings: Sequence[Reading], rules: RuleSet, cuts: Iterable[int]
) -> tuple[dict[StateKey, AlertState], list[Transition], list[Evaluation]]:
    bounds = sorted({0, len(readings), *(c % (len(readings) + 1) for c in cuts)})
    state: dict[StateKey, AlertState] = {}
    transitions: list[Transition] = []
    results = []
    for start, end in itertools.pairwise(bounds):
        result = evaluate(readings[start:end], state, rules)
        state = result.state
        transitions += result.transitions
        results.append(result)
    return state, transitions, results


VALID_STEPS = {
    Status.RAISED: ({Severity.OK}, {Severity.WARNING, Severity.CRITICAL}),
    Status.ESCALATED: ({Severity.WARNING}, {Severity.CRITICAL}),
    Status.DEESCALATED: ({Severity.CRITICAL}, {Severity.WARNING}),
    Status.RESOLVED: ({Severity.WARNING, Severity.CRITICAL}, {Severity.OK}),
}


@given(case=rules_with_readings())
def test_never_two_transitions_in_a_row_to_the_same_severity(
    case: tuple[Rule, list[Reading]],
) -> None:
    # Given a random valid rule and readings probing its levels
    rule, readings = case

    # When they are evaluated
    result = evaluate(readings, {}, RuleSet([rule]))

    # Then, per sensor and rule, consecutive transitions change the severity
    for transitions in by_key(result.transitions).values():
        severities = [t.severity for t in transitions]
        assert all(a != b for a, b in itertools.pairwise(severities))


@given(case=rules_with_readings())
def test_statuses_follow_a_valid_path(case: tuple[Rule, list[Reading]]) -> None:
    # Given a random valid rule and readings probing its levels
    rule, readings = case

    # When they are evaluated
    result = evaluate(readings, {}, RuleSet([rule]))

    # Then each key's transitions walk OK -> ... with one alertId per episode
    for key, transitions in by_key(result.transitions).items():
        severity, alert_id, since = Severity.OK, None, None
        for t in transitions:
            before, after = VALID_STEPS[t.status]
            assert t.previous_severity is severity
            assert severity in before
            assert t.severity in after
            if t.status is Status.RAISED:
                alert_id, since = t.alert_id, t.time_ms
                assert t.threshold is not None
            assert (t.alert_id, t.since_ms) == (alert_id, since)
            severity = t.severity
        final = result.state[key]
        assert final.severity is severity
        assert final.alert_id == (alert_id if severity is not Severity.OK else None)


@given(case=rules_with_readings(), cuts=st.lists(st.integers(min_value=0), max_size=4))
def test_result_is_the_same_in_one_batch_or_several(
    case: tuple[Rule, list[Reading]], cuts: list[int]
) -> None:
    # Given time-sorted readings and the same readings cut into consecutive batches
    rule, readings = case
    rules = RuleSet([rule])

    # When both are evaluated (state carried across batches)
    whole = evaluate(readings, {}, rules)
    state, transitions, _ = evaluate_in_batches(readings, rules, cuts)

    # Then the final state and the transitions are the same
    assert state == whole.state
    assert transitions == whole.transitions


@given(case=rules_with_readings(), seed=st.integers())
def test_result_does_not_depend_on_arrival_order_within_a_batch(
    case: tuple[Rule, list[Reading]], seed: int
) -> None:
    # Given readings and a shuffled copy of them
    rule, readings = case
    shuffled = list(readings)
    random.Random(seed).shuffle(shuffled)

    # When both are evaluated
    ordered = evaluate(readings, {}, RuleSet([rule]))
    arrived = evaluate(shuffled, {}, RuleSet([rule]))

    # Then the outcome is the same
    assert arrived.state == ordered.state
    assert arrived.transitions == ordered.transitions


@given(case=rules_with_readings(), cuts=st.lists(st.integers(min_value=0), max_size=3))
def test_replaying_evaluated_readings_changes_nothing(
    case: tuple[Rule, list[Reading]], cuts: list[int]
) -> None:
    # Given readings already evaluated, possibly over several invocations
    rule, readings = case
    rules = RuleSet([rule])
    state, _, _ = evaluate_in_batches(readings, rules, cuts)

    # When all of them are evaluated again
    replay = evaluate(readings, state, rules)

    # Then nothing is emitted and nothing needs writing
    assert replay.transitions == []
    assert replay.changed is False
    assert replay.state == state


@given(case=rules_with_readings(for_=1, hysteresis=0))
def test_without_for_and_hysteresis_severity_follows_the_last_reading(
    case: tuple[Rule, list[Reading]],
) -> None:
    # Given a rule with for 1 and hysteresis 0
    rule, readings = case

    # When the readings are evaluated
    result = evaluate(readings, {}, RuleSet([rule]))

    # Then each sensor ends at the severity its last reading implies
    last: dict[str, Reading] = {r.sensor_id: r for r in readings}
    for sensor, item in last.items():
        final = result.state.get((sensor, rule.name), AlertState())
        assert final.severity is implied_severity(rule, item.value)


def implied_severity(rule: Rule, value: float) -> Severity:
    worst = Severity.OK
    for side in rule.sides:
        past = (
            (lambda level: value > level) if side.name == "above" else (lambda level: value < level)
        )
        if side.critical is not None and past(side.critical):
            worst = max(worst, Severity.CRITICAL)
        elif side.warning is not None and past(side.warning):
            worst = max(worst, Severity.WARNING)
    return worst


Change = tuple[str, str, float | None]
"""(status, severity, threshold) of one transition."""
ORDER = {"OK": 0, "WARNING": 1, "CRITICAL": 2}


def beyond(side: Side, value: float, level: float | None) -> bool:
    """`value` strictly past `level`: above it on the upper side, below it on the lower."""
    if level is None:
        return False
    return value > level if side.name == "above" else value < level


def clear_level(side: Side, level: float, hysteresis: float) -> float:
    """Where an active level clears: back inside the level by the hysteresis."""
    return level - hysteresis if side.name == "above" else level + hysteresis


def oracle_severity(rule: Rule, side: Side, value: float, severity: str, active: str) -> str:
    """The severity `value` means on `side`, the sensor being at `severity` on the
    side named `active`: a level is reached strictly past it; an active level holds,
    on its own side, while the value is strictly past its clear level."""
    h = rule.hysteresis
    mine = side.name == active
    if beyond(side, value, side.critical):
        return "CRITICAL"

    def holds(level: float | None) -> bool:
        return level is not None and beyond(side, value, clear_level(side, level, h))

    if mine and severity == "CRITICAL" and holds(side.critical):
        return "CRITICAL"
    if beyond(side, value, side.warning):
        return "WARNING"
    if mine and severity != "OK" and holds(side.warning):
        return "WARNING"
    return "OK"


def oracle_changes(rule: Rule, severity: str, active: str, new: str, side: Side) -> list[Change]:
    """What a change from `severity` on `active` to `new` on `side` says: RAISED and
    ESCALATED give the level reached; DEESCALATED the critical level's clear level;
    RESOLVED (also when the other side takes over) the clear level of the old side's
    lowest level."""
    h = rule.hysteresis
    out: list[Change] = []
    if severity != "OK" and (new == "OK" or side.name != active):
        old = next(s for s in rule.sides if s.name == active)
        lowest = old.warning if old.warning is not None else old.critical
        assert lowest is not None
        out.append(("RESOLVED", "OK", clear_level(old, lowest, h)))
        severity = "OK"
    if new == "OK":
        return out
    if severity == "OK":
        out.append(("RAISED", new, side.critical if new == "CRITICAL" else side.warning))
    elif ORDER[new] > ORDER[severity]:
        out.append(("ESCALATED", new, side.critical))
    else:
        assert side.critical is not None
        out.append(("DEESCALATED", new, clear_level(side, side.critical, h)))
    return out


def hysteresis_oracle(rule: Rule, values: Sequence[float]) -> tuple[list[Change], str]:
    """The changes one sensor's values make under a rule with `for` 1, and its last
    severity, from the contract alone (without the state machine's code)."""
    severity, active = "OK", ""
    changes: list[Change] = []
    for value in values:
        options = [(oracle_severity(rule, s, value, severity, active), s) for s in rule.sides]
        new, side = max(options, key=lambda o: (ORDER[o[0]], o[1].name == active))
        if new == severity and (new == "OK" or side.name == active):
            continue
        changes += oracle_changes(rule, severity, active, new, side)
        severity, active = new, side.name if new != "OK" else ""
    return changes, severity


@given(case=rules_with_hysteresis())
def test_with_hysteresis_levels_clear_only_past_their_band(
    case: tuple[Rule, list[Reading]],
) -> None:
    # Given a rule with a hysteresis above 0 and `for` 1, and readings on, inside and
    # past its levels and its clear levels
    rule, readings = case

    # When they are evaluated
    result = evaluate(readings, {}, RuleSet([rule]))

    # Then each sensor's changes, their thresholds and its final severity are the
    # oracle's, which reads the contract independently of the state machine
    made = by_key(result.transitions)
    for sensor in {r.sensor_id for r in readings}:
        expected, last = hysteresis_oracle(
            rule, [r.value for r in readings if r.sensor_id == sensor]
        )
        got = [(t.status.value, t.severity.name, t.threshold) for t in made[(sensor, rule.name)]]
        assert got == expected
        assert result.state.get((sensor, rule.name), AlertState()).severity.name == last


@given(case=rules_with_readings())
def test_state_and_transitions_survive_json(case: tuple[Rule, list[Reading]]) -> None:
    # Given the state and transitions of random readings
    rule, readings = case
    result = evaluate(readings, {}, RuleSet([rule]))

    # When they go through JSON text and back
    state = state_from_json(json.loads(json.dumps(state_to_json(result.state))))
    transitions = [
        Transition.from_json(json.loads(json.dumps(t.to_json()))) for t in result.transitions
    ]

    # Then they are unchanged, and the restored state carries on identically
    assert state == result.state
    assert transitions == result.transitions
    later = [Reading(r.device_id, r.sensor_id, r.value, r.time_ms + 86_400_000) for r in readings]
    assert (
        evaluate(later, state, RuleSet([rule])).state
        == evaluate(later, result.state, RuleSet([rule])).state
    )


def test_transition_json_has_only_json_types() -> None:
    # Given a transition
    (transition,) = evaluate([reading(95, T0)], {}, RuleSet([HOT])).transitions

    # When it is serialised
    wire: dict[str, Any] = transition.to_json()

    # Then it is plain JSON
    assert json.loads(json.dumps(wire)) == wire


@pytest.mark.parametrize("count", [1, 3])
def test_evaluation_reports_counts(count: int) -> None:
    # Given `count` readings, one of them late
    rules = RuleSet([HOT])
    raised = evaluate([reading(80, T0 + 10_000)], {}, rules)
    readings = [reading(20, T0), *(reading(81, T0 + 20_000 + i) for i in range(count))]

    # When they are evaluated
    result = evaluate(readings, raised.state, rules)

    # Then the late one is counted as late, the others as evaluated
    assert (result.late, result.evaluated) == (1, count)


def test_an_alert_whose_rule_was_removed_is_resolved_by_the_next_reading() -> None:
    # Given a CRITICAL alert raised under a rule that the operators then deleted
    old_rules = RuleSet([Rule("old-rule", (Side("above", 75.0, 90.0),))])
    raised = evaluate([Reading("d1", "s1", 95.0, 1_000)], {}, old_rules)
    assert raised.transitions[0].severity is Severity.CRITICAL

    # When the sensor's next reading is evaluated under rules without it
    after = evaluate([Reading("d1", "s1", 95.0, 2_000)], raised.state, RuleSet([]))

    # Then the episode is resolved once, with its alertId, and stays resolved
    (resolved,) = after.transitions
    assert resolved.status is Status.RESOLVED
    assert resolved.alert_id == raised.transitions[0].alert_id
    assert resolved.threshold is None
    again = evaluate([Reading("d1", "s1", 96.0, 3_000)], after.state, RuleSet([]))
    assert again.transitions == []


def test_only_quiet_entries_may_be_forgotten_and_the_oldest_go_first() -> None:
    # Given a device with one active alert, a streak, and quiet entries of different ages
    state: dict[StateKey, AlertState] = {(f"s{i}", "r"): AlertState(last_ms=i) for i in range(5)}
    state[("hot", "r")] = AlertState(Severity.CRITICAL, "above", "a" * 32, 5, 99.0, 5)
    state[("warming", "r")] = AlertState(last_ms=1, streaks={"above.warning": Streak(1, 1)})

    # When the keys a bounded store may forget are listed
    forgettable = quiet_oldest_first(state)

    # Then they are the quiet entries, oldest first; never the alert or the streak
    assert forgettable == [(f"s{i}", "r") for i in range(5)]
