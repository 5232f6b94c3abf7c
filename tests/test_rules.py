"""Rule files: loading, every validation error, matching and the JSON Schema."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from telemetry.core.alerts import evaluate
from telemetry.core.messages import Reading
from telemetry.core.rules import (
    DEVICE_THRESHOLD_RULE,
    Rule,
    RuleFileError,
    RuleSet,
    RuleSpec,
    Side,
    compile_rule,
    load_rules,
    parse_duration_ms,
    parse_rule_file,
    rule_file_schema,
    rule_problems,
)
from tests.strategies import NOW_MS, rule_dicts, rule_file_dicts

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "default.yaml"
SOURCE = "plant/boilers.yaml"


def write(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path


def problems_of(text: str, source: str = SOURCE) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        parse_rule_file(text, source)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def only_problem(text: str) -> str:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


def assert_names(problem: str, rule: str | None, field: str) -> None:
    """The error names the file, the rule and the field."""
    assert problem.startswith(f"{SOURCE}: ")
    if rule is not None:
        assert f"rule {rule!r}" in problem
    assert field in problem


def reading(**fields: Any) -> Reading:
    defaults: dict[str, Any] = {
        "device_id": "boiler-7",
        "sensor_id": "temp-1",
        "value": 80.0,
        "time_ms": NOW_MS,
        "type": "temperature",
        "location": "line-3",
    }
    return Reading(**(defaults | fields))


# --- a good file ----------------------------------------------------------------


def test_issue_example_rule_loads_and_compiles() -> None:
    # Given the rule of the issue's example
    text = """
rules:
  - name: boiler-temperature
    match: {type: temperature, deviceId: "boiler-*"}
    above: {warning: 75, critical: 90}
    below: {warning: 1.2, critical: 0.8}
    hysteresis: 0.2
    for: 3
"""

    # When it is parsed
    (rule,) = parse_rule_file(text, SOURCE)

    # Then it compiles to what the evaluator needs
    assert rule == Rule(
        name="boiler-temperature",
        sides=(Side("above", 75.0, 90.0), Side("below", 1.2, 0.8)),
        hysteresis=0.2,
        for_readings=3,
        for_ms=None,
        match=(("deviceId", "boiler-*"), ("type", "temperature")),
    )


@pytest.mark.parametrize(
    ("text", "ms"), [("500ms", 500), ("90s", 90_000), ("5m", 300_000), ("1h30m", 5_400_000)]
)
def test_duration_for_compiles_to_milliseconds(text: str, ms: int) -> None:
    # Given a rule whose `for` is a duration
    spec = RuleSpec.model_validate({"name": "r", "above": {"warning": 1}, "for": text})

    # When it is compiled
    rule = compile_rule(spec)

    # Then the breach must hold that many milliseconds of reading time
    assert (rule.for_ms, rule.for_readings) == (ms, 1)
    assert parse_duration_ms(text) == ms


def test_defaults_are_hysteresis_zero_and_for_one_reading() -> None:
    # Given a rule with only a level
    text = "rules: [{name: r, above: {critical: 5}}]"

    # When it is parsed
    (rule,) = parse_rule_file(text, SOURCE)

    # Then it clears at its level and reacts to a single reading
    assert (rule.hysteresis, rule.for_readings, rule.for_ms, rule.match) == (0.0, 1, None, ())


def test_empty_file_has_no_rules() -> None:
    # Given an empty rule file
    # When it is parsed
    loaded = parse_rule_file("", SOURCE)

    # Then it holds no rules, and is no error
    assert loaded == []


# --- every error, naming file, rule and field -----------------------------------


def test_unknown_top_level_key_is_named() -> None:
    # Given a file with a key beside `rules`
    text = "rules: []\nrulez: []\n"

    # When it is parsed
    problem = only_problem(text)

    # Then the error names the file and the key
    assert_names(problem, None, "rulez")


def test_unknown_rule_key_is_named() -> None:
    # Given a rule with a misspelt key
    text = "rules: [{name: hot, above: {warning: 1}, hysterisis: 2}]"

    # When it is parsed
    problem = only_problem(text)

    # Then the error names file, rule and key
    assert_names(problem, "hot", "hysterisis")


def test_unknown_match_key_is_named() -> None:
    # Given a rule matching on an attribute readings do not have
    text = "rules: [{name: hot, match: {colour: red}, above: {warning: 1}}]"

    # When it is parsed
    problem = only_problem(text)

    # Then the error names file, rule and match.colour
    assert_names(problem, "hot", "match.colour")


def test_unknown_level_key_in_above_is_named() -> None:
    # Given an `above` with a level the state machine does not know
    text = "rules: [{name: hot, above: {warning: 1, emergency: 5}}]"

    # When it is parsed
    problem = only_problem(text)

    # Then the error names file, rule and above.emergency
    assert_names(problem, "hot", "above.emergency")


def test_duplicate_names_within_one_file_are_named() -> None:
    # Given two rules of one file sharing a name
    text = """
