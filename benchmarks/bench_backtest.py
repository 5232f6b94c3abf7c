"""Backtest memory as the history grows: peak RSS of whole processes for
100,000, 1 million and 10 million readings, beside today's whole-history code.

The workload is bench_core's (1,000 devices x 4 sensors, a message of four
readings per device every 15 s, its time jittered within a second, about 3% of
values past a level), generated on the fly by a separate process and piped
into `telemetry backtest --format jsonl --rules rules -`, whose peak resident
memory (VmHWM, benchmarks.peak) and CPU are measured; the generator's are not.
Today's code (the commit before streaming, TODAY_COMMIT) is run the same way
where it fits (up to 1 million readings), and its transitions are compared
with ours byte for byte. Targets: 1 million and 10 million readings each
within 100 MB.

    python -m benchmarks.bench_backtest [--sizes 100000,1000000,10000000]
    python -m benchmarks.bench_backtest --generate N    (the workload's lines, to stdout)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from benchmarks.baseline import ROOT, CodeTree, baseline_tree
from benchmarks.bench_core import DEVICES, INTERVAL_MS, SENSORS, START_MS
from benchmarks.processes import ensure_bytecode
from benchmarks.workload import table, verdict

TODAY_COMMIT: Final = "7bf65a9"
"""main before streaming: every reading held until the end."""
SIZES: Final = (100_000, 1_000_000, 10_000_000)
TODAY_UP_TO: Final = 1_000_000
TARGET_MB: Final = 100.0


def workload_lines(readings: int, seed: int = 7) -> Iterator[bytes]:
    """bench_core.build_workload's messages, one JSON line each, made one at a time."""
    rng = random.Random(seed)
    for index in range(readings // len(SENSORS)):
        device, round_ = index % DEVICES, index // DEVICES
        data = [
            {
                "sensorId": f"{kind}-1",
                "type": kind,
                "value": round(rng.gauss(mean, sd), 2),
                "unit": unit,
                "location": f"line-{device % 12}",
            }
            for kind, (unit, mean, sd, _) in SENSORS.items()
        ]
        message = {
            "deviceId": f"pump-{device:04d}",
            "timestamp": START_MS + round_ * INTERVAL_MS + rng.randrange(1_000),
            "data": data,
        }
        yield json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _generate(readings: int) -> None:
    out = sys.stdout.buffer
    batch: list[bytes] = []
    for line in workload_lines(readings):
        batch.append(line)
        if len(batch) == 1_000:
            out.write(b"".join(batch))
            batch = []
    out.write(b"".join(batch))
    out.flush()


def _run(tree: CodeTree, readings: int) -> dict[str, Any]:
    """One backtest process fed `readings` by a generator process."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "peak"
        generator = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_backtest", "--generate", str(readings)],
            cwd=ROOT,
            env=CodeTree("ours", ROOT).environment(env),
            stdout=subprocess.PIPE,
        )
        command = [sys.executable, "-m", "benchmarks.peak", str(report), "telemetry"]
        command += ["backtest", "--format", "jsonl", "--rules", "rules", "-"]
        started = time.perf_counter()
        child = subprocess.Popen(
            command,
            cwd=tree.root,
            env=tree.environment(env),
            stdin=generator.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert generator.stdout is not None  # noqa: S101
        generator.stdout.close()
        digest, transitions = hashlib.sha256(), 0
        assert child.stdout is not None  # noqa: S101
        for line in child.stdout:
            digest.update(line)
            transitions += 1
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        generator.wait()
        if status != 0:
            raise RuntimeError(f"{tree.name}: backtest of {readings} readings failed ({status})")
        return {
            "readings": readings,
            "peak_mb": float(report.read_text()),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "wall_s": wall,
            "transitions": transitions,
            "sha256": digest.hexdigest(),
        }


def run(sizes: Sequence[int] = SIZES) -> dict[str, Any]:
    ours = CodeTree("ours", ROOT)
    today = CodeTree(f"today {TODAY_COMMIT}", baseline_tree(TODAY_COMMIT))
    ensure_bytecode(ROOT / "telemetry", ROOT / "benchmarks", today.root / "telemetry")
    rows = []
    for readings in sizes:
        row: dict[str, Any] = {"ours": _run(ours, readings)}
        if readings <= TODAY_UP_TO:
            row["today"] = _run(today, readings)
            row["same"] = row["today"]["sha256"] == row["ours"]["sha256"]
        rows.append(row)
    return {"rows": rows, "target_mb": TARGET_MB, "today_commit": TODAY_COMMIT}


def report(results: dict[str, Any]) -> None:
    lines = []
    for row in results["rows"]:
        ours, today = row["ours"], row.get("today")
        lines.append(
            [
                f"{ours['readings']:,}",
                f"{ours['peak_mb']:.1f}",
                f"{today['peak_mb']:.1f}" if today else "-",
                f"{ours['cpu_s']:.1f}",
                f"{today['cpu_s']:.1f}" if today else "-",
                f"{ours['wall_s']:.1f}",
                f"{ours['transitions']:,}",
                ("yes" if row["same"] else "NO") if today else "-",
            ]
        )
    print(
        table(
            (
                "readings",
                "ours peak MB",
                "today peak MB",
                "ours CPU s",
                "today CPU s",
                "ours wall s",
                "transitions",
                "same as today",
            ),
            lines,
        )
    )
    big = [r for r in results["rows"] if r["ours"]["readings"] >= 1_000_000]
    ok = all(r["ours"]["peak_mb"] <= results["target_mb"] for r in big) and all(
        r.get("same", True) for r in results["rows"]
    )
    print(f"Target: 1M and 10M readings within {results['target_mb']:.0f} MB: {verdict(ok)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--generate", type=int, metavar="N")
    args = parser.parse_args(argv)
    if args.generate is not None:
        _generate(args.generate)
        return
    report(run([int(s) for s in args.sizes.split(",")]))


if __name__ == "__main__":
    main()
