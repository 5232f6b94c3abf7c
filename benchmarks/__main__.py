"""`make bench`: every benchmark in turn, each beside its baseline, results saved as JSON.

    python -m benchmarks [--only NAME,...]

NAME: core, conditions, cost, coldstart, stream-cpu, stream, mqtt, influxdb, nodata, outage,
notify, rules, maintenance, backtest.

Writes benchmarks/results/latest.json (git-ignored). Targets are reported as
PASS or FAIL; a FAIL does not change the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from benchmarks import (
    bench_backtest,
    bench_coldstart,
    bench_conditions,
    bench_core,
    bench_cost,
    bench_influxdb,
    bench_maintenance,
    bench_mqtt,
    bench_nodata,
    bench_notify,
    bench_outage,
    bench_rules,
    bench_stream,
    bench_stream_cpu,
)

RESULTS: Final = Path(__file__).resolve().parent / "results" / "latest.json"


BENCHMARKS: Final[dict[str, tuple[str, Callable[[], Any], Callable[[Any], None]]]] = {
    "core": (
        "validate + evaluate, whole processes (bench_core)",
        bench_core.run,
        bench_core.report,
    ),
    "conditions": (
        "rate, stuck, spike and range: the level path beside the code before them",
        bench_conditions.run,
        bench_conditions.report,
    ),
    "cost": ("API calls and cost per million messages", bench_cost.run, bench_cost.report),
    "coldstart": ("cold start", bench_coldstart.run, bench_coldstart.report),
    "stream-cpu": (
        "stream CPU per message, beside today's code",
        bench_stream_cpu.run,
        bench_stream_cpu.report,
    ),
    "stream": ("stream batches: throughput and memory", bench_stream.run, bench_stream.report),
    "mqtt": (
        "device side: broker, rule and handler; publish to operator queue",
        bench_mqtt.run,
        bench_mqtt.report,
    ),
    "nodata": (
        "no-data alerts: tracking writes, sweep reads, one sweep's reach",
        bench_nodata.run,
        bench_nodata.report,
    ),
    "outage": (
        "a fleet incident: time to reach operators and messages, 2,000 to 50,000 devices",
        bench_outage.run,
        bench_outage.report,
    ),
    "notify": (
        "the notification budget: steady state beside today's code, and a flood",
        bench_notify.run,
        bench_notify.report,
    ),
    "rules": (
        "rule matching by number of rules and of keys; loading 10,000 rules",
        bench_rules.run,
        bench_rules.report,
    ),
    "maintenance": (
        "maintenance windows: judging them on readings and sweeps, beside none",
        bench_maintenance.run,
        bench_maintenance.report,
    ),
    "backtest": (
        "backtest memory at 100k / 1M / 10M readings, beside today's whole-history code",
        bench_backtest.run,
        bench_backtest.report,
    ),
    "influxdb": (
        "InfluxDB as the store: cost per million messages by fleet rate",
        bench_influxdb.run,
        bench_influxdb.report,
    ),
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help="comma-separated: " + ", ".join(BENCHMARKS)
    )
    chosen = [name.strip() for name in parser.parse_args(argv).only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    results: dict[str, Any] = {
        "started": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "benchmarks": {},
    }
    began = time.perf_counter()
    for name in chosen:
        title, run, report = BENCHMARKS[name]
        print(f"\n=== {name}: {title} ===", flush=True)
        started = time.perf_counter()
        numbers = run()
        report(numbers)
        seconds = time.perf_counter() - started
        print(f"({seconds:.1f} s)", flush=True)
        results["benchmarks"][name] = {"seconds": seconds, "results": numbers}
    results["seconds"] = time.perf_counter() - began
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nall benchmarks: {results['seconds']:.1f} s; results in {RESULTS}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
