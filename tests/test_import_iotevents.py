"""`telemetry import iotevents`: IoT Events models to rules, and what did not convert.

Each fixture under tests/fixtures/iotevents/ is a model of the shapes AWS's
documentation and public samples show. For each one that converts, the same
history is replayed through the converted rule with the backtest, and the
episodes must be those IoT Events' documented semantics give: written here by
hand from those semantics (the comments say which), never from our output.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from telemetry import backtest
from telemetry.core.rules import RuleSet, load_rules, parse_rule_file
from telemetry.importers import iotevents
from telemetry.importers.iotevents import Options, convert, parse_condition, parse_mapping
from tests.strategies import iotevents_thresholds, readings_near

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "iotevents"
T0 = 1_764_237_600_000  # 2025-11-27T10:00:00Z
MINUTE = 60_000


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def imported(name: str, options: Options | None = None) -> iotevents.ImportResult:
    return convert([(name, fixture(name))], options)


def rule_set(result: iotevents.ImportResult, tmp_path: Path) -> RuleSet:
    path = tmp_path / "imported.yaml"
    path.write_text(yaml.safe_dump({"rules": result.rules}, sort_keys=False), encoding="utf-8")
    return load_rules(path)


def history(
    values: list[float], *, type_: str, minutes: list[int] | None = None
) -> list[dict[str, Any]]:
    """One device's readings of one sensor, a minute apart unless `minutes` says when."""
    at = minutes if minutes is not None else list(range(len(values)))
    return [
        {
            "deviceId": "unit-1",
            "timestamp": T0 + m * MINUTE,
            "data": [{"sensorId": "s-1", "type": type_, "value": v}],
        }
        for m, v in zip(at, values, strict=True)
    ]


