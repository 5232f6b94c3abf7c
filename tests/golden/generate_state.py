"""Writes tests/golden/state/*.json: device states and transitions as the code
checked out writes them (run once on the release before a state format change;
tests/test_state_golden.py then checks that later code loads them and carries
on exactly as that release did).

    python -m tests.golden.generate_state

Each file holds a rule file, the steps of one realistic history (readings with
their arrival, operators' actions, sweeps, timers) and, after every step, the
transitions produced and the state as stored (`state_to_json`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from telemetry.core.alerts import (
    AlertState,
    Evaluation,
    StateKey,
    evaluate,
    state_from_json,
    state_to_json,
)
from telemetry.core.messages import Reading
from telemetry.core.operators import apply_action, finalize, parse_action, timers
from telemetry.core.rules import RuleSet, load_rules
from telemetry.core.silence import sweep

HERE = Path(__file__).parent / "state"
DEVICE = "boiler-3"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000

RULES = """
rules:
  - name: temperature-high
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    hysteresis: 2
    repeat: 30m
  - name: pressure-band
    match: {type: pressure}
    above: {warning: 8, critical: 10}
    below: {warning: 2}
    for: 2
    latch: true
  - name: humidity-slow
    match: {type: humidity}
    above: {warning: 80}
    for: 5m
  - name: heartbeat
    match: {type: temperature}
    nodata: 5m
  - name: vibration-chatter
    match: {type: vibration}
    above: {warning: 20}
    flapping: {changes: 4, within: 10m}
