"""A batch decides what its readings decide one at a time, whatever `evaluate`
passes over without stepping (quiet readings of sensors at rest)."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given

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
