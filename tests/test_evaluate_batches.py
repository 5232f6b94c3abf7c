"""A batch decides what its readings decide one at a time, whatever `evaluate`
passes over without stepping (quiet readings of sensors at rest)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from telemetry.core.alerts import AlertState, Evaluation, StateKey, Transition, evaluate
from telemetry.core.messages import Reading
from telemetry.core.rules import RuleSet
from tests.strategies import rule_sets_with_readings


def one_at_a_time(
    readings: Sequence[Reading], state: dict[StateKey, AlertState], rules: RuleSet
) -> tuple[dict[StateKey, AlertState], list[Transition], int, int]:
    transitions: list[Transition] = []
    evaluated = late = 0
    for reading in readings:
        one = evaluate([reading], state, rules)
        state = one.state
        transitions += one.transitions
        evaluated += one.evaluated
        late += one.late
    return state, transitions, evaluated, late


def outcome(result: Evaluation) -> tuple[dict[StateKey, AlertState], list[Transition], int, int]:
    return result.state, result.transitions, result.evaluated, result.late


@given(case=rule_sets_with_readings())
def test_a_batch_decides_what_its_readings_decide_one_at_a_time(
    case: tuple[RuleSet, list[Reading]],
) -> None:
    # Given rules sharing their readings, and readings around their levels
    rules, readings = case

    # When the readings are evaluated as one batch, and one per evaluation
    whole = evaluate(readings, {}, rules)
    alone = one_at_a_time(readings, {}, rules)

    # Then the state, the transitions and the counts are the same
    assert outcome(whole) == alone


@given(case=rule_sets_with_readings())
def test_a_replay_counts_the_same_late_readings_in_a_batch_or_one_at_a_time(
    case: tuple[RuleSet, list[Reading]],
) -> None:
    # Given readings already evaluated (keys at rest, in a streak or alerting)
    rules, readings = case
    state = evaluate(readings, {}, rules).state

    # When they come again, as one batch and one per evaluation
    whole = evaluate(readings, state, rules)
    alone = one_at_a_time(readings, state, rules)

    # Then both change nothing, and a (reading, rule) is late exactly when its key
    # recorded a change at or after the reading's time
    assert outcome(whole) == alone
    assert whole.state == state
    assert whole.transitions == []
    pairs = [
        ((r.sensor_id, rule.name), r.time_ms) for r in readings for rule in rules.for_reading(r)
    ]
    late = sum(1 for key, at in pairs if key in state and at <= state[key].last_ms)
    assert (whole.evaluated, whole.late) == (len(pairs) - late, late)


def by_time(transitions: Sequence[Transition]) -> list[Transition]:
    return sorted(transitions, key=lambda t: (t.time_ms, t.sensor_id))


@given(case=rule_sets_with_readings(), doubled=st.lists(st.integers(0, 39), max_size=6))
def test_sensor_by_sensor_decides_what_reading_time_order_decides(
    case: tuple[RuleSet, list[Reading]], doubled: list[int]
) -> None:
    # Given time-ordered readings, some of them twice at the same time with another
    # value (before or after the first: reading-time order takes the lower first)
    rules, readings = case
    given_readings = list(readings)
    for at in sorted({i % len(readings) for i in doubled} if readings else (), reverse=True):
        twin = replace(readings[at], value=readings[at].value + (-1.5 if at % 2 else 1.5))
        given_readings.insert(at + 1, twin)

    # When they are evaluated sensor by sensor, and in reading-time order
    sensor_by_sensor = evaluate(given_readings, {}, rules, by_sensor=True)
    in_time = evaluate(given_readings, {}, rules)

    # Then the state and the counts are the same, and the same transitions come in
    # time order once sorted by time (each sensor's already is)
    assert sensor_by_sensor.state == in_time.state
    assert (sensor_by_sensor.evaluated, sensor_by_sensor.late) == (in_time.evaluated, in_time.late)
    assert by_time(sensor_by_sensor.transitions) == in_time.transitions