rules:
  - {name: hot, above: {warning: 1}}
  - {name: hot, above: {warning: 2}}
"""

    # When it is parsed
    problem = only_problem(text)

    # Then the error names file, rule and the name field
    assert_names(problem, "hot", "name")
    assert "duplicate" in problem


def test_duplicate_names_within_one_file_fail_load_rules(tmp_path: Path) -> None:
    # Given a rule file with the same rule name twice
    path = write(
        tmp_path / "rules.yaml",
        "rules: [{name: hot, above: {warning: 1}}, {name: hot, below: {warning: 0}}]",
    )

    # When it is loaded
    with pytest.raises(RuleFileError) as caught:
        load_rules(path)

    # Then the error names the file, the rule and the name field
    assert str(path) in str(caught.value)
    assert "rule 'hot'" in str(caught.value)
    assert "name: duplicate" in str(caught.value)


def test_duplicate_names_across_files_name_both_files(tmp_path: Path) -> None:
    # Given a directory whose two files define the same rule name
    first = write(tmp_path / "a.yaml", "rules: [{name: hot, above: {warning: 1}}]")
    second = write(tmp_path / "b.yaml", "rules: [{name: hot, above: {warning: 2}}]")

    # When the directory is loaded
    with pytest.raises(RuleFileError) as caught:
        load_rules(tmp_path)

    # Then the error names the second file, the rule, the field and the first file
    (problem,) = caught.value.problems
    assert problem.startswith(f"{second}: rule 'hot': name: duplicate")
    assert str(first) in problem


def test_rule_without_above_or_below_is_named() -> None:
    # Given a rule with no levels at all
    text = "rules: [{name: idle, match: {type: temperature}}]"

    # When it is parsed
    problem = only_problem(text)

    # Then the error names file, rule and above/below
    assert_names(problem, "idle", "above/below")


def test_side_without_any_level_is_named() -> None:
    # Given an `above` with neither warning nor critical
    text = "rules: [{name: idle, above: {}}]"

    # When it is parsed
    problem = only_problem(text)

    # Then the error names file, rule and above
    assert_names(problem, "idle", "above: needs a warning or a critical level")


@pytest.mark.parametrize(
    ("levels", "field"),
    [
        ("above: {warning: 90, critical: 75}", "above.critical"),
        ("above: {warning: 75, critical: 75}", "above.critical"),
        ("below: {warning: 0.8, critical: 1.2}", "below.warning"),
        ("above: {warning: 1}, below: {warning: 2}", "above.warning"),
        ("above: {critical: 1}, below: {critical: 1}", "above.critical"),
    ],
)
def test_levels_out_of_order_are_named(levels: str, field: str) -> None:
    # Given levels not in below.critical < below.warning < above.warning < above.critical order
    text = f"rules: [{{name: misordered, {levels}}}]"

    # When it is parsed
    problem = only_problem(text)

    # Then the error names file, rule and the out-of-order level
    assert_names(problem, "misordered", f"{field}: ")
    assert "must be greater than" in problem


def test_negative_hysteresis_is_named() -> None:
    # Given a rule with a negative hysteresis
    text = "rules: [{name: hot, above: {warning: 75}, hysteresis: -2}]"

    # When it is parsed
    problem = only_problem(text)

    # Then the error names file, rule and hysteresis
    assert_names(problem, "hot", "hysteresis: must not be negative")


@pytest.mark.parametrize(
    ("levels", "hysteresis", "level"),
    [
        ("above: {warning: 75, critical: 90}", 15, "above.critical"),
        ("above: {warning: 75, critical: 90}", 20, "above.critical"),
        ("below: {warning: 1.2, critical: 0.8}", 0.4, "below.critical"),
        ("above: {warning: 8}, below: {warning: 1.2}", 7, "above.warning"),
    ],
)
def test_clear_level_not_strictly_beyond_next_level_is_named(
    levels: str, hysteresis: float, level: str
) -> None:
    # Given a hysteresis wide enough to push a clear level onto or past the next level down
    text = f"rules: [{{name: wide, {levels}, hysteresis: {hysteresis}}}]"

    # When it is parsed
    problems = problems_of(text)

    # Then the error names file, rule, hysteresis and the level concerned
    assert any(
        p.startswith(f"{SOURCE}: rule 'wide': hysteresis: {level} clears at") for p in problems
    ), problems


def test_clear_level_just_beyond_next_level_is_accepted() -> None:
    # Given a hysteresis leaving the critical clear level just above warning
    text = "rules: [{name: snug, above: {warning: 75, critical: 90}, hysteresis: 14.5}]"

    # When it is parsed
    (rule,) = parse_rule_file(text, SOURCE)

    # Then it loads
    assert rule.hysteresis == 14.5


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("0", "for: must be at least 1"),
        ("-3", "for: must be at least 1"),
        ('"5 parsecs"', "for: '5 parsecs' is not a duration"),
        ('"0s"', "for: a duration must be longer than zero"),
        ('""', "for: "),
        ("true", "for"),
        ("1.5", "for"),
    ],
)
def test_bad_for_is_named(value: str, fragment: str) -> None:
    # Given a rule whose `for` is neither a positive count nor a duration
    text = f"rules: [{{name: slow, above: {{warning: 7}}, for: {value}}}]"

    # When it is parsed
    problems = problems_of(text)

    # Then each error names file, rule and `for`
    for problem in problems:
        assert_names(problem, "slow", "for")
    assert any(fragment in p for p in problems), problems


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ("{name: 'bad name', above: {warning: 1}}", "name"),
        ("{above: {warning: 1}}", "name"),
        ("{name: r, above: {warning: '75'}}", "above.warning"),
        ("{name: r, above: {warning: .nan}}", "above.warning"),
        ("{name: r, above: {warning: 1}, hysteresis: .inf}", "hysteresis"),
        ("{name: r, above: {warning: 1}, match: {type: 5}}", "match.type"),
        ("{name: r, above: [75, 90]}", "above"),
    ],
)
def test_wrong_types_are_named(rule: str, field: str) -> None:
    # Given a rule with a field of the wrong type
    text = f"rules: [{rule}]"

    # When it is parsed
    problems = problems_of(text)

    # Then the error names the file, the rule (by name or position) and the field
    assert any(p.startswith(f"{SOURCE}: rule ") and f": {field}" in p for p in problems), problems


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    # Given a file with two broken rules and a good one
    text = """
