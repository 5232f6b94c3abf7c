"""A streamed replay with no-data gaps and flapping decides what the whole
history decides: histories Hypothesis found (tests/test_backtest_stream.py)."""

from __future__ import annotations

import json
from pathlib import Path

from telemetry import backtest
from tests.test_backtest_stream import WALL_MS, bodies, rule_set
from tests.whole_history import whole_history

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stream"
RULES = """
rules:
  - name: hot
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    nodata: 2m
    flapping: {changes: 3, within: 5m}
notifications: {maxPerWindow: 3, window: 10m, digestEvery: 2m}
"""
T0 = 1_764_237_600_000


def temperature(at: int, received: int | None = None) -> dict[str, object]:
    message: dict[str, object] = {
        "deviceId": "pump-1",
        "timestamp": at,
        "data": [{"sensorId": "temp-1", "type": "temperature", "value": 60.0}],
    }
    if received is not None:
        message["receivedAt"] = received
    return message


def test_a_gap_closed_by_a_reading_dated_before_the_gap_counts_as_its_change_in_event_time() -> (
    None
):
    # Given a sensor silent twice: the second gap runs out 100 ms before a reading
    # that arrives late, dated just before the gap's end
    messages = [
        temperature(T0),
        temperature(T0 + 200_000, T0 + 200_100),
        temperature(T0 + 320_000, T0 + 320_400),
    ]

    # When it is replayed streaming, with a small window and a large one
    rules = rule_set(RULES)
    expected = whole_history(messages, rules, order="event", wall_ms=WALL_MS)
    small = backtest.replay(messages, rules, order="event", wall_ms=WALL_MS, window=1)
    large = backtest.replay(messages, rules, order="event", wall_ms=WALL_MS, window=100)

    # Then flapping counts the gap's end (dated first) as its third change, as the
    # whole history does, and says so at that time
    assert bodies(small.transitions) == bodies(expected) == bodies(large.transitions)
    flapping = [t for t in expected if t.status.value == "FLAPPING"]
    assert [t.time_ms for t in flapping] == [T0 + 320_000]


def test_a_quiet_keys_stable_comes_before_its_change_of_the_same_time() -> None:
    # Given a history in arrival order where a flapping key goes quiet exactly
    # when its no-data gap opens
    case = json.loads((FIXTURES / "stable_beside_a_gap.json").read_text())
    rules = rule_set(case["rules"])

    # When it is replayed streaming with its small window
    streamed = backtest.replay(
        case["messages"], rules, order=case["order"], wall_ms=WALL_MS, window=case["window"]
    )

    # Then the transitions are the whole history's, the STABLE first at that time
    expected = whole_history(case["messages"], rules, order=case["order"], wall_ms=WALL_MS)
    assert streamed.out_of_window == 0
    assert bodies(streamed.transitions) == bodies(expected)