"""


def r(sensor: str, kind: str, value: float, at: int) -> dict[str, Any]:
    return {"sensor": sensor, "type": kind, "value": value, "at": at}


def act(kind: str, sensor: str, rule: str, at: int, **extra: Any) -> dict[str, Any]:
    raw = {"action": kind, "deviceId": DEVICE, "sensorId": sensor, "rule": rule, "by": "maria"}
    return {"action": raw | extra, "now": at}


SCENARIOS: dict[str, list[dict[str, Any]]] = {
    "levels": [
        {"readings": [r("temp-1", "temperature", 70.0, T0)], "now": T0},
        {"readings": [r("temp-1", "temperature", 80.0, T0 + MIN)], "now": T0 + MIN},
        {"readings": [r("temp-1", "temperature", 95.0, T0 + 2 * MIN)], "now": T0 + 2 * MIN},
        {"readings": [r("temp-1", "temperature", 91.0, T0 + MIN + 30_000)], "now": T0 + 3 * MIN},
        {"readings": [r("temp-1", "temperature", 87.0, T0 + 4 * MIN)], "now": T0 + 4 * MIN},
        {"timers": T0 + 40 * MIN},
        {"readings": [r("temp-1", "temperature", 72.0, T0 + 41 * MIN)], "now": T0 + 41 * MIN},
    ],
    "latched-acked": [
        {"readings": [r("p-1", "pressure", 9.0, T0)], "now": T0},
        {"readings": [r("p-1", "pressure", 9.5, T0 + MIN)], "now": T0 + MIN},
        {"readings": [r("p-1", "pressure", 11.0, T0 + 2 * MIN)], "now": T0 + 2 * MIN},
        {"readings": [r("p-1", "pressure", 11.5, T0 + 3 * MIN)], "now": T0 + 3 * MIN},
        act("acknowledge", "p-1", "pressure-band", T0 + 4 * MIN, note="on it"),
        {"readings": [r("p-1", "pressure", 5.0, T0 + 5 * MIN)], "now": T0 + 5 * MIN},
        {"readings": [r("p-1", "pressure", 5.0, T0 + 6 * MIN)], "now": T0 + 6 * MIN},
        act("reset", "p-1", "pressure-band", T0 + 7 * MIN),
        {"readings": [r("p-1", "pressure", 1.0, T0 + 8 * MIN)], "now": T0 + 8 * MIN},
        {"readings": [r("p-1", "pressure", 1.5, T0 + 9 * MIN)], "now": T0 + 9 * MIN},
        {"readings": [r("p-1", "pressure", 5.0, T0 + 10 * MIN)], "now": T0 + 10 * MIN},
    ],
    "snoozed": [
        {"readings": [r("temp-2", "temperature", 80.0, T0)], "now": T0},
        act("snooze", "temp-2", "temperature-high", T0 + MIN, until="1h"),
        {"readings": [r("temp-2", "temperature", 95.0, T0 + 2 * MIN)], "now": T0 + 2 * MIN},
        {"readings": [r("temp-2", "temperature", 70.0, T0 + 3 * MIN)], "now": T0 + 3 * MIN},
        {"readings": [r("temp-2", "temperature", 85.0, T0 + 4 * MIN)], "now": T0 + 4 * MIN},
        {"timers": T0 + 62 * MIN},
        {"readings": [r("temp-2", "temperature", 60.0, T0 + 63 * MIN)], "now": T0 + 63 * MIN},
    ],
    "nodata-silence": [
        {"readings": [r("temp-3", "temperature", 20.0, T0)], "now": T0},
        {"readings": [r("temp-3", "temperature", 21.0, T0 + 3 * MIN)], "now": T0 + 3 * MIN},
        {"sweep": T0 + 9 * MIN},
        {"sweep": T0 + 20 * MIN},
        act("acknowledge", "temp-3", "heartbeat", T0 + 21 * MIN),
        {"sweep": T0 + 90 * MIN},
        {"readings": [r("temp-3", "temperature", 22.0, T0 + 91 * MIN)], "now": T0 + 91 * MIN},
        {"readings": [r("temp-3", "temperature", 76.0, T0 + 92 * MIN)], "now": T0 + 92 * MIN},
    ],
    "streak-for-duration": [
        {"readings": [r("h-1", "humidity", 85.0, T0)], "now": T0},
        {"readings": [r("h-1", "humidity", 86.0, T0 + 2 * MIN)], "now": T0 + 2 * MIN},
        {"readings": [r("h-1", "humidity", 84.0, T0 + 5 * MIN)], "now": T0 + 5 * MIN},
        {"readings": [r("h-1", "humidity", 70.0, T0 + 6 * MIN)], "now": T0 + 6 * MIN},
        act("disable", "h-1", "humidity-slow", T0 + 7 * MIN),
        {"readings": [r("h-1", "humidity", 90.0, T0 + 8 * MIN)], "now": T0 + 8 * MIN},
        act("enable", "h-1", "humidity-slow", T0 + 9 * MIN),
        {"readings": [r("h-1", "humidity", 90.0, T0 + 10 * MIN)], "now": T0 + 10 * MIN},
    ],
    "flapping": [
        *[
            {
                "readings": [r("vib-1", "vibration", 25.0 if i % 2 == 0 else 5.0, T0 + i * MIN)],
                "now": T0 + i * MIN,
            }
            for i in range(7)
        ],
        {"timers": T0 + 30 * MIN},
        {"readings": [r("vib-1", "vibration", 30.0, T0 + 31 * MIN)], "now": T0 + 31 * MIN},
    ],
}


def rule_set() -> RuleSet:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(RULES, encoding="utf-8")
        return load_rules(path)


def run_step(state: dict[StateKey, AlertState], step: dict[str, Any], rules: RuleSet) -> Evaluation:
    """One step of a golden history, as the pipeline composes the core."""
    if "readings" in step:
        readings = [
            Reading(DEVICE, x["sensor"], x["value"], x["at"], x["type"]) for x in step["readings"]
        ]
        now = step["now"]
        return finalize(evaluate(readings, state, rules, now), rules, now)
    if "action" in step:
        now = step["now"]
        outcome = apply_action(DEVICE, state, parse_action(step["action"], now), rules, now)
        return finalize(outcome.evaluation, rules, now)
    if "sweep" in step:
        return finalize(sweep(DEVICE, state, rules, step["sweep"]), rules, step["sweep"])
    return finalize(timers(DEVICE, state, rules, step["timers"]), rules, step["timers"])


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    rules = rule_set()
    for name, steps in SCENARIOS.items():
        state: dict[StateKey, AlertState] = {}
        after = []
        for step in steps:
            result = run_step(state, step, rules)
            stored = json.loads(json.dumps(state_to_json(result.state)))
            state = state_from_json(stored)
            after.append(
                {"transitions": [t.to_json() for t in result.transitions], "state": stored}
            )
        doc = {"rules": RULES, "device": DEVICE, "steps": steps, "after": after}
        (HERE / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