def changes(rules: RuleSet, messages: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(status, severity, minute) of each transition the replay makes."""
    result = backtest.replay(messages, rules, wall_ms=T0 + 60 * MINUTE)
    return [
        (t.status.value, t.severity.name, (t.time_ms - T0) // MINUTE) for t in result.transitions
    ]


def telemetry(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


# --- alarm models -------------------------------------------------------------


def test_an_alarm_model_becomes_a_rule_with_its_latch_and_advice() -> None:
    # Given describe-alarm-model's output (bare) with an acknowledge flow, an SNS
    # action and an e-mail notification
    # When it is converted
    model = imported("alarm-tank-temperature.json").to_json()["models"][0]

    # Then one rule: above 70 at WARNING (severity 3 > --critical-at 1), latching
    assert model["name"] == "tankTemperatureHigh"
    assert model["kind"] == "alarm"
    assert model["notConverted"] == []
    [converted] = model["converted"]
    assert converted["path"] == "$.alarmRule.simpleRule"
    rule = converted["rule"]
    assert rule["match"] == {"type": "temperature"}
    assert rule["above"] == {"warning": 70}
    assert rule["latch"] is True
    # And the notifications are advice naming the filter policy that matches
    advice = {a["path"]: a["advice"] for a in model["advice"]}
    policy = '{"rule": ["tankTemperatureHigh"]}'
    assert policy in advice["$.alarmEventActions.alarmActions[0].sns"]
    assert (
        "protocol email"
        in advice["$.alarmNotification.notificationActions[0].emailConfigurations[0]"]
    )
    assert (
        "protocol lambda"
        in advice["$.alarmNotification.notificationActions[0].action.lambdaAction"]
    )
    assert "match" not in advice["$.key"]
    assert "becomes nothing" in advice["$.key"]
    assert (
        "TankInput.sensorData.temperature=type:VALUE"
        in advice["$.alarmRule.simpleRule.inputProperty"]
    )


def test_a_latching_alarm_replays_as_iot_events_latches_it(tmp_path: Path) -> None:
    # Given the tank alarm (GREATER 70, acknowledge flow enabled), converted
    rules = rule_set(imported("alarm-tank-temperature.json"), tmp_path)

    # When readings 70, 71, 75, 69, 72, 68 are replayed
    got = changes(rules, history([70, 71, 75, 69, 72, 68], type_="temperature"))

    # Then as IoT Events: 70 is not GREATER than 70 (NORMAL); 71 makes it ACTIVE;
    # 69 LATCHED (back in range, not acknowledged); 72 ACTIVE again in the same
    # alarm; 68 LATCHED again; nobody acknowledges, so it never returns to NORMAL
    assert got == [("RAISED", "WARNING", 1), ("LATCHED", "WARNING", 3), ("LATCHED", "WARNING", 5)]


def test_greater_or_equal_breaches_at_the_threshold_itself(tmp_path: Path) -> None:
    # Given a wrapped alarm model: GREATER_OR_EQUAL 100, severity 1, disabled on init
    result = imported("alarm-boiler-pressure.json")
    model = result.to_json()["models"][0]
    rules = rule_set(result, tmp_path)

    # When 99.9, 100, 101, 99.99, 100, 50 are replayed
    got = changes(rules, history([99.9, 100, 101, 99.99, 100, 50], type_="pressure"))

    # Then as IoT Events' >=: ACTIVE at 100, NORMAL at 99.99, ACTIVE at 100, NORMAL
    # at 50; severity 1 is CRITICAL with the default --critical-at 1
    assert got == [
        ("RAISED", "CRITICAL", 1),
        ("RESOLVED", "OK", 3),
        ("RAISED", "CRITICAL", 4),
        ("RESOLVED", "OK", 5),
    ]
    assert model["converted"][0]["rule"]["above"] == {"critical": math.nextafter(100, 0)}
    paths = [a["path"] for a in model["advice"]]
    assert "$.alarmCapabilities.initializationConfiguration.disabledOnInitialization" in paths
    assert "$.alarmRule.simpleRule.comparisonOperator" in paths
    assert "latch" not in model["converted"][0]["rule"]


def test_a_list_of_alarm_models_converts_what_it_can_and_reports_the_rest(
    tmp_path: Path,
) -> None:
    # Given a JSON list: LESS_OR_EQUAL 20, EQUAL 1, and a threshold that is an expression
    result = imported("alarm-models-list.json")
    models = result.to_json()["models"]

    # Then the first converts, EQUAL is reported (not guessed), the expression too
    assert [m["name"] for m in models] == ["batteryLow", "doorOpen", "tankLevelOverLimit"]
    assert models[0]["notConverted"] == []
    assert models[0]["converted"][0]["rule"]["below"] == {"warning": math.nextafter(20, 100)}
    assert [n["path"] for n in models[1]["notConverted"]] == [
        "$.alarmRule.simpleRule.comparisonOperator"
    ]
    assert models[1]["converted"] == []
    assert [n["path"] for n in models[2]["notConverted"]] == ["$.alarmRule.simpleRule.threshold"]
    assert not result.complete
    advice = {a["path"] for a in models[0]["advice"]}
    assert {
        "$.alarmEventActions.alarmActions[0].iotTopicPublish",
        "$.alarmEventActions.alarmActions[1].sqs",
    } <= advice

    # And the converted rule replays as IoT Events' <=: ACTIVE at 20, NORMAL above 20
    got = changes(rule_set(result, tmp_path), history([25, 20, 19, 20.5, 21, 20], type_="battery"))
    assert got == [("RAISED", "WARNING", 1), ("RESOLVED", "OK", 3), ("RAISED", "WARNING", 5)]


def test_critical_at_chooses_which_severities_page() -> None:
    # Given the tank alarm, severity 3
    # When --critical-at 3, Then it is CRITICAL; at 2, WARNING
    high = imported("alarm-tank-temperature.json", Options(critical_at=3))
    low = imported("alarm-tank-temperature.json", Options(critical_at=2))
    assert high.rules[0]["above"] == {"critical": 70}
    assert low.rules[0]["above"] == {"warning": 70}


def test_a_mapping_names_the_readings_an_input_property_stands_for() -> None:
    # Given --map for the tank's input property
    options = Options(mappings=(parse_mapping("TankInput.sensorData.temperature=sensorId:t-*"),))

    # When converted, Then the match is the mapping's, and no advice guesses a type
    result = imported("alarm-tank-temperature.json", options)
    assert result.rules[0]["match"] == {"sensorId": "t-*"}
    assert not [
        a for a in result.models[0].advice if a[0] == "$.alarmRule.simpleRule.inputProperty"
    ]
    assert result.unused_mappings(options) == []


@given(threshold=iotevents_thresholds(), data=st.data())
def test_a_converted_level_breaches_exactly_where_the_operator_holds(
    threshold: float, data: st.DataObject
) -> None:
    # Given an alarm model comparing with any operator against any literal
    operator = data.draw(st.sampled_from(("GREATER", "GREATER_OR_EQUAL", "LESS", "LESS_OR_EQUAL")))
    model = {
        "alarmModelName": "m",
        "severity": 2,
        "alarmRule": {
            "simpleRule": {
                "inputProperty": "$input.I.v",
                "comparisonOperator": operator,
                "threshold": repr(threshold),
            }
        },
    }
    # When it is converted and compiled as the function compiles rules
    result = convert([("m.json", model)])
    [rule] = parse_rule_file(yaml.safe_dump({"rules": result.rules}), "m.yaml")

    # Then any reading breaches the rule exactly when IoT Events' comparison holds
    value = data.draw(readings_near(threshold))
    holds = {
        "GREATER": value > threshold,
        "GREATER_OR_EQUAL": value >= threshold,
        "LESS": value < threshold,
        "LESS_OR_EQUAL": value <= threshold,
    }[operator]
    assert rule.breaches(value) is holds


# --- detector models ----------------------------------------------------------


def test_a_two_state_threshold_detector_becomes_a_rule_with_hysteresis(tmp_path: Path) -> None:
    # Given a describe-detector-model output: Normal -> Overheated when > 85, back
    # when <= 80, an SNS action on entering Overheated and a Lambda on the way back
    result = imported("detector-compressor-threshold.json")
    model = result.to_json()["models"][0]

    # Then one WARNING rule above 85 clearing at 80, the actions as advice
    assert model["kind"] == "detector"
    assert model["notConverted"] == []
    [converted] = model["converted"]
    assert converted["path"] == "$.detectorModelDefinition.states[0].onInput.transitionEvents[0]"
    assert converted["rule"]["above"] == {"warning": 85}
    assert converted["rule"]["hysteresis"] == 5
    advice = [a["path"] for a in model["advice"]]
    assert "$.detectorModelDefinition.states[1].onEnter.events[0].actions[0].sns" in advice
    assert (
        "$.detectorModelDefinition.states[1].onInput.transitionEvents[0].actions[0].lambda"
        in advice
    )

    # When 80, 86, 83, 81, 80, 85, 86, 79 are replayed
    got = changes(
        rule_set(result, tmp_path), history([80, 86, 83, 81, 80, 85, 86, 79], type_="temperature")
    )

    # Then as the detector: Overheated at 86; 83 and 81 are not <= 80 (stays);
    # Normal at 80; 85 is not > 85; Overheated at 86; Normal at 79
    assert got == [
        ("RAISED", "WARNING", 1),
        ("RESOLVED", "OK", 4),
        ("RAISED", "WARNING", 6),
        ("RESOLVED", "OK", 7),
    ]


def test_a_counter_of_breaches_in_a_row_becomes_for(tmp_path: Path) -> None:
    # Given a SERIAL detector counting inputs > 900, reset by one <= 900 and on
    # entering Normal, that moves to OverTemperature when the count reaches 3
    result = imported("detector-furnace-counter.json")

    # Then the rule is above 900 for 3 readings, and nothing is left out
    assert result.complete
    assert result.rules[0]["above"] == {"warning": 900}
    assert result.rules[0]["for"] == 3

    # When 901, 950, 899, 910, 920, 930, 940, 900, 901 are replayed
    values = [901, 950, 899, 910, 920, 930, 940, 900, 901]
    got = changes(rule_set(result, tmp_path), history(values, type_="temperature"))

    # Then as SERIAL evaluation: the count goes 1, 2, 0 (899), 1, 2, 3 and the
    # transition sees 3 on the sixth input; 900 returns to Normal (count 0); 901
    # counts 1
    assert got == [("RAISED", "WARNING", 5), ("RESOLVED", "OK", 7)]


def test_a_counter_under_batch_evaluation_is_reported_not_guessed() -> None:
    # Given the same counter with evaluationMethod BATCH
    result = imported("detector-furnace-counter-batch.json")
    model = result.to_json()["models"][0]

    # Then nothing converts, the evaluation method is named, and every event is listed
    assert model["converted"] == []
    assert model["notConverted"][0]["path"] == "$.evaluationMethod"
    assert "BATCH" in model["notConverted"][0]["reason"]
    listed = {n["path"] for n in model["notConverted"]}
    assert "$.detectorModelDefinition.states[0].onInput.events[0]" in listed
    assert "$.detectorModelDefinition.states[1].onEnter.events[0]" in listed


def test_a_heartbeat_timer_becomes_nodata(tmp_path: Path) -> None:
    # Given a detector whose 300 s timer is set on entering Online, reset by every
    # heartbeat input, and whose timeout() moves to Offline until the next input
    options = Options(mappings=(parse_mapping("PumpHeartbeat=type:heartbeat"),))
    result = imported("detector-pump-heartbeat.json", options)

    # Then a no-data rule of 5 minutes on the mapped readings
    assert result.complete
    assert result.rules[0]["nodata"] == "5m"
    assert result.rules[0]["match"] == {"type": "heartbeat"}

    # When beats arrive at minutes 0, 1, 2, then 10 and 11
    messages = history([1, 1, 1, 1, 1], type_="heartbeat", minutes=[0, 1, 2, 10, 11])
    got = changes(rule_set(result, tmp_path), messages)

    # Then as the timer: it runs out 300 s after the beat at minute 2 (Offline at
    # minute 7) and the beat at minute 10 returns the detector to Online
    assert got == [("RAISED", "WARNING", 7), ("RESOLVED", "OK", 10)]


def test_without_a_mapping_a_heartbeat_watches_every_sensor() -> None:
    # Given the heartbeat detector and no --map
    result = imported("detector-pump-heartbeat.json")

    # Then the rule has no match, and the advice says how to narrow it
    assert "match" not in result.rules[0]
    assert any("--map PumpHeartbeat=type:VALUE" in a for _, a in result.models[0].advice)


STATES = "$.detectorModelDefinition.states"


@pytest.mark.parametrize(
    ("name", "first_path"),
    [
        ("detector-motor-pressure.json", f"{STATES}[1].onInput.transitionEvents[0].condition"),
        ("detector-pump-maintenance.json", STATES),
        ("detector-store-cooler.json", STATES),
    ],
)
def test_models_that_are_not_a_pattern_are_reported_whole(name: str, first_path: str) -> None:
    # Given a detector model with more states, arithmetic on variables, or conditions
    # joining inputs and variables (the shapes of the developer guide and the samples)
    result = imported(name)
    model = result.to_json()["models"][0]

    # Then nothing converts, the reason comes first, and every event with actions
    # and every transition is listed with its path
    assert model["converted"] == []
    assert model["notConverted"][0]["path"] == first_path
    document = fixture(name)
    definition = (document.get("detectorModel") or document)["detectorModelDefinition"]
    expected = {
        f"$.detectorModelDefinition.states[{i}].{holder}.{key}[{j}]"
        for i, state in enumerate(definition["states"])
        for holder, key in (
            ("onEnter", "events"),
            ("onInput", "events"),
            ("onInput", "transitionEvents"),
            ("onExit", "events"),
        )
        for j, event in enumerate(state.get(holder, {}).get(key, []))
        if event.get("actions") or key == "transitionEvents"
    }
    assert {n["path"] for n in model["notConverted"][1:]} == expected


def test_more_than_one_model_with_the_same_name_get_distinct_rules() -> None:
    # Given the same model twice
    doc = fixture("alarm-tank-temperature.json")
    result = convert([("a.json", doc), ("b.json", doc)])

    # Then two rules with distinct names, the second told why
    names = [r["name"] for r in result.rules]
    assert names == ["tankTemperatureHigh", "tankTemperatureHigh-2"]
    assert any("named 'tankTemperatureHigh-2'" in a for _, a in result.models[1].advice)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "_Always(input_name=None)"),
        ("true", "_Always(input_name=None)"),
        ('currentInput("A")', "_Always(input_name='A')"),
        ("timeout('t')", "_Timeout(timer='t')"),
        ("($input.A.b.c >= 7.5)", "_Compare(subject='input', name='A.b.c', op='>=', literal=7.5)"),
        ("70 < $input.A.v", "_Compare(subject='input', name='A.v', op='>', literal=70.0)"),
        ("$variable.n == 3", "_Compare(subject='variable', name='n', op='==', literal=3.0)"),
        ("$input.A.v > 1 && $input.B.v > 2", "_Other(text='$input.A.v > 1 && $input.B.v > 2')"),
        ("$input.A.v > $variable.x", "_Other(text='$input.A.v > $variable.x')"),
    ],
)
def test_conditions_are_read_only_in_the_shapes_that_convert(
    text: str | None, expected: str
) -> None:
    # Given an IoT Events condition, When parsed, Then it is one of the converted shapes or Other
    assert repr(parse_condition(text)) == expected


@pytest.mark.parametrize("text", ["nopath", "A.b=color:red", "A.b=type:", "=type:x"])
def test_a_malformed_mapping_is_refused_in_the_users_words(text: str) -> None:
    with pytest.raises(ValueError, match=r"PATH=type:VALUE|map to type or sensorId"):
        parse_mapping(text)


def test_a_document_that_is_not_a_model_is_unreadable() -> None:
    with pytest.raises(iotevents.ModelError, match=r"x\.json: neither an alarm model"):
        convert([("x.json", {"hello": 1})])
    with pytest.raises(iotevents.ModelError, match="empty list"):
        convert([("x.json", [])])


# --- the command line -----------------------------------------------------------------


@pytest.mark.slow
def test_the_command_writes_rules_that_check_and_the_report(tmp_path: Path) -> None:
    # Given every fixture that converts whole
    files = [
        str(FIXTURES / n)
        for n in (
            "alarm-tank-temperature.json",
            "alarm-boiler-pressure.json",
            "detector-compressor-threshold.json",
            "detector-furnace-counter.json",
            "detector-pump-heartbeat.json",
        )
    ]
    out, report = tmp_path / "rules" / "imported.yaml", tmp_path / "report.json"

    # When imported
    done = telemetry("import", "iotevents", *files, "--out", str(out), "--report", str(report))

    # Then exit 0, the report on stderr and as JSON, and `rules check` accepts the file
    assert done.returncode == 0, done.stderr
    assert "every condition converted" in done.stderr
    document = json.loads(report.read_text())
    assert [m["kind"] for m in document["models"]] == ["alarm", "alarm", *["detector"] * 3]
    assert set(document["models"][0]) == {"name", "kind", "converted", "notConverted", "advice"}
    checked = telemetry("rules", "check", str(out))
    assert checked.returncode == 0, checked.stderr
    assert "5 rules in 1 file" in checked.stdout


@pytest.mark.slow
def test_something_left_out_exits_1_and_still_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "imported.yaml"
    done = telemetry(
        "import", "iotevents", str(FIXTURES / "alarm-models-list.json"), "--out", str(out)
    )
    assert done.returncode == 1
    assert "not converted  $.alarmRule.simpleRule.comparisonOperator" in done.stderr
    assert [r["name"] for r in yaml.safe_load(out.read_text())["rules"]] == ["batteryLow"]
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "no such file"),
        ("{not json", "not JSON (line 1, column 2"),
        ('{"hello": 1}', "neither an alarm model"),
    ],
)
def test_unreadable_input_exits_2_with_one_line(
    tmp_path: Path, content: str | None, words: str
) -> None:
    source = tmp_path / "model.json"
    if content is not None:
        source.write_text(content)
    out = tmp_path / "imported.yaml"
    done = telemetry("import", "iotevents", str(source), "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.startswith("telemetry: error: ")
    assert words in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_a_mapping_no_condition_reads_is_a_usage_error(tmp_path: Path) -> None:
    done = telemetry(
        "import", "iotevents", str(FIXTURES / "alarm-tank-temperature.json"),
        "--out", str(tmp_path / "x.yaml"), "--map", "Tank.temp=type:temperature",
    )  # fmt: skip
    assert done.returncode == 2
    assert "--map Tank.temp: no converted condition reads $input.Tank.temp" in done.stderr
    twice = telemetry(
        "import", "iotevents", "x.json", "--map", "A.b=type:x", "--map", "A.b=sensorId:y"
    )  # fmt: skip
    assert twice.returncode == 2
    assert "--map A.b: given twice" in twice.stderr
    bad = telemetry("import", "iotevents", "x.json", "--map", "nonsense")
    assert bad.returncode == 2
    assert "PATH=type:VALUE" in bad.stderr


# --- every way a model falls short of a pattern ------------------------------------


def event(name: str, condition: str | None, *actions: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {"eventName": name, "actions": list(actions)}
    if condition is not None:
        found["condition"] = condition
    return found


def set_variable(name: str, value: str) -> dict[str, Any]:
    return {"setVariable": {"variableName": name, "value": value}}


def set_timer(name: str, seconds: Any, key: str = "seconds") -> dict[str, Any]:
    return {"setTimer": {"timerName": name, key: seconds}}


def two_states(
    raise_if: str = "$input.I.v > 10",
    clear_if: str = "$input.I.v <= 10",
    *,
    normal_enter: tuple[dict[str, Any], ...] = (),
    normal_input: tuple[dict[str, Any], ...] = (),
    alarm_enter: tuple[dict[str, Any], ...] = (),
    alarm_input: tuple[dict[str, Any], ...] = (),
    more_transitions: tuple[dict[str, Any], ...] = (),
    method: str = "SERIAL",
) -> dict[str, Any]:
    """A detector model of two states, Normal and Alarm, to vary one part at a time."""
    return {
        "detectorModelName": "probe",
        "evaluationMethod": method,
        "detectorModelDefinition": {
            "initialStateName": "Normal",
            "states": [
                {
                    "stateName": "Normal",
                    "onEnter": {"events": list(normal_enter)},
                    "onInput": {
                        "events": list(normal_input),
                        "transitionEvents": [
                            {**event("Up", raise_if), "nextState": "Alarm"},
                            *more_transitions,
                        ],
                    },
                },
                {
                    "stateName": "Alarm",
                    "onEnter": {"events": list(alarm_enter)},
                    "onInput": {
                        "events": list(alarm_input),
                        "transitionEvents": [{**event("Down", clear_if), "nextState": "Normal"}],
                    },
                },
            ],
        },
    }


COUNTER_STEPS = (
    event("Add", "$input.I.v > 10", set_variable("n", "$variable.n + 1")),
    event("Zero", "$input.I.v <= 10", set_variable("n", "0")),
)
ZERO_ON_ENTER = (event("Init", "true", set_variable("n", "0")),)
BEAT = (event("Beat", None, {"resetTimer": {"timerName": "hb"}}),)
ARM = (event("Arm", "true", set_timer("hb", 300)),)
DEF = "$.detectorModelDefinition.states"
UP = f"{DEF}[0].onInput.transitionEvents[0].condition"
DOWN = f"{DEF}[1].onInput.transitionEvents[0].condition"
SIMPLE = "$.alarmRule.simpleRule"


@pytest.mark.parametrize(
    ("model", "path", "words"),
    [
        (two_states("$input.I.v == 10"), UP, "not guessed"),
        (two_states(clear_if="$input.J.v <= 10"), DOWN, "the way back must test"),
        (two_states(clear_if="$input.I.v <= 12"), DOWN, "clears inside"),
        (two_states("$input.I.v >= -1.7976931348623157e308"), UP, "beyond the largest"),
        (two_states("true"), UP, "not one input against a literal"),
        (
            two_states(more_transitions=({**event("Stay", "true"), "nextState": "Normal"},)),
            f"{DEF}[0].onInput.transitionEvents[1]",
            "no other",
        ),
        (
            two_states("$variable.n >= 0", normal_input=COUNTER_STEPS, normal_enter=ZERO_ON_ENTER),
            UP,
            "not a count",
        ),
        (two_states("$variable.n >= 3", normal_input=COUNTER_STEPS), UP, "not a counter"),
        (
            two_states(
                "$variable.n >= 3", normal_input=COUNTER_STEPS[:1], normal_enter=ZERO_ON_ENTER
            ),
            UP,
            "not a counter",
        ),
        (
            two_states(
                'timeout("hb")',
                "true",
                normal_enter=ARM,
                normal_input=(*BEAT, event("Stop", "true", {"clearTimer": {"timerName": "hb"}})),
            ),
            UP,
            "not a heartbeat",
        ),
        (
            two_states(
                'timeout("hb")',
                "true",
                normal_enter=(event("Arm", "true", set_timer("hb", 30)),),
                normal_input=BEAT,
            ),
            UP,
            "60 to 604800",
        ),
        (
            two_states('timeout("hb")', "$input.I.v > 0", normal_enter=ARM, normal_input=BEAT),
            DOWN,
            "returns on any input",
        ),
        (two_states('timeout("hb")', "true", normal_input=BEAT), UP, "not a heartbeat"),
    ],
)
def test_a_model_short_of_a_pattern_says_where_and_why(
    model: dict[str, Any], path: str, words: str
) -> None:
    # Given a two-state model that differs from a pattern in one part
    # When converted
    report = convert([("m.json", model)]).models[0]

    # Then nothing converts, and the first item names that part and why
    assert report.converted == []
    assert report.not_converted[0][0] == path
    assert words in report.not_converted[0][1]


@pytest.mark.parametrize(
    ("model", "rule"),
    [
        (
            two_states("$input.I.v < 5", "$input.I.v >= 8"),
            {"below": {"warning": 5}, "hysteresis": 3},
        ),
        (
            two_states("5 >= $input.I.v", "$input.I.v > 5"),
            {"below": {"warning": math.nextafter(5, 6)}},
        ),
        (
            two_states("$variable.n > 2", normal_input=COUNTER_STEPS, normal_enter=ZERO_ON_ENTER),
            {"above": {"warning": 10}, "for": 3},
        ),
        (
            two_states(
                'timeout("hb")',
                'currentInput("Beat")',
                normal_enter=(event("Arm", "true", set_timer("hb", "90", "durationExpression")),),
                normal_input=BEAT,
            ),
            {"nodata": "90s"},
        ),
    ],
)
def test_pattern_variants_convert(model: dict[str, Any], rule: dict[str, Any]) -> None:
    result = convert([("m.json", model)])
    assert result.complete
    got = {k: v for k, v in result.rules[0].items() if k not in {"name", "description", "match"}}
    assert got == rule


def test_what_a_converted_detector_does_besides_its_pattern_is_listed() -> None:
    # Given a threshold detector that also notifies on every input while in alarm,
    # messages another detector and keeps a variable of its own
    model = two_states(
        alarm_enter=(
            event(
                "Out",
                "true",
                {"iotEvents": {"inputName": "Other"}},
                set_variable("seen", "1"),
                {"firehose": {"deliveryStreamName": "s"}},
            ),
        ),
        alarm_input=(event("Nag", "true", {"sns": {"targetArn": "arn:t"}}),),
    )
    # When converted
    report = convert([("m.json", model)]).models[0]

    # Then the rule converts whole, and each of those is reported or advised by its path
    assert len(report.converted) == 1
    reasons = dict(report.not_converted)
    assert "another detector" in reasons[f"{DEF}[1].onEnter.events[0].actions[0].iotEvents"]
    assert "not part of a pattern" in reasons[f"{DEF}[1].onEnter.events[0].actions[1].setVariable"]
    assert "not on a change" in reasons[f"{DEF}[1].onInput.events[0].actions[0].sns"]
    advice = dict(report.advice)
    assert "protocol firehose" in advice[f"{DEF}[1].onEnter.events[0].actions[2].firehose"]


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"alarmRule": {}}, "$.alarmRule", "no simpleRule"),
        (
            {
                "alarmRule": {
                    "simpleRule": {
                        "inputProperty": "$input.I.v",
                        "comparisonOperator": "ABOVE",
                        "threshold": "1",
                    }
                }
            },
            f"{SIMPLE}.comparisonOperator",
            "not a comparison",
        ),
        (
            {
                "alarmRule": {
                    "simpleRule": {
                        "inputProperty": "temperature",
                        "comparisonOperator": "LESS",
                        "threshold": "1",
                    }
                }
            },
            f"{SIMPLE}.inputProperty",
            "not an input attribute",
        ),
        (
            {
                "alarmRule": {
                    "simpleRule": {
                        "inputProperty": "$input.I.v",
                        "comparisonOperator": "LESS_OR_EQUAL",
                        "threshold": "1.7976931348623157e308",
                    }
                }
            },
            f"{SIMPLE}.threshold",
            "beyond the largest",
        ),
    ],
)
def test_an_alarm_model_short_of_a_rule_says_where(
    change: dict[str, Any], path: str, words: str
) -> None:
    model = {**fixture("alarm-tank-temperature.json"), **change}
    report = convert([("m.json", model)]).models[0]
    assert report.converted == []
    assert report.not_converted[0][0] == path
    assert words in report.not_converted[0][1]


def test_alarm_details_without_a_home_become_advice() -> None:
    # Given a model with a long name, no severity, SMS and other actions
    model = {
        "alarmModelName": "x" * 80,
        "alarmRule": {
            "simpleRule": {
                "inputProperty": "$input.I.v",
                "comparisonOperator": "LESS",
                "threshold": 3,
            }
        },
        "alarmNotification": {
            "notificationActions": [
                {"smsConfigurations": [{"recipients": [{"ssoIdentity": {"userId": "u-1"}}]}]}
            ]
        },
        "alarmEventActions": {
            "alarmActions": [
                {"dynamoDBv2": {"tableName": "t"}},
                {"iotEvents": {"inputName": "Next"}},
            ]
        },
    }
    # When converted three times over
    result = convert([("a.json", model), ("b.json", model), ("c.json", model)])

    # Then each rule is WARNING, named within 64 characters, uniquely
    assert [len(r["name"]) for r in result.rules] == [64, 62, 62]
    assert len({r["name"] for r in result.rules}) == 3
    assert result.rules[0]["below"] == {"warning": 3}
    advice = dict(result.models[0].advice)
    assert "no severity" in advice["$.severity"]
    assert "cut to" in advice["$.alarmModelName"]
    assert (
        "protocol sms" in advice["$.alarmNotification.notificationActions[0].smsConfigurations[0]"]
    )
    assert "alert history" in advice["$.alarmEventActions.alarmActions[0].dynamoDBv2"]
    assert "do not feed each other" in advice["$.alarmEventActions.alarmActions[1].iotEvents"]


def test_odd_documents_are_read_as_far_as_they_are_models() -> None:
    # A list holding a non-object is unreadable; a detector without states, or with
    # entries that are not objects, is reported rather than guessed
    with pytest.raises(iotevents.ModelError, match="item 2: not a JSON object"):
        convert([("x.json", [fixture("alarm-tank-temperature.json"), 3])])
    bare = {"detectorModelName": "d", "detectorModelDefinition": {}}
    assert convert([("d.json", bare)]).models[0].not_converted[0][0] == "$.detectorModelDefinition"
    odd = two_states()
    odd["detectorModelDefinition"]["states"][0]["onEnter"]["events"].append("noise")
    odd["detectorModelDefinition"]["states"].append("noise")
    assert convert([("o.json", odd)]).models[0].not_converted[0][0] == DEF
    lost = two_states()
    lost["detectorModelDefinition"]["initialStateName"] = "Nowhere"
    path = convert([("l.json", lost)]).models[0].not_converted[0][0]
    assert path == "$.detectorModelDefinition.initialStateName"
    one_way = two_states()
    one_way["detectorModelDefinition"]["states"][1]["onInput"]["transitionEvents"] = []
    assert "exactly one each way" in convert([("w.json", one_way)]).models[0].not_converted[0][1]
    assert repr(parse_condition("($input.A.v > 1) && ($input.B.v > 2)")).startswith("_Other")
    assert repr(parse_condition("1 > 2")).startswith("_Other")
