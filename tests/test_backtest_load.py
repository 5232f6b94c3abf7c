"""`telemetry backtest` reports the alarm load operators would have had."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import messages, telemetry

RULES = """
rules:
  - name: hot
    match: {type: temperature}
    above: {warning: 75}
notifications: {maxPerWindow: 2, window: 10m, digestEvery: 2m}
"""


def test_json_is_one_document_with_transitions_summary_and_alarm_load(tmp_path: Path) -> None:
    # Given six devices overheating within a minute, and a budget of 2 per 10 minutes
    (tmp_path / "rules.yaml").write_text(RULES)
    lines = [m for n in range(6) for m in messages([70, 80], device=f"pump-{n}", step_ms=5_000)]
    (tmp_path / "history.jsonl").write_text("\n".join(lines) + "\n")

    # When the backtest runs with --format json
    result = telemetry(
        "backtest", "--rules", str(tmp_path / "rules.yaml"), "--format", "json",
        str(tmp_path / "history.jsonl"),
    )  # fmt: skip

    # Then stdout is one document: 6 raises, one rule, and 2 messages + 1 digest
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"transitions", "summary", "alarmLoad", "input"}
    assert [t["status"] for t in document["transitions"]] == ["RAISED"] * 6
    assert document["summary"][0] | {"timeInAlertSeconds": 0} == {
        "rule": "hot",
        "episodes": 6,
        "reachedCritical": 0,
        "stillOpen": 6,
        "timeInAlertSeconds": 0,
        "flaps": 0,
    }
    load = document["alarmLoad"]
    assert load["messages"] == 3
    assert (load["maxIn10Minutes"], load["floodShare"], load["chatteringKeys"]) == (3, 0, 0)
    assert load["standing"] == 0
    assert len(load["badActors"]) == 2


def test_a_history_without_alerts_has_a_load_of_zeros(tmp_path: Path) -> None:
    # Given readings that never breach
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "quiet.jsonl").write_text("\n".join(messages([60, 61, 62])) + "\n")

    # When the backtest runs in each format
    as_json = telemetry(
        "backtest", "--rules", str(tmp_path / "rules.yaml"), "--format", "json",
        str(tmp_path / "quiet.jsonl"),
    )  # fmt: skip
    as_table = telemetry(
        "backtest", "--rules", str(tmp_path / "rules.yaml"), str(tmp_path / "quiet.jsonl")
    )

    # Then the load is zeros, not an error
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["alarmLoad"] == {
        "messages": 0,
        "maxIn10Minutes": 0,
        "floodShare": 0.0,
        "chatteringKeys": 0,
        "standing": 0,
        "badActors": [],
    }
    assert "Messages: 0; most in any 10 minutes: 0" in as_table.stdout
