"""Validate + evaluate as whole processes, beside the plain-pydantic floor; peak memory.

A deterministic fleet workload (1,000 devices x 4 sensors, one message of four
readings per device every 15 s, values scattered around the levels of
rules/default.yaml so that about 3% breach: 100,000 readings in 25,000 lines of
JSON) is written to a file once. Three commands then read it, each a whole
process, taking turns REPEATS times after one unmeasured run each:

- floor: `python -m benchmarks.floor FILE`, a plain pydantic model, `json.loads`
  and `model_validate` per line (what the issue's target names);
- ours: `python -m telemetry backtest --format jsonl --rules rules FILE`, which
  validates every message as the function does and evaluates every reading
  against the rules, carrying state per device;
- today: the same command with the baseline commit's code (benchmarks/baseline.py).

CPU is user + system time of the process (wait4), the median counts; peak memory
is the process's VmHWM. Targets: ours <= 1.25x the floor's CPU, and (issue 19: at
least as fast as plain pydantic, imports included) <= 1.0x; ours peak memory <= half
of today's; and the same transitions as today, byte for byte.

    python -m benchmarks.bench_core [--readings N] [--repeats R]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from benchmarks.baseline import CodeTree, trees
from benchmarks.processes import Measured, interleaved, measure
from benchmarks.workload import ratio, table, verdict

DEVICES: Final = 1_000
INTERVAL_MS: Final = 15_000
START_MS: Final = 1_764_237_600_000  # 2025-11-27T10:00:00Z
REPEATS: Final = 7
TARGET_CPU_RATIO: Final = 1.25
TARGET_CPU_RATIO_FLEET: Final = 1.0  # issue 19, point 4
TARGET_MEMORY_RATIO: Final = 0.5

# type -> (unit, mean, standard deviation, breached(value)); each about 3% past a level.
SENSORS: dict[str, tuple[str, float, float, Callable[[float], bool]]] = {
    "temperature": ("C", 63.7, 6.0, lambda v: v > 75),
    "pressure": ("bar", 4.6, 1.6, lambda v: v > 8 or v < 1.2),
    "vibration": ("mm/s", 2.8, 0.9, lambda v: v > 4.5),
    "humidity": ("%", 45.0, 11.5, lambda v: v > 70 or v < 20),
}


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


def _backtest(history: Path) -> list[str]:
    return ["-m", "telemetry", "backtest", "--format", "jsonl", "--rules", "rules", str(history)]


def _transitions(tree: CodeTree, history: Path) -> bytes:
    """The backtest's output (one transition per line) with this tree's code."""
    done = subprocess.run(
        [sys.executable, *_backtest(history)],
        cwd=tree.root,
        env=tree.environment(_environment()),
        capture_output=True,
        check=True,
    )
    return done.stdout


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _each(lines: Sequence[bytes], step: Callable[[bytes], object]) -> None:
    for line in lines:
        step(line)  # each result dropped at once, as the processes do


def _floor_line(line: bytes) -> object:
    from benchmarks.floor import Message

    return Message.model_validate(json.loads(line))


def _our_line(line: bytes) -> object:
    from telemetry.core.messages import LATEST_MS, parse_message_json

    return parse_message_json(line, LATEST_MS)


def breakdown(lines: Sequence[bytes], rules_path: Path, repetitions: int = 3) -> dict[str, float]:
    """In this process, best of `repetitions` CPU seconds of each step on the same
    lines: the floor's validation; ours, validation from the bytes; ours,
    evaluation of those readings (a fresh RuleSet each time, its match cache
    filled as in a one-shot run)."""
    from telemetry.core.alerts import evaluate
    from telemetry.core.messages import LATEST_MS, parse_message_json
    from telemetry.core.rules import RuleSet, load_rules

    loaded = load_rules(rules_path)

    def best(step: Callable[[], object]) -> float:
        times = []
        for _ in range(repetitions):
            began = time.process_time()
            step()
            times.append(time.process_time() - began)
        return min(times)

    parsed = [parse_message_json(line, LATEST_MS) for line in lines]
    by_device: dict[str, list[Any]] = {}
    for message in parsed:
        by_device.setdefault(message.device_id, []).extend(message.readings)

    def evaluate_all() -> None:
        rules = RuleSet(loaded.rules)
        for readings in by_device.values():
            evaluate(readings, {}, rules)

    gc.collect()
    gc.freeze()  # this process's own objects are not the steps' to walk
    try:
        return {
            "floor_validation": best(lambda: _each(lines, _floor_line)),
            "ours_validation": best(lambda: _each(lines, _our_line)),
            "ours_evaluation": best(evaluate_all),
        }
    finally:
        gc.unfreeze()


def run(readings: int = 100_000, repeats: int = REPEATS, seed: int = 7) -> dict[str, Any]:
    messages = build_workload(readings, seed)
    ours, today = trees()
    with tempfile.TemporaryDirectory() as scratch:
        history = Path(scratch) / "history.jsonl"
        history.write_text("".join(json.dumps(m) + "\n" for m in messages))
        env = _environment()

        def case(tree: CodeTree, args: list[str]) -> Callable[[], Measured]:
            return lambda: measure(args, env=tree.environment(env), cwd=tree.root, peak=True)

        cases = {
            "floor": case(ours, ["-m", "benchmarks.floor", str(history)]),
            "ours": case(ours, _backtest(history)),
            "today": case(today, _backtest(history)),
        }
        samples = interleaved(cases, repeats)
        ours_out, today_out = _transitions(ours, history), _transitions(today, history)
        steps = breakdown(history.read_bytes().splitlines(), ours.root / "rules")
    cpu = {name: s.median() for name, s in samples.items()}
    peak = {name: s.median("peak_mb") for name, s in samples.items()}
    cpu_ratio = ratio(cpu["ours"], cpu["floor"])
    memory_ratio = ratio(peak["ours"], peak["today"])
    return {
        "readings": readings,
        "messages": len(messages),
        "anomalous_share": anomalous_share(messages),
        "transitions": ours_out.count(b"\n"),
        "repeats": repeats,
        "samples": {name: s.as_json() for name, s in samples.items()},
        "ratio_cpu_ours_to_floor": cpu_ratio,
        "ratio_cpu_today_to_floor": ratio(cpu["today"], cpu["floor"]),
        "ratio_peak_ours_to_today": memory_ratio,
        "same_transitions_as_today": ours_out == today_out,
        "transitions_sha256": hashlib.sha256(ours_out).hexdigest()[:16],
        "in_process_cpu_seconds": steps,
        "targets": [
            {
                "target": f"CPU: ours <= {TARGET_CPU_RATIO}x the plain-pydantic floor",
                "measured": f"{cpu_ratio:.2f}x",
                "ok": cpu_ratio <= TARGET_CPU_RATIO,
            },
            {
                "target": f"CPU: ours <= {TARGET_CPU_RATIO_FLEET}x the floor (as fast, issue 19)",
                "measured": f"{cpu_ratio:.2f}x",
                "ok": cpu_ratio <= TARGET_CPU_RATIO_FLEET,
            },
            {
                "target": f"peak memory: ours <= {TARGET_MEMORY_RATIO:.0%} of today's",
                "measured": f"{memory_ratio:.0%} ({peak['ours']:.0f} MB vs {peak['today']:.0f} MB)",
                "ok": memory_ratio <= TARGET_MEMORY_RATIO,
            },
            {
                "target": "the same transitions as today",
                "measured": "identical" if ours_out == today_out else "DIFFERENT",
                "ok": ours_out == today_out,
            },
        ],
    }


LABELS: Final = {
    "floor": "plain pydantic floor (json.loads + model_validate)",
    "ours": "telemetry backtest --format jsonl",
    "today": "the same, baseline commit (today)",
}


def report(numbers: Mapping[str, Any]) -> None:
    print(
        f"workload: {numbers['readings']:,} readings in {numbers['messages']:,} lines, "
        f"{DEVICES:,} devices, {numbers['anomalous_share']:.1%} past a level, "
        f"{numbers['transitions']:,} transitions; whole processes, median of "
        f"{numbers['repeats']} taking turns"
    )
    samples = numbers["samples"]
    floor = samples["floor"]["median_cpu_seconds"]
    rows = []
    for name, label in LABELS.items():
        s = samples[name]
        rows.append(
            [
                label,
                f"{s['median_cpu_seconds']:.3f}",
                f"{min(s['cpu_seconds']):.3f}",
                f"{max(s['cpu_seconds']):.3f}",
                f"{s['median_wall_seconds']:.3f}",
                f"{ratio(s['median_cpu_seconds'], floor):.2f}",
                f"{s['median_peak_mb']:.0f}",
            ]
        )
    print(
        table(
            ["process", "CPU s", "min", "max", "wall s", "CPU vs floor", "peak MB"],
            rows,
        )
    )
    steps = numbers["in_process_cpu_seconds"]
    print(
        f"in process, best of 3 CPU s: the floor's validation {steps['floor_validation']:.3f}; "
        f"ours, validation from the bytes {steps['ours_validation']:.3f}, evaluation "
        f"{steps['ours_evaluation']:.3f}"
    )
    print_targets(numbers["targets"])


def print_targets(targets: Sequence[Mapping[str, Any]]) -> None:
    print(
        table(
            ["target", "measured", "verdict"],
            [[t["target"], t["measured"], verdict(t["ok"])] for t in targets],
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    report(run(args.readings, args.repeats))


if __name__ == "__main__":
    main()
