"""Conditions (issue 20): the level fast path beside the code before them, and
throughput and state writes with rate, stuck, spike and range rules.

The workload is bench_core's (1,000 devices x 4 sensors, one message of four
readings per device every 15 s, about 3% past a level of rules/default.yaml).
Each case is a child process that loads one code tree and, in process, times
validation (`parse_message_json` of every line) and evaluation (every device's
readings through `evaluate`, as bench_core's breakdown does), best of 3; the
cases take turns REPEATS times and the medians count:

- before: the commit this work started from (BEFORE_COMMIT), rules/default.yaml;
- levels: this tree, the same rules (target: validate + evaluate CPU at most 5%
  over `before`);
- conditions: this tree, rules/default.yaml plus CONDITION_RULES (a rate, a
  stuck, a spike and a range rule on every sensor type).

Then, in this process, messages one by one through `evaluate` with each
device's state carried, counting the messages whose state changed (a write):
what the conditions add in writes per message.

    python -m benchmarks.bench_conditions [--readings N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from benchmarks.baseline import ROOT, CodeTree, baseline_tree
from benchmarks.bench_core import build_workload
from benchmarks.processes import ensure_bytecode
from benchmarks.workload import ratio, table, verdict

BEFORE_COMMIT: Final = "7bf65a9"
REPEATS: Final = 5
TARGET_RATIO: Final = 1.05
CONDITION_RULES: Final = """
rules:
  - name: bench-heating-rate
    match: {type: temperature}
    rate: {above: {warning: 2, critical: 5}, below: {warning: -2}, per: 1m, over: 5m}
  - name: bench-pressure-stuck
    match: {type: pressure}
    stuck: {for: 30m, tolerance: 0.001}
  - name: bench-vibration-spike
    match: {type: vibration}
    spike: {jump: 3}
  - name: bench-range
    match: {type: "*"}
    range: {min: -40, max: 150}
