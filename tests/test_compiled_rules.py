"""The compiled rule set the build ships: an exact round trip, read at cold start
only when it stands for the rule files as they are, never in their place otherwise."""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry.core import rule_specs
from telemetry.core.rules import (
    COMPILED_NAME,
    Flapping,
    Gateway,
    Notifications,
    Rule,
    RuleFileError,
    RuleSet,
    Side,
    compiled_rule_set,
    compiled_rules_text,
    load_rules,
    rule_files,
    rule_set_from_json,
    rule_set_to_json,
    sources_digest,
)
from tests.strategies import full_rule_file_dicts, rule_names

ROOT = Path(__file__).resolve().parent.parent
TWO_FILES = {
    "boilers.yaml": "rules:\n  - name: boiler-hot\n    above: {warning: 80.5, critical: 95}\n",
    "pumps.yaml": (
        "rules:\n  - name: pump-low\n    below: {critical: 0.1}\n    nodata: 5m\n"
        "gateways:\n  - gateway: gw-1\n    members: {deviceId: pump-*}\n"
        "notifications: {groupBy: [rule], maxPerWindow: 3}\n"
    ),
}


def exactly(rules: RuleSet) -> str:
    """Everything a rule set holds, floats and their types exactly (repr)."""
    return repr((rules.rules, rules.gateways, rules.notifications))