rules:
  - {name: ok, above: {warning: 1}}
  - {name: first, above: {warning: 9, critical: 3}}
  - {name: second, below: {warning: 1}, for: 0}
"""

    # When it is parsed
    problems = problems_of(text)

    # Then both are reported, each naming its rule
    assert len(problems) == 2
    assert "rule 'first'" in problems[0]
    assert "rule 'second'" in problems[1]


def test_invalid_yaml_is_named_with_its_line() -> None:
    # Given a file that is not YAML
    text = "rules:\n  - name: hot\n    above: {warning: 75\n"

    # When it is parsed
    problem = only_problem(text)

    # Then the error names the file and says where
    assert problem.startswith(f"{SOURCE}: not valid YAML (line ")


@pytest.mark.parametrize(("text", "field"), [("- a\n- b\n", "(file)"), ("rules: 5\n", "rules")])
def test_file_of_the_wrong_shape_is_named(text: str, field: str) -> None:
    # Given a YAML document that is not a rule file
    # When it is parsed
    problem = only_problem(text)

    # Then the error names the file and the offending part
    assert problem.startswith(f"{SOURCE}: {field}: ")


def test_missing_path_is_named(tmp_path: Path) -> None:
    # Given a RULES_PATH that does not exist
    missing = tmp_path / "nowhere.yaml"

    # When it is loaded
    with pytest.raises(RuleFileError) as caught:
        load_rules(missing)

    # Then the error names the path
    assert str(missing) in str(caught.value)
    assert "no such rule file or directory" in str(caught.value)


def test_directory_without_yaml_is_named(tmp_path: Path) -> None:
    # Given a directory with no rule files in it
    write(tmp_path / "README.txt", "rules: []")

    # When it is loaded
    with pytest.raises(RuleFileError) as caught:
        load_rules(tmp_path)

    # Then the error names the directory
    assert str(caught.value) == f"{tmp_path}: no *.yaml rule files in this directory"


def test_problems_of_several_files_are_all_reported(tmp_path: Path) -> None:
    # Given a directory with two broken files
    bad_yaml = write(tmp_path / "a.yaml", "rules: [\n")
    bad_rule = write(tmp_path / "b.yaml", "rules: [{name: r, above: {warning: 1}, for: 0}]")

    # When it is loaded
    with pytest.raises(RuleFileError) as caught:
        load_rules(tmp_path)

    # Then each file's problem is reported, naming that file
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(f"{bad_yaml}: not valid YAML")
    assert problems[1].startswith(f"{bad_rule}: rule 'r': for: ")


# --- loading files and directories ----------------------------------------------


def test_directory_of_several_files_loads_every_rule(tmp_path: Path) -> None:
    # Given a directory of .yaml and .yml files, and a file that is not a rule file
    write(tmp_path / "b.yaml", "rules: [{name: b1, above: {warning: 1}}]")
    write(
        tmp_path / "a.yaml",
        "rules: [{name: a1, above: {warning: 1}}, {name: a2, below: {critical: 0}}]",
    )
    write(tmp_path / "c.yml", "rules: [{name: c1, above: {critical: 3}}]")
    write(tmp_path / "notes.txt", "not: [a rule file")

    # When the directory is loaded
    rules = load_rules(tmp_path)

    # Then every rule of every rule file is in force, files in name order
    assert len(rules) == 4
    assert [r.name for r in rules.rules] == ["a1", "a2", "b1", "c1"]


def test_single_file_loads(tmp_path: Path) -> None:
    # Given RULES_PATH naming one file
    path = write(tmp_path / "only.yaml", "rules: [{name: r, above: {warning: 1}}]")

    # When it is loaded
    rules = load_rules(path)

    # Then its rules are in force
    assert [r.name for r in rules.rules] == ["r"]


def test_shipped_default_rules_load() -> None:
    # Given the rule file shipped with the product
    # When it is loaded
    rules = load_rules(DEFAULT_RULES)

    # Then it covers the common industrial sensor types
    matched_types = {dict(r.match).get("type") for r in rules.rules}
    assert {"temperature", "pressure", "vibration", "humidity"} <= matched_types
    assert len({r.name for r in rules.rules}) == len(rules)


def test_ruleset_refuses_duplicate_names() -> None:
    # Given two compiled rules with one name
    rule = Rule("hot", (Side("above", 1.0, None),))

    # When a RuleSet is built from them
    # Then it refuses
    with pytest.raises(RuleFileError):
        RuleSet([rule, rule])


# --- matching ---------------------------------------------------------------------


BOILER_RULE = compile_rule(
    RuleSpec.model_validate(
        {
            "name": "boiler-temperature",
            "match": {"type": "temperature", "deviceId": "boiler-*"},
            "above": {"warning": 75, "critical": 90},
        }
    )
)


@pytest.mark.parametrize(
    ("fields", "matches"),
    [
        ({}, True),
        ({"device_id": "boiler-12"}, True),
        ({"device_id": "boiler-"}, True),
        ({"device_id": "pump-7"}, False),
        ({"device_id": "my-boiler-7"}, False),
        ({"type": "pressure"}, False),
        ({"type": "Temperature"}, False),
        ({"type": None}, False),
    ],
)
def test_every_given_glob_must_match(fields: dict[str, Any], matches: bool) -> None:
    # Given a rule matching temperature readings of boiler-* devices
    candidate = reading(**fields)

    # When a reading is matched against it
    result = BOILER_RULE.matches(candidate)

    # Then it matches only when the type and the device glob both match
    assert result is matches


@pytest.mark.parametrize(
    ("match", "fields", "matches"),
    [
        ({"sensorId": "temp-?"}, {}, True),
        ({"sensorId": "temp-?"}, {"sensor_id": "temp-12"}, False),
        ({"location": "line-[0-9]"}, {}, True),
        ({"location": "line-*"}, {"location": None}, False),
        ({"location": "*"}, {"location": None}, False),
        ({}, {"type": None, "location": None}, True),
    ],
)
def test_glob_on_sensor_and_location_and_missing_attribute(
    match: dict[str, str], fields: dict[str, Any], matches: bool
) -> None:
    # Given a rule with a sensorId or location glob
    rule = compile_rule(
        RuleSpec.model_validate({"name": "r", "match": match, "above": {"warning": 1}})
    )

    # When a reading is matched against it
    result = rule.matches(reading(**fields))

    # Then it matches when the glob does; a missing attribute never matches
    assert result is matches


def test_reading_gets_every_matching_rule() -> None:
    # Given two rules matching temperature readings and one matching pressure
    rules = RuleSet(
        [
            BOILER_RULE,
            Rule("any-temperature", (Side("above", 50.0, None),), match=(("type", "temp*"),)),
            Rule("pressure", (Side("above", 8.0, None),), match=(("type", "pressure"),)),
        ]
    )

    # When the rules for a boiler temperature reading are looked up
    found = rules.for_reading(reading())

    # Then both temperature rules apply, in file order
    assert [r.name for r in found] == ["boiler-temperature", "any-temperature"]


def test_unmatched_reading_with_thresholds_gets_the_implicit_rule() -> None:
    # Given rules that do not match a reading that carries its own thresholds
    rules = RuleSet([BOILER_RULE])
    candidate = reading(
        device_id="pump-17", value=81.2, warning_threshold=75.0, critical_threshold=90.0
    )

    # When it is looked up and evaluated
    (implicit,) = rules.for_reading(candidate)
    evaluation = evaluate([candidate], {}, rules)

    # Then an `above` rule made of its thresholds raises a warning
    assert implicit.name == DEVICE_THRESHOLD_RULE == "device-thresholds"
    assert implicit.sides == (Side("above", 75.0, 90.0),)
    assert [
        (t.rule, t.status.value, t.severity.name, t.threshold) for t in evaluation.transitions
    ] == [("device-thresholds", "RAISED", "WARNING", 75.0)]


def test_implicit_rule_from_only_a_critical_threshold() -> None:
    # Given a reading with only a critical threshold, no rule matching
    candidate = reading(value=120.0, critical_threshold=100.0)

    # When it is evaluated
    evaluation = evaluate([candidate], {}, RuleSet([]))

    # Then it is raised straight to CRITICAL by the implicit rule
    assert [(t.rule, t.severity.name) for t in evaluation.transitions] == [
        ("device-thresholds", "CRITICAL")
    ]


def test_matching_rule_takes_precedence_over_device_thresholds() -> None:
    # Given a rule that matches a reading carrying its own thresholds
    rules = RuleSet([BOILER_RULE])
    candidate = reading(value=80.0, warning_threshold=10.0, critical_threshold=20.0)

    # When its rules are looked up
    found = rules.for_reading(candidate)

    # Then only the configured rule applies
    assert [r.name for r in found] == ["boiler-temperature"]


def test_unmatched_reading_without_thresholds_is_only_stored() -> None:
    # Given a reading no rule matches and with no thresholds of its own
    candidate = reading(type="vibration", value=1e9)

    # When it is looked up and evaluated
    found = RuleSet([BOILER_RULE]).for_reading(candidate)
    evaluation = evaluate([candidate], {}, RuleSet([BOILER_RULE]))

    # Then no rule applies and nothing happens
    assert found == ()
    assert (evaluation.evaluated, evaluation.transitions, evaluation.changed) == (0, [], False)


# --- JSON Schema ------------------------------------------------------------------


def test_json_schema_describes_the_rule_file() -> None:
    # Given the generated JSON Schema
    # When it is inspected
    schema = rule_file_schema()

    # Then it is a closed 2020-12 schema whose rule keys are the file's, `for` by its alias
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    rule = schema["$defs"]["RuleSpec"]
    assert set(rule["properties"]) == {
        "name",
        "description",
        "match",
        "above",
        "below",
        "hysteresis",
        "for",
        "nodata",
        "nodataSeverity",
        "repeat",
        "latch",
        "offline",
        "offlineSeverity",
        "flapping",
    }
    assert set(schema["properties"]) == {"rules", "gateways", "notifications", "maintenance"}
    assert rule["additionalProperties"] is False
    assert rule["required"] == ["name"]
    assert set(schema["$defs"]["MatchSpec"]["properties"]) == {
        "deviceId",
        "sensorId",
        "type",
        "location",
    }


def test_shipped_default_rules_validate_against_the_schema() -> None:
    # Given the schema and the shipped rule file
    import jsonschema  # a dev dependency: absent, this fails (never skips)

    document = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))

    # When the file is validated against the schema
    validator = jsonschema.Draft202012Validator(rule_file_schema())
    errors = list(validator.iter_errors(document))

    # Then it conforms, and a misspelt key would not
    assert errors == []
    document["rules"][0]["hysterisis"] = 1
    assert not validator.is_valid(document)


@pytest.mark.parametrize(
    ("rule", "valid"),
    [
        ({"name": "hb", "nodata": "5m"}, True),
        ({"name": "hb", "nodata": "1h30m", "nodataSeverity": "CRITICAL"}, True),
        ({"name": "hb", "nodata": "5 minutes"}, False),
        ({"name": "nothing"}, False),
        ({"name": "hot", "above": {"warning": 75}, "for": "5m", "repeat": "1h"}, True),
        ({"name": "hot", "above": {"warning": 75}, "repeat": "hourly"}, False),
    ],
)
def test_the_schema_knows_durations_and_that_a_rule_needs_levels_or_nodata(
    rule: dict[str, Any], valid: bool
) -> None:
    # Given the schema an editor uses, when a rule is checked against it
    import jsonschema

    validator = jsonschema.Draft202012Validator(rule_file_schema())

    # Then it agrees with what loading the rule says
    assert validator.is_valid({"rules": [rule]}) is valid


# --- properties ---------------------------------------------------------------------


@given(rule=rule_dicts())
def test_random_valid_rules_have_no_problems(rule: dict[str, Any]) -> None:
    # Given any rule satisfying the documented constraints
    spec = RuleSpec.model_validate(rule)

    # When it is checked and compiled
    problems = rule_problems(spec)
    compiled = compile_rule(spec)

    # Then it is sound and keeps its levels
    assert problems == []
    assert compiled.name == rule["name"]
    assert {s.name for s in compiled.sides} == {"above", "below"} & set(rule)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=rule_file_dicts())
def test_random_valid_rule_files_always_load(tmp_path: Path, document: dict[str, Any]) -> None:
    # Given a rule file of random valid rules, written as YAML
    path = write(tmp_path / "random.yaml", yaml.safe_dump(document, sort_keys=False))

    # When it is loaded
    rules = load_rules(path)

    # Then every rule is in force, in file order
    assert [r.name for r in rules.rules] == [r["name"] for r in document["rules"]]


# --- problems in the words of the person who wrote the file ------------------------


def test_a_key_given_twice_is_an_error_naming_file_line_and_key() -> None:
    # Given a rule with `above:` written twice (YAML would keep the last silently)
    text = "rules:\n  - name: hot\n    above: {warning: 75}\n    above: {warning: 95}\n"

    # When it is parsed
    problem = only_problem(text)

    # Then the file, the line of the second key and the key are named
    assert problem == f"{SOURCE}: line 4: key 'above' is given twice"


def test_every_key_given_twice_is_named_beside_the_files_other_problems() -> None:
    # Given two keys given twice, and a setting no rule has
    text = (
        "rules:\n"
        "  - name: hot\n"
        "    match: {type: a, type: b}\n"
        "    above: {warning: 75, warning: 80}\n"
        "    bogus: 1\n"
    )

    # When it is parsed, Then all three problems are reported, in file order
    problems = problems_of(text)
    assert problems[:2] == [
        f"{SOURCE}: line 3: key 'type' is given twice",
        f"{SOURCE}: line 4: key 'warning' is given twice",
    ]
    assert any("bogus" in p for p in problems[2:])


def test_schema_and_rule_level_problems_of_one_file_are_reported_together() -> None:
    # Given one rule with a wrong type and another with levels out of order
    text = """
