"""Where a STABLE that time alone brought goes among the transitions of its
time: after the no-data alerts raised then, as the function's sweep publishes
them (silences first, then `timers`), in the streamed replay and in the
whole history alike (tests/whole_history.py, `_sweeps`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from telemetry import backtest
from telemetry.core.alerts import Transition
from tests.test_backtest_stream import WALL_MS, bodies, rule_set
from tests.test_backtest_stream_flapping import FIXTURES, RULES, T0
from tests.test_flapping import MINUTE, NOW, chatter, swept
from tests.whole_history import whole_history

QUIET = T0 + 10_000 + 300_000
"""When the key below has been quiet for its window, and its gap opens."""


def temperature(at: int, value: float) -> dict[str, object]:
    return {
        "deviceId": "pump-1",
        "timestamp": at,
        "data": [{"sensorId": "temp-1", "type": "temperature", "value": value}],
    }


def flapping_then_silent(later: float) -> list[dict[str, Any]]:
    """A key that flaps (three changes by T0 + 10 s), then reports unchanged
    until its no-data gap opens exactly when its quiet period ends; the reading
    that closes the gap is `later` (a change of level, or none)."""
    return [
        temperature(T0, 76.0),
        temperature(T0 + 5_000, 60.0),
        temperature(T0 + 10_000, 76.0),
        temperature(T0 + 70_000, 76.0),
        temperature(QUIET - 120_000, 76.0),
        temperature(QUIET + 90_000, later),
    ]


def at_quiet(found: list[Transition]) -> list[tuple[str, str]]:
    return [(t.status.value, t.direction) for t in found if t.time_ms == QUIET]


def test_the_functions_sweep_publishes_the_no_data_alert_before_the_stable_of_its_time() -> None:
    # Given a key that flapped, its quiet period ending when its no-data alert falls due
    state, _ = chatter()

    # When one sweep finds both (at the end of the quiet period)
    _, published = swept(state, NOW + 13 * MINUTE)

    # Then it publishes the no-data RAISED first, then the STABLE: silences, then timers
    assert [(t.status.value, t.direction, t.time_ms) for t in published] == [
        ("RAISED", "nodata", NOW + 13 * MINUTE),
        ("STABLE", "above", NOW + 13 * MINUTE),
    ]


@pytest.mark.parametrize("later", [76.0, 60.0], ids=["no-later-change", "a-later-change"])
@pytest.mark.parametrize("order", ["event", "arrival"])
@pytest.mark.parametrize("window", [1, 3, 100])
def test_a_stable_comes_after_the_gap_of_its_time_whether_or_not_the_key_changes_again(
    later: float, order: str, window: int
) -> None:
    # Given a flapping key whose quiet period ends when its no-data gap opens, and
    # a reading that closes the gap with or without a change of level
    messages = flapping_then_silent(later)
    rules = rule_set(RULES)

    # When it is replayed, streaming and whole
    streamed = backtest.replay(messages, rules, order=order, wall_ms=WALL_MS, window=window)
    expected = whole_history(messages, rules, order=order, wall_ms=WALL_MS)

    # Then both put the RAISED first, as the sweep at that time does, and agree
    assert at_quiet(expected) == [("RAISED", "nodata"), ("STABLE", "above")]
    assert streamed.out_of_window == 0
    assert bodies(streamed.transitions) == bodies(expected)


def test_a_stable_by_time_alone_comes_after_the_gap_raised_at_its_time() -> None:
    # Given the history Hypothesis found (arrival order): a flapping key quiet at
    # 10:05:10, when its no-data gap opens, and no change of level after it
    case = json.loads((FIXTURES / "stable_after_a_gap_of_its_time.json").read_text())
    rules = rule_set(case["rules"])
    messages, order = case["messages"], case["order"]

    # When it is replayed streaming, with its window and with the whole history in it
    small = backtest.replay(messages, rules, order=order, wall_ms=WALL_MS, window=case["window"])
    whole = backtest.replay(messages, rules, order=order, wall_ms=WALL_MS, window=len(messages) + 1)

    # Then both are the whole history's transitions, the no-data RAISED before the STABLE
    expected = whole_history(messages, rules, order=order, wall_ms=WALL_MS)
    assert whole.out_of_window == 0
    assert bodies(whole.transitions) == bodies(expected)
    if small.out_of_window == 0:
        assert bodies(small.transitions) == bodies(expected)
    stable = next(t for t in expected if t.status.value == "STABLE")
    assert [(t.status.value, t.direction) for t in expected if t.time_ms == stable.time_ms] == [
        ("RAISED", "nodata"),
        ("STABLE", "above"),
    ]