def rules_directory(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


PARSE = rule_specs.load_rule_set


def yaml_only(directory: Path) -> RuleSet:
    """The set as parsing the YAML makes it, whatever compiled file lies beside it."""
    return PARSE(directory)


def refuse_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on parsing YAML fails the test: what loads must come from the compiled file."""

    def refuse(paths: Any) -> RuleSet:
        raise AssertionError(f"parsed the YAML of {paths}")

    monkeypatch.setattr(rule_specs, "load_rule_set", refuse)


# --- the round trip ------------------------------------------------------------


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=full_rule_file_dicts())
def test_any_valid_rule_file_compiles_and_reads_back_exactly(
    tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any]
) -> None:
    # Given a valid rule file using every section, as the loader compiles it
    directory = tmp_path_factory.mktemp("rules")
    (directory / "rules.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    parsed = yaml_only(directory)

    # When it is written as the compiled file and read back
    text = compiled_rules_text(parsed, "digest")
    read = compiled_rule_set(text, "digest")

    # Then the set is the same, value for value and type for type
    assert read is not None
    assert exactly(read) == exactly(parsed)
    assert [r.quiet_low for r in read.rules] == [r.quiet_low for r in parsed.rules]
    assert [r.quiet_high for r in read.rules] == [r.quiet_high for r in parsed.rules]


def finite_levels() -> st.SearchStrategy[float | int | None]:
    return st.one_of(
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-(2**63), max_value=2**63),
    )


def built_rules() -> st.SearchStrategy[Rule]:
    severities = st.sampled_from(["WARNING", "CRITICAL"])
    maybe_ms = st.one_of(st.none(), st.integers(min_value=1, max_value=2**40))
    flapping = st.one_of(
        st.none(), st.builds(Flapping, st.integers(2, 100), st.integers(60_000, 86_400_000))
    )
    sides = st.lists(
        st.builds(Side, st.sampled_from(["above", "below"]), finite_levels(), finite_levels()),
        max_size=2,
    ).map(tuple)
    match = st.lists(
        st.tuples(st.sampled_from(["deviceId", "sensorId", "type", "location"]), st.text()),
        max_size=4,
    ).map(tuple)
    return st.builds(
        Rule,
        name=rule_names(),
        sides=sides,
        hysteresis=st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers()),
        for_readings=st.integers(min_value=1, max_value=1000),
        for_ms=maybe_ms,
        match=match,
        nodata_ms=maybe_ms,
        nodata_severity=severities,
        repeat_ms=maybe_ms,
        latch=st.booleans(),
        offline_ms=maybe_ms,
        offline_severity=severities,
        flapping=flapping,
    )


@given(
    rules=st.lists(built_rules(), max_size=4, unique_by=lambda r: r.name),
    gateways=st.lists(
        st.builds(Gateway, st.text(min_size=1), st.lists(st.text()).map(tuple)), max_size=3
    ),
    notifications=st.one_of(
        st.none(),
        st.builds(
            Notifications,
            group_by=st.lists(st.text()).map(tuple),
            window_ms=st.integers(min_value=1),
            max_per_window=st.integers(min_value=1),
            digest_every_ms=st.integers(min_value=1),
            flapping=st.one_of(st.none(), st.builds(Flapping, st.integers(), st.integers())),
        ),
    ),
)
def test_any_rule_set_reads_back_exactly_from_its_json(
    rules: list[Rule], gateways: list[Gateway], notifications: Notifications | None
) -> None:
    # Given a rule set built in code: any finite float (-0.0, subnormals, 1e308),
    # ints beside floats, any text
    original = RuleSet(rules, gateways=gateways, notifications=notifications)

    # When it goes to JSON text and back
    back = rule_set_from_json(json.loads(json.dumps(rule_set_to_json(original))))

    # Then nothing changed, not even a float's sign or a number's type
    assert exactly(back) == exactly(original)
    for was, now in zip(original.rules, back.rules, strict=True):
        for side_was, side_now in zip(was.sides, now.sides, strict=True):
            for a, b in (
                (side_was.warning, side_now.warning),
                (side_was.critical, side_now.critical),
            ):
                assert type(a) is type(b)
                if isinstance(a, float) and isinstance(b, float):
                    assert math.copysign(1, a) == math.copysign(1, b)


# --- the cold start's choice ------------------------------------------------------


def test_a_matching_compiled_file_is_read_without_parsing_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a rules directory compiled as the build compiles it
    directory = rules_directory(tmp_path / "rules", TWO_FILES)
    expected = exactly(yaml_only(directory))
    rule_specs.write_compiled(directory)
    refuse_parsing(monkeypatch)

    # When the rules are loaded, parsing the YAML made to fail
    loaded = load_rules(directory)

    # Then they come from the compiled file, the same set
    assert exactly(loaded) == expected


def test_a_cold_start_with_compiled_rules_imports_neither_yaml_nor_pydantic(
    tmp_path: Path,
) -> None:
    # Given a compiled rules directory
    directory = rules_directory(tmp_path / "rules", TWO_FILES)
    rule_specs.write_compiled(directory)

    # When a fresh interpreter loads it
    code = (
        "import sys; from pathlib import Path; from telemetry.core.rules import load_rules; "
        f"rules = load_rules(Path({str(directory)!r})); "
        "print(len(rules), sorted(m for m in ('yaml', 'pydantic', 'telemetry.core.rule_specs') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )

    # Then it has both rules, and neither YAML, pydantic nor the file checks were imported
    assert done.stdout.split() == ["2", "[]"]


@pytest.mark.parametrize(
    "change",
    [
        "a level edited",
        "a file added",
        "a file removed",
        "a file renamed",
        "a byte appended",
    ],
)
def test_a_stale_compiled_file_is_ignored_and_the_yaml_parsed(tmp_path: Path, change: str) -> None:
    # Given a compiled rules directory whose YAML then changes
    directory = rules_directory(tmp_path / "rules", TWO_FILES)
    rule_specs.write_compiled(directory)
    boilers = directory / "boilers.yaml"
    if change == "a level edited":
        boilers.write_text(TWO_FILES["boilers.yaml"].replace("80.5", "81.5"), encoding="utf-8")
    elif change == "a file added":
        (directory / "extra.yml").write_text("rules:\n  - name: extra\n    above: {warning: 1}\n")
    elif change == "a file removed":
        boilers.unlink()
    elif change == "a file renamed":
        boilers.rename(directory / "zz-boilers.yaml")
    else:
        boilers.write_bytes(boilers.read_bytes() + b"\n")

    # When the rules are loaded
    loaded = load_rules(directory)

    # Then they are what the YAML says now, not what was compiled
    assert exactly(loaded) == exactly(yaml_only(directory))
    assert (
        compiled_rule_set(
            (directory / COMPILED_NAME).read_text(encoding="utf-8"),
            sources_digest(rule_files(directory)),
        )
        is None
    )


def test_a_level_edited_in_the_compiled_file_is_ignored(tmp_path: Path) -> None:
    # Given a compiled file whose payload was edited, its header left as it was
    directory = rules_directory(tmp_path / "rules", TWO_FILES)
    target = rule_specs.write_compiled(directory)
    target.write_text(target.read_text(encoding="utf-8").replace("80.5", "8.5"), encoding="utf-8")

    # When the rules are loaded
    loaded = load_rules(directory)

    # Then the YAML's level holds, not the edited one
    boiler = loaded.named("boiler-hot")
    assert boiler is not None
    assert boiler.sides[0].warning == 80.5


@pytest.mark.parametrize(
    "content",
    [
        "",
        "not json\n{}",
        '{"format": 1}\n{}',
        "{}\n",
        '{"format": 2, "sources": "x", "payload": "y"}\n{"rules": []}',
    ],
)
def test_a_malformed_compiled_file_is_ignored(tmp_path: Path, content: str) -> None:
    # Given a rules directory beside a compiled file that is no compiled set
    directory = rules_directory(tmp_path / "rules", TWO_FILES)
    (directory / COMPILED_NAME).write_text(content, encoding="utf-8")

    # When the rules are loaded
    loaded = load_rules(directory)

    # Then the YAML's rules are in force
    assert exactly(loaded) == exactly(yaml_only(directory))


def test_a_payload_of_the_wrong_shape_with_a_correct_header_is_ignored(tmp_path: Path) -> None:
    # Given a header whose digests are right for a payload that is no rule set
    directory = rules_directory(tmp_path / "rules", TWO_FILES)
    digest = sources_digest(rule_files(directory))
    good = compiled_rules_text(yaml_only(directory), digest)
    header = json.loads(good.partition("\n")[0])
    payload = '{"rules": [{"name": "x"}], "gateways": [], "notifications": null}'
    header["payload"] = hashlib.sha256(payload.encode()).hexdigest()
    (directory / COMPILED_NAME).write_text(json.dumps(header) + "\n" + payload + "\n")

    # When the rules are loaded
    loaded = load_rules(directory)

    # Then the YAML's rules are in force
    assert [r.name for r in loaded.rules] == ["boiler-hot", "pump-low"]


def test_a_broken_rule_file_is_refused_even_beside_an_old_compiled_file(tmp_path: Path) -> None:
    # Given a compiled directory whose YAML is then broken
    directory = rules_directory(tmp_path / "rules", TWO_FILES)
    rule_specs.write_compiled(directory)
    (directory / "boilers.yaml").write_text("rules:\n  - name: boiler-hot\n    above: {}\n")

    # When the rules are loaded, then the file's problem is reported, as without one
    with pytest.raises(
        RuleFileError, match=re.escape("boilers.yaml: rule 'boiler-hot': above: needs")
    ):
        load_rules(directory)


def test_a_single_rule_file_is_parsed_as_before(tmp_path: Path) -> None:
    # Given a RULES_PATH naming one file (nothing is compiled for a file)
    directory = rules_directory(tmp_path / "rules", TWO_FILES)
    rule_specs.write_compiled(directory)

    # When that file is loaded, then it is parsed: its own rules only
    assert [r.name for r in load_rules(directory / "pumps.yaml").rules] == ["pump-low"]


# --- the build step -----------------------------------------------------------------


def test_compiling_an_invalid_directory_fails_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a rules directory with a problem
    directory = rules_directory(
        tmp_path / "rules", {"bad.yaml": "rules:\n  - name: x\n    above: {warning: oops}\n"}
    )

    # When the build's step compiles it
    status = rule_specs.main([str(directory)])

    # Then it fails naming the problem, and no compiled file is left to read
    assert status == 1
    assert "bad.yaml: rule 'x': above.warning: must be a number" in capsys.readouterr().err
    assert not (directory / COMPILED_NAME).exists()


def test_compiling_a_valid_directory_writes_the_file_load_rules_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the repository's own rules, copied
    directory = tmp_path / "rules"
    directory.mkdir()
    for file in rule_files(ROOT / "rules"):
        (directory / file.name).write_bytes(file.read_bytes())
    expected = exactly(yaml_only(directory))

    # When the build's step compiles them
    assert rule_specs.main([str(directory)]) == 0
    refuse_parsing(monkeypatch)

    # Then loading reads the compiled file (parsing fails here), and it holds the same set
    assert exactly(load_rules(directory)) == expected
