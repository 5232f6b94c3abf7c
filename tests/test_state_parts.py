"""A key's state has three parts, each with one owner (telemetry.core.alerts):
the threshold episode (the alarm state machine), the silence (no-data
tracking) and the care (operators and the notification policy). A step of one
part replaces only that part: it cannot drop or alter another."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.core.alerts import (
    AlertState,
    Care,
    Episode,
    Severity,
    StateKey,
    evaluate,
    state_from_json,
    state_to_json,
    step,
)
from telemetry.core.messages import Reading
from telemetry.core.operators import apply_action, parse_action
from telemetry.core.rules import Rule, RuleSet, parse_rule_file
from telemetry.core.silence import sweep
from tests.strategies import DAY_MS, NOW_MS, SENSOR_IDS, alert_states, rules_with_readings

OPS_RULES = RuleSet(
    parse_rule_file(
        """
rules:
  - name: temperature-high
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    nodata: 10m
""",
        "ops.yaml",
    )
)
HOT: StateKey = ("temp-1", "temperature-high")


@settings(max_examples=200, deadline=None)
@given(alert_states(), rules_with_readings())
def test_a_step_of_the_alarm_machine_keeps_every_part_it_does_not_own(
    before: AlertState, rule_and_readings: tuple[Rule, list[Reading]]
) -> None:
    # Given a key with every part set, and readings probing a rule's levels
    rule, readings = rule_and_readings
    state = before
    for reading in readings:
        # When the alarm machine steps
        change = step(state, rule, reading)
        if change is None:
            continue
        state = change.state
        # Then its silence and what operators keep are the very same parts
        assert state.silence is before.silence
        assert state.care is before.care


@settings(max_examples=100, deadline=None)
@given(alert_states(), rules_with_readings())
def test_evaluating_a_device_keeps_what_operators_keep_on_every_key(
    before: AlertState, rule_and_readings: tuple[Rule, list[Reading]]
) -> None:
    # Given every sensor's key under a rule that applies to it, every part set
    rule, readings = rule_and_readings
    state = {(sensor, rule.name): before for sensor in SENSOR_IDS}
    # When a batch of readings is evaluated
    result = evaluate(readings, state, RuleSet([rule]))
    # Then what operators keep on each key is unchanged
    for key, after in result.state.items():
        assert after.care is before.care, key


@settings(max_examples=100, deadline=None)
@given(alert_states(), st.integers(0, 2 * DAY_MS))
def test_a_silence_sweep_keeps_the_episode_and_what_operators_keep(
    before: AlertState, later_ms: int
) -> None:
    # Given a key watched by a nodata rule, every part set
    state = {HOT: before}
    # When a sweep looks at it later
    swept = sweep("pump-17", state, OPS_RULES, NOW_MS - DAY_MS + later_ms)
    # Then only its silence may have changed
    after = swept.state[HOT]
    assert after.episode is before.episode
    assert after.care is before.care


@settings(max_examples=100, deadline=None)
@given(alert_states())
def test_a_snooze_changes_only_what_operators_keep(before: AlertState) -> None:
    # Given a key with every part set, not snoozed, in no maintenance window
    unsnoozed = before.with_care(replace(before.care, snoozed_until_ms=None, maintenance=None))
    raw = {"action": "snooze", "deviceId": "pump-17", "sensorId": HOT[0], "rule": HOT[1]}
    action = parse_action(raw | {"by": "maria@plant.example", "until": "2h"}, NOW_MS)
    # When an operator snoozes it
    outcome = apply_action("pump-17", {HOT: unsnoozed}, action, OPS_RULES, NOW_MS)
    # Then its episode and its silence are the very same parts
    after = outcome.evaluation.state[HOT]
    assert outcome.refusal is None
    assert after.care.snoozed_until_ms == NOW_MS + 2 * 3_600_000
    assert after.episode is unsnoozed.episode
    assert after.silence is unsnoozed.silence


@given(alert_states())
def test_the_parts_store_exactly_as_the_fields_did(state: AlertState) -> None:
    # Given a key built from its parts, and the same key built from its fields
    flat = AlertState(
        state.severity,
        state.side,
        state.alert_id,
        state.since_ms,
        state.value,
        state.last_ms,
        state.streaks,
        state.silence,
        latched=state.latched,
        attention=state.attention,
        snoozed_until_ms=state.snoozed_until_ms,
        heard=state.heard,
        disabled=state.disabled,
        flaps=state.flaps,
        maintenance=state.maintenance,
    )
    # When either is stored and loaded
    stored = state_to_json({HOT: state})
    # Then they are one state, and it loads back as it was
    assert flat == state
    assert state_to_json({HOT: flat}) == stored
    assert state_from_json(stored) == {HOT: state}


def test_a_field_named_replaces_only_its_own_part() -> None:
    # Given a key with an episode, a snooze and nothing else
    state = AlertState(Severity.WARNING, "above", "a" * 32, 5, 80.0, 5, snoozed_until_ms=9)
    # When a field is replaced by name, as before the parts
    unlatched = replace(state, latched=True)
    woken = replace(state, snoozed_until_ms=None)
    # Then only the part that holds it changes
    assert unlatched.care is state.care
    assert unlatched.episode == replace(state.episode, latched=True)
    assert woken.episode is state.episode
    assert woken.care == Care()
    assert AlertState(last_ms=3) == AlertState(episode=Episode(last_ms=3))