rules:
  - {name: typed, above: {warning: "75"}}
  - {name: ordered, above: {warning: 9, critical: 3}}
"""

    # When it is parsed
    problems = problems_of(text)

    # Then both are reported
    assert [p.split(": ")[1] for p in problems] == ["rule 'typed'", "rule 'ordered'"]
    assert problems[0] == f"{SOURCE}: rule 'typed': above.warning: must be a number"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "{name: r, above: {warning: 7}, for: 1.5}",
            "for: must be a whole number of readings (such as 3) or a duration (such as 5m)",
        ),
        ("{name: r, above: 75}", "above: must be a mapping of settings (key: value)"),
        (
            "{name: r, above: {warning: 7}, fore: 3}",
            (
                "fore: not a setting here (known: name, description, match, above, below, "
                "hysteresis, for, nodata, nodataSeverity, repeat, latch, offline, "
                "offlineSeverity, flapping)"
            ),
        ),
        (
            "{name: r, above: {warn: 7}}",
            "above.warn: not a setting here (known: warning, critical)",
        ),
        ("{name: r, nodata: 5}", "nodata: must be a duration such as 5m or 1h"),
        ("{name: r, nodata: 5m, nodataSeverity: HIGH}", "nodataSeverity: must be 'WARNING'"),
        ("{name: r, above: {warning: 7}, latch: yes please}", "latch: must be true or false"),
    ],
)
def test_each_problem_is_one_line_a_person_understands(rule: str, expected: str) -> None:
    # Given a rule with one mistake
    # When it is parsed
    problem = only_problem(f"rules: [{rule}]")

    # Then it is one line, naming the rule and the field in the file's words
    assert problem.startswith(f"{SOURCE}: rule 'r': {expected}")
    assert "Input should be" not in problem
    assert "\n" not in problem


def test_a_file_that_is_not_a_mapping_says_what_a_rule_file_is() -> None:
    # When a YAML list is parsed as a rule file
    problem = only_problem("- a\n- b\n")

    # Then the message says what is expected, not pydantic's model name
    assert problem == f"{SOURCE}: (file): a rule file must be a mapping with a 'rules:' list"


def test_a_yaml_syntax_error_is_one_short_line_with_line_and_column() -> None:
    # When a file with an unclosed flow mapping is parsed
    problem = only_problem("rules:\n  - name: hot\n    above: {warning: 75\n")

    # Then it is one line saying where
    assert re.fullmatch(rf"{SOURCE}: not valid YAML \(line \d+, column \d+\): [^\n]+", problem)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("nodata: 30s", "nodata: '30s' is shorter than the least allowed, 1m"),
        ("nodata: 8d", "nodata: '8d' is longer than the most allowed, 7d"),
        ("nodata: soon", "nodata: 'soon' is not a duration such as 90s, 5m or 1h30m"),
        ("repeat: 10s", "repeat: '10s' is shorter than the least allowed, 1m"),
    ],
)
def test_nodata_and_repeat_take_durations_within_their_bounds(extra: str, fragment: str) -> None:
    # Given a rule with an out-of-bounds duration
    problem = only_problem(f"rules: [{{name: r, above: {{warning: 7}}, {extra}}}]")

    # Then the problem names the field and the bound
    assert problem == f"{SOURCE}: rule 'r': {fragment}"


def test_a_rule_may_be_nodata_alone_and_compiles_its_timers() -> None:
    # Given a heartbeat rule with no levels, and a mixed rule
    text = """
