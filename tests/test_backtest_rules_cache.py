"""The backtest's cache of compiled rule sets: the same rules as the files, or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemetry import cli
from telemetry.core.rules import load_rules, rule_set_to_json

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
