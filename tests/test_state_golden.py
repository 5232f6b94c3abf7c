"""Device states written by the release before the state format had a version
(tests/golden/state, made by tests/golden/generate_state.py on that release)
load, and carry on exactly as that release did: the same transitions and the
same stored state after every next step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from telemetry.core.alerts import STATE_FORMAT, state_from_json, state_to_json
from tests.golden.generate_state import rule_set, run_step

GOLDEN = sorted((Path(__file__).parent / "golden" / "state").glob("*.json"))


def _unversioned(stored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if k != "$format"}


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_a_state_written_before_format_2_carries_on_unchanged(path: Path) -> None:
    # Given a history as the earlier release stored it, step by step
    doc = json.loads(path.read_text(encoding="utf-8"))
    rules = rule_set()
    before: dict[str, Any] = {}
    for step, expected in zip(doc["steps"], doc["after"], strict=True):
        # When this code loads the stored state and takes the next step
        result = run_step(state_from_json(before), step, rules)
        # Then it says and stores what the earlier release did
        assert [t.to_json() for t in result.transitions] == expected["transitions"]
        stored = json.loads(json.dumps(state_to_json(result.state)))
        assert stored["$format"] == STATE_FORMAT
        assert _unversioned(stored) == expected["state"]
        before = expected["state"]


def test_a_state_of_a_newer_format_is_refused() -> None:
    # Given a state stored by a later release
    # When it is loaded, Then it is refused rather than misread
    with pytest.raises(ValueError, match="format"):
        state_from_json({"$format": STATE_FORMAT + 1})