"""


def child(history: Path, rules_path: Path) -> dict[str, float]:
    """In this process (whichever tree's `telemetry` is first on the path): best
    of 3 CPU seconds to validate every line and to evaluate every reading."""
    from telemetry.core.alerts import evaluate
    from telemetry.core.messages import LATEST_MS, parse_message_json
    from telemetry.core.rules import RuleSet, load_rules

    lines = history.read_bytes().splitlines()
    loaded = load_rules(rules_path)
    parsed = [parse_message_json(line, LATEST_MS) for line in lines]
    by_device: dict[str, list[Any]] = {}
    for message in parsed:
        by_device.setdefault(message.device_id, []).extend(message.readings)

    def validate() -> None:
        for line in lines:
            parse_message_json(line, LATEST_MS)

    def evaluate_all() -> None:
        rules = RuleSet(loaded.rules)
        for readings in by_device.values():
            evaluate(readings, {}, rules)

    def best(step: Any) -> float:
        times = []
        for _ in range(3):
            began = time.process_time()
            step()
            times.append(time.process_time() - began)
        return min(times)

    return {"validation": best(validate), "evaluation": best(evaluate_all)}


def writes_per_message(messages: Sequence[dict[str, Any]], rules_path: Path) -> float:
    """Share of messages whose evaluation changes the device's state (a write)."""
    from telemetry.core.alerts import AlertState, StateKey, evaluate
    from telemetry.core.messages import LATEST_MS, parse_message_json
    from telemetry.core.rules import load_rules

    rules = load_rules(rules_path)
    states: dict[str, dict[StateKey, AlertState]] = {}
    written = 0
    for raw in messages:
        message = parse_message_json(json.dumps(raw).encode(), LATEST_MS)
        state = states.get(message.device_id, {})
        result = evaluate(message.readings, state, rules)
        written += result.changed
        states[message.device_id] = result.state
    return written / len(messages)


def _run_child(tree: CodeTree, history: Path, rules: Path) -> dict[str, float]:
    done = tree.run(
        ["-m", "benchmarks.bench_conditions", "--child", str(history), str(rules)],
        env={k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"},
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def run(readings: int = 100_000, repeats: int = REPEATS, seed: int = 7) -> dict[str, Any]:
    messages = build_workload(readings, seed)
    ours, before = CodeTree("ours", ROOT), CodeTree("before", baseline_tree(BEFORE_COMMIT))
    ensure_bytecode(ROOT / "telemetry", ROOT / "benchmarks", before.root / "telemetry")
    with tempfile.TemporaryDirectory() as scratch:
        history = Path(scratch) / "history.jsonl"
        history.write_text("".join(json.dumps(m) + "\n" for m in messages))
        levels = Path(scratch) / "levels"
        levels.mkdir()
        shutil.copy(ROOT / "rules" / "default.yaml", levels / "default.yaml")
        conditions = Path(scratch) / "conditions"
        conditions.mkdir()
        shutil.copy(ROOT / "rules" / "default.yaml", conditions / "default.yaml")
        (conditions / "conditions.yaml").write_text(CONDITION_RULES)
        cases = {
            "before": (before, levels),
            "levels": (ours, levels),
            "conditions": (ours, conditions),
        }
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        for _ in range(repeats):
            for name, (tree, rules) in cases.items():
                samples[name].append(_run_child(tree, history, rules))
        writes = {
            "levels": writes_per_message(messages, levels),
            "conditions": writes_per_message(messages, conditions),
        }
    medians = {
        name: {
            step: statistics.median(s[step] for s in runs) for step in ("validation", "evaluation")
        }
        for name, runs in samples.items()
    }
    total = {name: m["validation"] + m["evaluation"] for name, m in medians.items()}
    levels_ratio = ratio(total["levels"], total["before"])
    return {
        "readings": readings,
        "repeats": repeats,
        "before_commit": BEFORE_COMMIT,
        "samples": samples,
        "median_cpu_seconds": medians,
        "readings_per_second": {name: readings / t for name, t in total.items()},
        "ratio_levels_to_before": levels_ratio,
        "ratio_evaluation_levels_to_before": ratio(
            medians["levels"]["evaluation"], medians["before"]["evaluation"]
        ),
        "ratio_conditions_to_levels": ratio(total["conditions"], total["levels"]),
        "writes_per_message": writes,
        "targets": [
            {
                "target": f"validate + evaluate, levels only: <= {TARGET_RATIO}x before",
                "measured": f"{levels_ratio:.3f}x",
                "ok": levels_ratio <= TARGET_RATIO,
            }
        ],
    }


def report(numbers: Mapping[str, Any]) -> None:
    print(
        f"workload: {numbers['readings']:,} readings (bench_core's); in-process CPU, best of 3, "
        f"median of {numbers['repeats']} taking turns; before = {numbers['before_commit']}"
    )
    rows = []
    for name, m in numbers["median_cpu_seconds"].items():
        rows.append(
            [
                name,
                f"{m['validation']:.3f}",
                f"{m['evaluation']:.3f}",
                f"{numbers['readings_per_second'][name]:,.0f}",
                "" if name == "before" else f"{numbers['writes_per_message'][name]:.3f}",
            ]
        )
    print(table(["case", "validate s", "evaluate s", "readings/s", "writes/msg"], rows))
    print(
        f"levels vs before: {numbers['ratio_levels_to_before']:.3f}x (evaluation alone "
        f"{numbers['ratio_evaluation_levels_to_before']:.3f}x); conditions vs levels: "
        f"{numbers['ratio_conditions_to_levels']:.2f}x"
    )
    print(
        table(
            ["target", "measured", "verdict"],
            [[t["target"], t["measured"], verdict(t["ok"])] for t in numbers["targets"]],
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--child", nargs=2, metavar=("HISTORY", "RULES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(Path(args.child[0]), Path(args.child[1]))))
        return
    report(run(args.readings, args.repeats))


if __name__ == "__main__":
    sys.exit(main())
