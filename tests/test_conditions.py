"""Conditions beyond fixed levels (issue 20): rate of change, stuck sensors,
spikes and impossible values, on the one alarm state machine.

Each kind's measure first (properties: a ramp's rate, a constant signal's
stuck window, a range fault's isolation), then the rule file's checks, the
alarm machinery they share (late data, latch, operators), SNS, and the
handler end to end under the local AWS."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from telemetry import backtest, handler
from telemetry.adapters.sns import attributes, subject
from telemetry.core.alerts import (
    AlertState,
    StateKey,
    Status,
    Transition,
    evaluate,
    state_from_json,
    state_to_json,
)
from telemetry.core.conditions import FAULT
from telemetry.core.conditions.rate import RATE_POINTS_MAX, Rate
from telemetry.core.conditions.stuck import STUCK_READINGS, Stuck
from telemetry.core.messages import Reading
from telemetry.core.operators import apply_action, finalize, parse_action
from telemetry.core.rules import (
    RuleFileError,
    RuleSet,
    compiled_rule_set,
    compiled_rules_text,
    parse_rule_file,
)
from tests.localaws import LocalAws, local_stack
from tests.strategies import NOW_MS, constant_signals, ramps, range_fault_values

MINUTE = 60_000
RULES_TEXT = """
rules:
  - name: boiler-heating-rate
    match: {type: temperature}
    rate:
      above: {warning: 2, critical: 5}
      below: {warning: -2}
      per: 1m
      over: 5m
    hysteresis: 0.5
  - name: pressure-stuck
    match: {type: pressure}
    stuck: {for: 30m, tolerance: 0.001}
    stuckSeverity: WARNING
  - name: vibration-spike
    match: {type: vibration}
    spike: {jump: 20}
    spikeSeverity: WARNING
  - name: thermocouple-range
    match: {type: temperature}
    range: {min: -40, max: 150}
    rangeSeverity: WARNING
  - name: boiler-overheat
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    hysteresis: 2
"""
RULES = RuleSet(parse_rule_file(RULES_TEXT, "conditions.yaml"))
KINDS = {"temp-1": "temperature", "p-1": "pressure", "vib-1": "vibration"}


def reading(sensor: str, value: float, at: int) -> Reading:
    return Reading("boiler-3", sensor, value, at, KINDS[sensor])


def run(
    points: Sequence[tuple[str, float, int]],
    rules: RuleSet = RULES,
    state: dict[StateKey, AlertState] | None = None,
    *,
    one_by_one: bool = True,
) -> tuple[dict[StateKey, AlertState], list[Transition]]:
    """Readings through evaluate, as the function sees them: one message each
    (the state stored and loaded between them), or all in one batch."""
    state = dict(state or {})
    out: list[Transition] = []
    batches = [[p] for p in points] if one_by_one else [list(points)]
    for batch in batches:
        readings = [reading(*p) for p in batch]
        result = evaluate(readings, state, rules)
        state = state_from_json(json.loads(json.dumps(state_to_json(result.state))))
        out += result.transitions
    return state, out


def changes(transitions: Sequence[Transition], rule: str) -> list[tuple[str, str, float | None]]:
    return [(t.status.value, t.severity.name, t.value) for t in transitions if t.rule == rule]


# ---------------------------------------------------------------- rate


@given(ramps())
def test_a_monotone_ramp_has_the_rate_it_should(
    ramp: tuple[float, list[tuple[int, float]]],
) -> None:
    # Given a rate per minute over 30 minutes, and a straight ramp
    slope, points = ramp
    rate = Rate(per_ms=MINUTE, over_ms=30 * MINUTE)
    memo: tuple[float, ...] = ()
    measured = []
    # When each reading updates the window
    for at, value in points:
        memo, measure = rate.update(memo, Reading("d", "s", value, at))
        measured.append((at, measure))
        # Then the window is bounded and kept in event time
        assert len(memo) <= 2 * RATE_POINTS_MAX
        assert all(memo[i] >= at - 30 * MINUTE for i in range(0, len(memo), 2))
    # and, once two readings at least 30 s apart are in it, the rate is the ramp's slope
    for at, measure in measured:
        window = [t for t, _ in points if at - 30 * MINUTE <= t <= at]
        assert (measure is not None) == (at - window[0] >= 30_000)
        if measure is not None:
            assert measure.value == pytest.approx(slope, abs=1e-6)
            assert measure.level == measure.value


def test_a_heating_rate_is_raised_escalated_and_resolved_with_hysteresis() -> None:
    # Given a boiler heating 1, then 3, then 6 degrees a minute, then steady
    values = [60, 61, 62, 65, 68, 74, 80, 86, 92, 98, 98, 98, 98, 98]
    points = [("temp-1", float(v), NOW_MS + i * MINUTE) for i, v in enumerate(values)]
    # When the readings arrive one message at a time
    _, transitions = run(points)
    # Then the rate is raised at its warning, escalated past 5/min, and resolved once
    # the fitted slope falls below the warning's clear level (2 - 0.5)
    seen = [(s, sev) for s, sev, _ in changes(transitions, "boiler-heating-rate")]
    assert seen == [
        ("RAISED", "WARNING"),
        ("ESCALATED", "CRITICAL"),
        ("DEESCALATED", "WARNING"),
        ("RESOLVED", "OK"),
    ]
    raised = next(t for t in transitions if t.rule == "boiler-heating-rate")
    assert (raised.direction, raised.threshold, raised.per_ms) == ("rate", 2.0, MINUTE)
    resolved = [t for t in transitions if t.rule == "boiler-heating-rate"][-1]
    assert resolved.threshold == 1.5


def test_a_falling_rate_is_a_rate_below() -> None:
    # Given a temperature falling 3 degrees a minute
    points = [("temp-1", 70.0 - 3 * i, NOW_MS + i * MINUTE) for i in range(4)]
    # When evaluated
    _, transitions = run(points)
    # Then a rate alert is raised with the signed rate, and its subject says falling
    (raised,) = [t for t in transitions if t.rule == "boiler-heating-rate"]
    assert raised.value == pytest.approx(-3.0)
    assert subject(raised) == "[WARNING] boiler-3 temp-1 falling 3.0/min (boiler-heating-rate)"


def test_a_rate_is_not_measured_before_two_readings_half_a_per_apart() -> None:
    # Given two readings 20 s apart (per 1m: at least 30 s are needed)
    rate = Rate(per_ms=MINUTE, over_ms=5 * MINUTE)
    memo, first = rate.update((), Reading("d", "s", 10.0, NOW_MS))
    memo, second = rate.update(memo, Reading("d", "s", 30.0, NOW_MS + 20_000))
    # Then nothing is measured yet; at 30 s it is
    assert (first, second) == (None, None)
    _, third = rate.update(memo, Reading("d", "s", 40.0, NOW_MS + 30_000))
    assert third is not None


# ---------------------------------------------------------------- stuck


@given(constant_signals())
def test_a_constant_signal_is_stuck_exactly_when_the_window_spans_for(
    signal: tuple[float, list[int]],
) -> None:
    # Given a sensor that reads one value, at irregular times
    value, times = signal
    for_ms = 30 * MINUTE
    points = [("p-1", value, at) for at in times]
    # When evaluated under a stuck rule of 30m
    _, transitions = run(points)
    # Then it is raised at the first reading whose last 30m span from a reading at
    # or before its start and hold at least three readings, and never resolved
    expected = next(
        (
            at
            for i, at in enumerate(times)
            if times[0] <= at - for_ms
            and sum(1 for t in times[: i + 1] if t >= at - for_ms) >= STUCK_READINGS
        ),
        None,
    )
    stuck = [t for t in transitions if t.rule == "pressure-stuck"]
    if expected is None:
        assert stuck == []
    else:
        (raised,) = stuck
        assert (raised.status, raised.time_ms, raised.value) == (Status.RAISED, expected, value)
        assert (raised.direction, raised.threshold) == ("stuck", 1800.0)


def test_a_stuck_sensor_resolves_when_a_reading_leaves_the_tolerance() -> None:
    # Given a pressure at 4.10 every 10 minutes for 40 minutes, within tolerance
    values = [4.1, 4.1005, 4.0995, 4.1, 4.1]
    points = [("p-1", v, NOW_MS + i * 10 * MINUTE) for i, v in enumerate(values)]
    state, transitions = run(points)
    assert changes(transitions, "pressure-stuck") == [("RAISED", "WARNING", 4.1)]
    assert (
        subject(transitions[-1]) == "[WARNING] boiler-3 p-1 stuck at 4.10 for 30m (pressure-stuck)"
    )
    # When the next reading moves by more than the tolerance
    _, after = run([("p-1", 4.2, NOW_MS + 50 * MINUTE)], state=state)
    # Then it resolves
    assert changes(after, "pressure-stuck") == [("RESOLVED", "OK", 4.2)]


def test_stuck_keeps_a_bounded_memo() -> None:
    # Given a constant sensor read 1,000 times
    stuck = Stuck(for_ms=30 * MINUTE, tolerance=0.0)
    memo: tuple[float, ...] = ()
    for i in range(1000):
        memo, measure = stuck.update(memo, Reading("d", "s", 1.0, NOW_MS + i * 10_000))
    # Then the memo holds the run and its last three reading times, nothing more
    assert len(memo) == 3 + STUCK_READINGS
    assert measure is not None
    assert measure.level == FAULT


# ---------------------------------------------------------------- spike


def test_a_one_reading_glitch_jumps_twice_and_resolves_on_the_first_reading_that_does_not() -> None:
    # Given vibration 10, 40, 10, 11
    points = [("vib-1", float(v), NOW_MS + i * MINUTE) for i, v in enumerate([10, 40, 10, 11])]
    # When evaluated
    _, transitions = run(points)
    # Then one spike episode: raised at 40 (jumped 30), held at 10, resolved at 11
    assert changes(transitions, "vibration-spike") == [
        ("RAISED", "WARNING", 30.0),
        ("RESOLVED", "OK", 1.0),
    ]
    raised = transitions[0]
    assert (raised.direction, raised.threshold) == ("spike", 20.0)
    assert subject(raised) == "[WARNING] boiler-3 vib-1 jumped 30.0 (vibration-spike)"


# ---------------------------------------------------------------- range


@given(range_fault_values())
def test_a_range_fault_never_changes_another_rules_episode(values: list[float]) -> None:
    # Given a thermocouple's readings, some of them impossible
    points = [("temp-1", v, NOW_MS + i * MINUTE) for i, v in enumerate(values)]
    plausible = [p for p in points if -40 <= p[1] <= 150]
    # When they are evaluated with the range rule, and the plausible ones without it
    _, with_faults = run(points)
    without = RuleSet([r for r in RULES.rules if r.name != "thermocouple-range"])
    _, plain = run(plausible, without)
    # Then every other rule's transitions are those of the plausible readings alone
    for rule in ("boiler-overheat", "boiler-heating-rate"):
        assert [t.to_json() for t in with_faults if t.rule == rule] == [
            t.to_json() for t in plain if t.rule == rule
        ]
    # and the range rule raised exactly when an impossible reading followed a plausible one
    faults = [t for t in with_faults if t.rule == "thermocouple-range"]
    assert all(t.direction == "range" for t in faults)
    inside = [-40 <= v <= 150 for v in values]
    raises = [i for i, ok in enumerate(inside) if not ok and (i == 0 or inside[i - 1])]
    assert [t.time_ms for t in faults if t.status is Status.RAISED] == [
        NOW_MS + i * MINUTE for i in raises
    ]


def test_a_failed_thermocouple_neither_escalates_nor_resolves_the_overheat() -> None:
    # Given an overheat WARNING at 80
    state, first = run([("temp-1", 80.0, NOW_MS)])
    assert changes(first, "boiler-overheat") == [("RAISED", "WARNING", 80.0)]
    # When the thermocouple fails open (850), then reads -273
    state, faults = run(
        [("temp-1", 850.0, NOW_MS + MINUTE), ("temp-1", -273.0, NOW_MS + 2 * MINUTE)], state=state
    )
    # Then only the range fault speaks, and the overheat is still a WARNING
    assert [(t.rule, t.status.value) for t in faults] == [("thermocouple-range", "RAISED")]
    assert (
        subject(faults[0]) == "[WARNING] boiler-3 temp-1 out of range: 850.0 (thermocouple-range)"
    )
    assert (faults[0].threshold, faults[0].value) == (150.0, 850.0)
    assert state[("temp-1", "boiler-overheat")].severity.name == "WARNING"
    # When it reads a plausible value again
    _, back = run([("temp-1", 70.0, NOW_MS + 3 * MINUTE)], state=state)
    # Then the fault resolves, and the overheat resolves on that reading (the rate
    # sees 80 then 70, three minutes apart: the readings between were kept from it)
    assert sorted((t.rule, t.status.value) for t in back if t.direction != "rate") == [
        ("boiler-overheat", "RESOLVED"),
        ("thermocouple-range", "RESOLVED"),
    ]


# ---------------------------------------------------------------- the shared alarm


def test_a_late_reading_never_resolves_what_newer_data_decided() -> None:
    # Given a spike raised at 10:01 by a jump from 10 to 40
    state, _ = run([("vib-1", 10.0, NOW_MS), ("vib-1", 40.0, NOW_MS + MINUTE)])
    # When a reading from 10:00:30 arrives late, then the 10:02 one
    state, late = run([("vib-1", 41.0, NOW_MS + 30_000)], state=state)
    # Then the late one changes nothing (not even the spike's previous value)
    assert late == []
    _, next_ = run([("vib-1", 39.0, NOW_MS + 2 * MINUTE)], state=state)
    assert changes(next_, "vibration-spike") == [("RESOLVED", "OK", 1.0)]


def test_a_batch_decides_as_messages_one_by_one() -> None:
    # Given a history of every kind
    points = [
        *[("temp-1", 60.0 + 3 * i, NOW_MS + i * MINUTE) for i in range(6)],
        *[("p-1", 4.1, NOW_MS + i * 10 * MINUTE + 1) for i in range(5)],
        *[("vib-1", float(v), NOW_MS + i * MINUTE + 2) for i, v in enumerate([10, 40, 10, 11])],
    ]
    # When evaluated in one batch and one message at a time
    _, batch = run(points, one_by_one=False)
    _, single = run(sorted(points, key=lambda p: p[2]))
    # Then the transitions are the same
    assert [t.to_json() for t in batch] == [t.to_json() for t in single]


def test_operators_acknowledge_snooze_and_reset_a_latched_condition() -> None:
    # Given a latching spike rule raised by a jump
    text = RULES_TEXT + "    latch: false\n  - name: vib-latched\n    match: {type: vibration}\n"
    text += "    spike: {jump: 5}\n    latch: true\n"
    rules = RuleSet(parse_rule_file(text, "latched.yaml"))
    state, raised = run([("vib-1", 1.0, NOW_MS), ("vib-1", 9.0, NOW_MS + MINUTE)], rules)
    key = ("vib-1", "vib-latched")
    assert [t.status for t in raised if t.rule == "vib-latched"] == [Status.RAISED]

    def act(kind: str, at: int, **extra: Any) -> list[Transition]:
        nonlocal state
        raw = {"action": kind, "deviceId": "boiler-3", "sensorId": key[0], "rule": key[1]}
        outcome = apply_action(
            "boiler-3", state, parse_action(raw | {"by": "maria"} | extra, at), rules, at
        )
        done = finalize(outcome.evaluation, rules, at)
        state = dict(done.state)
        return done.transitions

    # When acknowledged, then the vibration steadies (no jump)
    (ack,) = act("acknowledge", NOW_MS + 2 * MINUTE)
    assert (ack.status, ack.direction) == (Status.ACKNOWLEDGED, "spike")
    state, steady = run([("vib-1", 9.5, NOW_MS + 3 * MINUTE)], rules, state)
    # Then it is LATCHED, not resolved, until an operator resets it
    assert [(t.status, t.direction) for t in steady if t.rule == "vib-latched"] == [
        (Status.LATCHED, "spike")
    ]
    (reset,) = act("reset", NOW_MS + 4 * MINUTE)
    assert (reset.status, reset.direction) == (Status.RESET, "spike")
    # and a snoozed key's next spike is muted
    act("snooze", NOW_MS + 5 * MINUTE, until="1h")
    result = finalize(
        evaluate([reading("vib-1", 30.0, NOW_MS + 6 * MINUTE)], state, rules),
        rules,
        NOW_MS + 6 * MINUTE,
    )
    muted = [t for t in result.transitions if t.rule == "vib-latched"]
    assert [(t.status, t.muted) for t in muted] == [(Status.RAISED, True)]


def test_a_quiet_range_rule_writes_nothing() -> None:
    # Given readings inside the range only, under a range rule alone
    rules = RuleSet([r for r in RULES.rules if r.name == "thermocouple-range"])
    result = evaluate(
        [reading("temp-1", 20.0 + i, NOW_MS + i * MINUTE) for i in range(5)], {}, rules
    )
    # Then nothing is stored for it (a range keeps nothing per key)
    assert not result.changed


# ---------------------------------------------------------------- rule files


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("rate: {per: 1m, over: 5m}", "rate: needs a level"),
        (
            "rate: {above: {warning: 2}, per: 5m, over: 1m}",
            "rate.over: '1m' is shorter than rate.per",
        ),
        ("stuck: {for: 30m, tolerance: -0.1}", "stuck.tolerance: must not be negative"),
        ("spike: {jump: -3}", "spike.jump: must not be negative"),
        ("range: {min: 10, max: 5}", "range.min: 10 must be below range.max (5)"),
        ("range: {min: 5, max: 5}", "range.min: 5 must be below range.max (5)"),
        (
            "above: {warning: 3}\n    spike: {jump: 3}",
            "a rule has one kind of condition; this one has above/below and spike",
        ),
        ("rate: {above: {warning: 2}, bogus: 1}", "rate.bogus: not a setting here (known: above"),
        ("stuck: {for: soon}", "stuck.for: 'soon' is not a duration"),
        ("spike: {jump: 3}\n    hysteresis: 1", "hysteresis: a spike rule has no levels to clear"),
    ],
)
def test_a_rule_file_mistake_is_named_in_a_persons_words(rule: str, problem: str) -> None:
    # Given a rule with one mistake
    text = f"rules:\n  - name: r\n    {rule}\n"
    # When it is checked, Then the problem names the field and says what is wrong
    with pytest.raises(RuleFileError) as caught:
        parse_rule_file(text, "bad.yaml")
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_the_compiled_rules_cache_carries_every_kind() -> None:
    # Given the rules compiled as the build writes them
    text = compiled_rules_text(RULES, "digest")
    # When a cold start reads them back, Then they are the same rules
    back = compiled_rule_set(text, "digest")
    assert back is not None
    assert back.rules == RULES.rules


def test_the_json_schema_knows_every_kind() -> None:
    # Given the rule file's JSON Schema
    import jsonschema  # a dev dependency: absent, this fails (never skips)
    import yaml

    from telemetry.core.rule_specs import rule_file_schema

    schema = rule_file_schema()
    # Then a rule is of levels or of one condition, and every key of the contract is there
    rule = schema["$defs"]["ConditionRuleSpec"]["properties"]
    for key in (
        "rate",
        "stuck",
        "stuckSeverity",
        "spike",
        "spikeSeverity",
        "range",
        "rangeSeverity",
    ):
        assert key in rule
    assert "above" not in rule
    assert set(schema["$defs"]["RateSpec"]["properties"]) == {"above", "below", "per", "over"}
    assert set(schema["$defs"]["StuckSpec"]["properties"]) == {"for", "tolerance"}
    # and the rules of every kind validate against it, while a misspelt key does not
    jsonschema.validate(yaml.safe_load(RULES_TEXT), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"rules": [{"name": "r", "spike": {"jupm": 3}}]}, schema)


def test_sns_filter_attributes_name_the_condition() -> None:
    # Given a range fault
    _, (fault,) = run([("temp-1", 850.0, NOW_MS)])
    # Then operators can filter sensor faults by direction
    assert attributes(fault)["direction"] == {"DataType": "String", "StringValue": "range"}


# ---------------------------------------------------------------- end to end


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[LocalAws]:
    (tmp_path / "rules.yaml").write_text(RULES_TEXT)
    with local_stack(["boiler-3"], NOW_MS) as stack:
        stack.rules_path = str(tmp_path / "rules.yaml")  # type: ignore[attr-defined]
        yield stack


def _message(at: int, *readings: tuple[str, float]) -> dict[str, Any]:
    data = [{"sensorId": s, "type": KINDS[s], "value": v, "unit": "C"} for s, v in readings]
    return {"deviceId": "boiler-3", "timestamp": at, "receivedAt": at + 50, "data": data}


def test_every_kind_through_the_handler(aws: LocalAws, tmp_path: Path) -> None:
    # Given the function with rules of every kind
    rules = tmp_path / "every-kind.yaml"
    rules.write_text(RULES_TEXT.replace("over: 5m", "over: 30m"))
    rt, _ = aws.runtime(RULES_PATH=str(rules))
    # When a boiler heats fast, its pressure sensor freezes, its vibration jumps and
    # its thermocouple fails open
    temps = [10.0, 35.0, 60.0, 70.0, 850.0]
    vib = [10.0, 10.0, 40.0, 40.0, 40.0]
    for i in range(5):
        at = NOW_MS + i * 10 * MINUTE
        aws.now_ms = at + 100
        handler.handle(_message(at, ("temp-1", temps[i]), ("p-1", 4.1), ("vib-1", vib[i])), rt)
    # Then operators hear of each, with its direction, in the subject's words
    alerts = aws.alerts()
    raised = {a["rule"]: a for a in alerts if a["status"] == "RAISED"}
    assert {r: a["direction"] for r, a in raised.items()} == {
        "boiler-heating-rate": "rate",
        "pressure-stuck": "stuck",
        "vibration-spike": "spike",
        "thermocouple-range": "range",
    }
    assert raised["thermocouple-range"]["_attributes"]["direction"] == "range"
    assert raised["pressure-stuck"]["threshold"] == 1800.0
    assert raised["vibration-spike"]["value"] == 30.0
    # and the overheat rule never saw 850
    assert "boiler-overheat" not in raised
    # and the alert history holds them
    history = [r for r in aws.records("alert") if r["MeasureName"] == "alert"]
    directions = {d["Value"] for r in history for d in r["Dimensions"] if d["Name"] == "direction"}
    assert directions == {"rate", "stuck", "spike", "range"}
    # and the shadow mirrors the top episode of each sensor with its direction
    shadow = aws.shadow("boiler-3")["alerts"]
    assert shadow["temp-1"]["direction"] in {"rate", "range"}
    assert shadow["p-1"]["direction"] == "stuck"


def test_the_dashboards_draw_no_condition_as_a_level_of_the_value() -> None:
    # Given the rules of every kind
    from dashboards.build import type_levels

    # When the dashboards' per-type panels take their levels from them
    levels = type_levels(RULES.rules)
    # Then only the levels rule is drawn on the temperature graph (a rate is per
    # minute, a range fault is not a level of the process)
    assert levels == {
        "temperature": [("boiler-overheat", {"above.warning": 75, "above.critical": 90})]
    }


def test_backtest_replays_every_kind_with_its_episodes() -> None:
    # Given the recorded history of docs/conditions.md
    sample = Path(__file__).resolve().parent.parent / "telemetry" / "samples" / "conditions.jsonl"
    lines = [json.loads(line) for line in sample.read_text(encoding="utf-8").splitlines()]
    # When operators replay it against the rules
    result = backtest.replay(lines, RULES)
    summaries = {s.rule: s for s in backtest.summarize(result, RULES, flap_window_ms=5 * MINUTE)}
    # Then each kind had one episode, closed, and the JSON lines say which kind it was
    assert {rule: (s.episodes, s.still_open) for rule, s in summaries.items()} == dict.fromkeys(
        (
            "boiler-heating-rate",
            "pressure-stuck",
            "vibration-spike",
            "thermocouple-range",
            "boiler-overheat",
        ),
        (1, 0),
    )
    out = io.StringIO()
    backtest.write_jsonl(result.transitions, out)
    directions = {
        json.loads(line)["rule"]: json.loads(line)["direction"]
        for line in out.getvalue().splitlines()
    }
    assert directions == {
        "boiler-heating-rate": "rate",
        "pressure-stuck": "stuck",
        "vibration-spike": "spike",
        "thermocouple-range": "range",
        "boiler-overheat": "above",
    }
