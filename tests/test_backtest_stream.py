"""`telemetry backtest` streams: transitions come out as they are decided, in
event time, with bounded memory; the same transitions as the whole-history
replay (tests/whole_history.py, today's algorithm kept as the oracle)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry import backtest
from telemetry.core.load import LoadMeter, alarm_load
from telemetry.core.rules import RuleSet, load_rules, parse_rule_document
from tests.strategies import REPLAY_RULES, notification_settings, replay_histories, transitions
from tests.test_cli import telemetry
from tests.whole_history import whole_history

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "telemetry" / "samples").glob("*.jsonl"))
WALL_MS = 1_800_000_000_000


def rule_set(text: str) -> RuleSet:
    document = parse_rule_document(text, "rules.yaml")
    return RuleSet(document.rules, gateways=document.gateways, notifications=document.notifications)


def decoded(path: Path) -> list[Any]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def bodies(found: list[Any]) -> list[dict[str, Any]]:
    return [t.to_json() for t in found]


RULE_SETS = {
    "default": load_rules(ROOT / "rules"),
    **{f"replay-{i}": rule_set(text) for i, text in enumerate(REPLAY_RULES)},
}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("rules", RULE_SETS, ids=str)
@pytest.mark.parametrize("order", ["event", "arrival"])
@pytest.mark.parametrize("window", [1, 7, backtest.REORDER_READINGS])
def test_every_sample_streams_the_transitions_of_the_whole_history(
    sample: Path, rules: str, order: str, window: int
) -> None:
    # Given a shipped sample and a rule set
    messages = decoded(sample)

    # When it is replayed streaming, with a reorder window of `window` readings
    result = backtest.replay(
        messages, RULE_SETS[rules], order=order, wall_ms=WALL_MS, window=window
    )

    # Then, with no reading out of its window, the transitions are today's
    expected = whole_history(messages, RULE_SETS[rules], order=order, wall_ms=WALL_MS)
    if result.out_of_window == 0:
        assert bodies(result.transitions) == bodies(expected)
    if window == backtest.REORDER_READINGS:
        assert result.out_of_window == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=replay_histories(),
    window=st.integers(1, 12),
    order=st.sampled_from(["event", "arrival"]),
)
def test_a_streamed_replay_decides_what_the_whole_history_decides(
    history: tuple[str, list[dict[str, Any]]], window: int, order: str
) -> None:
    # Given a history, its lines a few places out of order, and its rules
    text, messages = history
    rules = rule_set(text)

    # When it is replayed streaming with a small reorder window
    streamed = backtest.replay(messages, rules, order=order, wall_ms=WALL_MS, window=window)

    # Then the transitions come out in event time and, when no reading fell out of
    # the window, are exactly those the whole history gives
    times = [t.time_ms for t in streamed.transitions]
    expected = whole_history(messages, rules, order=order, wall_ms=WALL_MS)
    if streamed.out_of_window == 0:
        assert bodies(streamed.transitions) == bodies(expected)
        assert times == sorted(times)
    big = backtest.replay(messages, rules, order=order, wall_ms=WALL_MS, window=len(messages) + 1)
    assert big.out_of_window == 0
    assert bodies(big.transitions) == bodies(expected)


@settings(max_examples=200, deadline=None)
@given(
    found=st.lists(transitions(), max_size=40),
    notifications=st.none() | notification_settings(),
    span=st.integers(0, 100_000_000),
)
def test_the_load_counted_in_passing_is_the_load_of_the_whole_list(
    found: list[Any], notifications: Any, span: int
) -> None:
    # Given transitions in time order and a notification policy
    found.sort(key=lambda t: t.time_ms)
    first = found[0].time_ms if found else 1_764_237_600_000
    last = first + span

    # When the load is counted one transition at a time
    meter = LoadMeter(notifications)
    for t in found:
        meter.add(t)
    counted = meter.finish(first, last)

    # Then it is the load of the whole list
    whole = alarm_load(found, notifications, first, last)
    assert counted.to_json() == whole.to_json()
    assert (counted.messages, counted.digests) == (whole.messages, whole.digests)


def test_json_and_jsonl_are_the_same_text_as_the_whole_document(tmp_path: Path) -> None:
    # Given the sample history, with its lines shuffled a little
    lines = (ROOT / "telemetry" / "samples" / "history.jsonl").read_text().splitlines()
    rng = random.Random(19)
    for i in range(len(lines) - 1):
        if rng.random() < 0.3:
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(lines) + "\n")

    # When it is backtested as json and as jsonl, streaming
    as_json = telemetry(
        "backtest", "--rules", str(ROOT / "rules"), "--format", "json", str(history)
    )
    as_jsonl = telemetry(
        "backtest", "--rules", str(ROOT / "rules"), "--format", "jsonl", str(history)
    )

    # Then the document is what json.dump makes of the whole, the transitions those of
    # the whole history, and jsonl has the same transitions
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert as_json.stdout == json.dumps(document, indent=2) + "\n"
    expected = whole_history(decoded(history), RULE_SETS["default"], wall_ms=WALL_MS)
    assert document["transitions"] == bodies(expected)
    assert [json.loads(x) for x in as_jsonl.stdout.splitlines()] == document["transitions"]
    assert document["input"]["outOfWindow"] == 0


def test_a_reading_whose_place_was_passed_is_reported_with_its_line(tmp_path: Path) -> None:
    # Given a history whose third line is an hour older than the two before it
    t0 = 1_764_237_600_000
    lines = [
        {"deviceId": device, "timestamp": at, "data": [{"sensorId": "t", "type": "temperature",
                                                        "value": value}]}
        for device, at, value in [
            ("pump-1", t0 + 3_600_000, 70), ("pump-1", t0 + 3_660_000, 71), ("pump-2", t0, 99)
        ]
    ]  # fmt: skip
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(json.dumps(x) for x in lines) + "\n")

    # When it is backtested with a reorder window of one reading
    result = telemetry(
        "backtest", "--rules", str(ROOT / "rules"), "--format", "json",
        "--reorder-window", "1", str(history),
    )  # fmt: skip

    # Then the line is named on stderr, counted, and still evaluated (out of place)
    assert result.returncode == 0, result.stderr
    reported = [x for x in result.stderr.splitlines() if ": out of order: " in x]
    assert len(reported) == 1
    assert reported[0].startswith(f"{history}:3: out of order: pump-2/t: reading time ")
    document = json.loads(result.stdout)
    assert document["input"]["outOfWindow"] == 1
    assert [t["deviceId"] for t in document["transitions"]] == ["pump-2"]
