"""The backtest's cache of compiled rule sets: the same rules as the files, or none."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from telemetry import cli
from telemetry.core import rule_specs
from telemetry.core import rules as core_rules
from telemetry.core.rule_specs import write_compiled
from telemetry.core.rules import (
    COMPILED_NAME,
    RuleSet,
    compiled_rules_text,
    load_rules,
    rule_set_to_json,
)

RULES = Path(__file__).resolve().parent.parent / "rules"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "telemetry" / "rules"


def test_a_second_load_reads_the_compiled_set_and_gets_the_same_rules(cache: Path) -> None:
    # given: the shipped rules, loaded once through the cache
    first = cli.load_rules_cached(RULES)
    entries = list(cache.glob("*.json"))
    # when: they are loaded again
    again = cli.load_rules_cached(RULES)
    # then: one entry was written, and both loads equal the files' rules
    assert len(entries) == 1
    expected = load_rules(RULES)
    assert rule_set_to_json(first) == rule_set_to_json(expected)
    assert rule_set_to_json(again) == rule_set_to_json(expected)
    assert again.version == first.version == expected.version


def test_an_altered_entry_is_not_used(cache: Path, tmp_path: Path) -> None:
    # given: a copy of the rules, cached, then its entry altered
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "default.yaml").write_bytes((RULES / "default.yaml").read_bytes())
    cli.load_rules_cached(rules)
    (entry,) = cache.glob("*.json")
    header, payload = entry.read_text(encoding="utf-8").split("\n", 1)
    entry.write_text(header + "\n" + payload.replace("temperature", "pressure", 1))
    # when: the rules are loaded again
    loaded = cli.load_rules_cached(rules)
    # then: they are the files' rules, not the altered entry's
    assert rule_set_to_json(loaded) == rule_set_to_json(load_rules(rules))


def test_changed_rule_files_are_parsed_again(cache: Path, tmp_path: Path) -> None:
    # given: rules cached, then their file changed
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (RULES / "default.yaml").read_text(encoding="utf-8")
    (rules / "default.yaml").write_text(text)
    cli.load_rules_cached(rules)
    (rules / "default.yaml").write_text(text.replace("temperature-high", "temperature-hot", 1))
    # when: they are loaded again
    loaded = cli.load_rules_cached(rules)
    # then: the change is seen
    assert "temperature-hot" in [rule.name for rule in loaded.rules]


def test_an_unwritable_cache_is_passed_by(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a cache home that is a file, so nothing can be written under it
    blocked = tmp_path / "blocked"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    # when: the rules are loaded
    loaded = cli.load_rules_cached(RULES)
    # then: they are the files' rules
    assert rule_set_to_json(loaded) == rule_set_to_json(load_rules(RULES))


def _rules_copy(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "default.yaml").write_bytes((RULES / "default.yaml").read_bytes())
    return rules


@pytest.mark.parametrize("compiled", ["none", "stale", "current"])
def test_a_cache_miss_hashes_the_rule_files_once(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: str
) -> None:
    # given: rules not cached yet, beside no compiled file, a stale one or a current one
    rules = _rules_copy(tmp_path)
    if compiled == "stale":
        (rules / COMPILED_NAME).write_text(compiled_rules_text(load_rules(rules), "0" * 64))
    elif compiled == "current":
        write_compiled(rules)
    hashed: list[list[Path]] = []
    digest = core_rules.sources_digest

    def counted(files: Sequence[Path]) -> str:
        hashed.append(list(files))
        return digest(files)

    monkeypatch.setattr(core_rules, "sources_digest", counted)
    # when: they are loaded through the cache
    loaded = cli.load_rules_cached(rules)
    # then: the files were hashed once, and the set is the files' rules, cached
    assert hashed == [[rules / "default.yaml"]]
    monkeypatch.undo()
    expected = load_rules(rules)
    assert rule_set_to_json(loaded) == rule_set_to_json(expected)
    assert loaded.version == expected.version
    assert [f"sha256:{entry.stem}" for entry in cache.glob("*.json")] == [expected.version]


def test_rules_changed_while_being_parsed_are_read_again_and_not_cached(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: rules whose file is changed once, right after the parser has read it
    rules = _rules_copy(tmp_path)
    text = (rules / "default.yaml").read_text(encoding="utf-8")
    parse = rule_specs.load_rule_set
    changed: list[bool] = []

    def parse_then_change(paths: Path | Sequence[Path]) -> RuleSet:
        parsed = parse(paths)
        if not changed:
            changed.append(True)
            (rules / "default.yaml").write_text(
                text.replace("temperature-high", "temperature-hot", 1)
            )
        return parsed

    monkeypatch.setattr(rule_specs, "load_rule_set", parse_then_change)
    # when: they are loaded through the cache
    loaded = cli.load_rules_cached(rules)
    # then: the set is the file as it is now, and nothing was cached
    monkeypatch.undo()
    assert "temperature-hot" in [rule.name for rule in loaded.rules]
    assert loaded.version == load_rules(rules).version
    assert list(cache.glob("*.json")) == []