rules:
  - {name: pump-heartbeat, match: {deviceId: "pump-*"}, nodata: 5m}
  - name: boiler-temperature
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    nodata: 10m
    nodataSeverity: CRITICAL
    repeat: 1h
    latch: true
"""

    # When it is parsed
    heartbeat, boiler = parse_rule_file(text, SOURCE)

    # Then both compile with their durations in milliseconds
    assert (heartbeat.sides, heartbeat.nodata_ms, heartbeat.nodata_severity) == (
        (),
        300_000,
        "WARNING",
    )
    assert (boiler.nodata_ms, boiler.nodata_severity) == (600_000, "CRITICAL")
    assert (boiler.repeat_ms, boiler.latch) == (3_600_000, True)


def test_a_rule_needs_levels_or_nodata_and_only_levels_can_latch() -> None:
    # When rules with nothing to watch, or a latch without levels, are parsed
    problems = problems_of("rules: [{name: empty}, {name: latched, nodata: 5m, latch: true}]")

    # Then each says what it lacks
    assert problems == [
        (
            f"{SOURCE}: rule 'empty': above/below/nodata/offline: "
            "a rule needs above, below, nodata, offline or a mix"
        ),
        f"{SOURCE}: rule 'latched': latch: only a rule with above or below levels can latch",
    ]


def test_a_rule_with_a_schema_problem_is_still_checked_for_its_levels() -> None:
    # Given a rule with an unknown key and its levels out of order
    text = "rules: [{name: r, above: {warning: 90, critical: 75}, fore: 3}]"

    # When it is parsed, Then both problems are reported
    problems = problems_of(text)
    assert [p.split(": ")[2] for p in problems] == ["fore", "above.critical"]
