"""Cold start: the handler's import and runtime build, beside boto3 and its clients.

Each case is a whole Python process (interpreter start included), started
REPEATS times in turn after one unmeasured warm-up (which also writes the bytecode
caches); the median wall time counts:

- baseline: `import boto3` and create the five clients the function uses;
- handler: import `telemetry.handler` and `build_runtime(Settings.from_env(...))`,
  which creates the same five clients and loads the rules, with a valid
  environment of fake names (nothing calls AWS);
- import only: `import telemetry.handler`;
- interpreter: `python -c pass`, what every process pays before any import;
- handler, InfluxDB: the handler case with TIMESERIES_STORE=influxdb (no Timestream
  client; one urllib3 pool), against the handler case with Timestream.

Target: handler / baseline <= 1.5. `-X importtime` of the handler case lists the
imports that cost the most (self time), to tune against.

    python -m benchmarks.bench_coldstart [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from benchmarks.workload import ROOT, function_environment, ratio, table, verdict

REPEATS: Final = 15
TARGET_RATIO: Final = 1.5
TOP_IMPORTS: Final = 10

CASES: Final = {
    "baseline": (
        "import boto3; [boto3.client(s, region_name='us-east-1') for s in "
        "('timestream-write', 'sns', 'dynamodb', 'iot-data', 'sqs')]"
    ),
    "handler": (
        "import os; import telemetry.handler as h; from telemetry.settings import Settings; "
        "h.build_runtime(Settings.from_env(os.environ))"
    ),
    "import only": "import telemetry.handler",
    "interpreter": "pass",
    "handler, InfluxDB": (
        "import os; import telemetry.handler as h; from telemetry.settings import Settings; "
        "h.build_runtime(Settings.from_env(os.environ))"
    ),
}
INFLUXDB_ENV: Final = {
    "TIMESERIES_STORE": "influxdb",
    "INFLUXDB_URL": "https://influx.example.com:8181",
    "INFLUXDB_DATABASE": "telemetry",
    "INFLUXDB_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:t-AbCdEf",
}
"""The case's store: a made-up endpoint and secret; nothing is called at build time."""

LABELS: Final = {
    "baseline": "import boto3 + 5 clients (baseline)",
    "handler": "import handler + build_runtime",
    "import only": "import telemetry.handler",
    "interpreter": "python -c pass",
    "handler, InfluxDB": "import handler + build_runtime, TIMESERIES_STORE=influxdb",
}


def _run(code: str, env: Mapping[str, str], *flags: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-c", code],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, done.stderr


def top_imports(stderr: str, count: int = TOP_IMPORTS) -> list[tuple[str, float, float]]:
    """(module, self ms, cumulative ms) of the costliest imports in `-X importtime` output."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        rows.append((name.strip(), int(self_us) / 1000, int(cumulative_us) / 1000))
    return sorted(rows, key=lambda r: r[1], reverse=True)[:count]


def run(repeats: int = REPEATS) -> dict[str, Any]:
    env = function_environment()
    envs = {name: env | (INFLUXDB_ENV if "InfluxDB" in name else {}) for name in CASES}
    for name, code in CASES.items():
        _run(code, envs[name])  # warm-up: bytecode caches, file system caches
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(repeats):
        for name, code in CASES.items():
            times[name].append(_run(code, envs[name])[0])
    _, importtime = _run(CASES["handler"], env, "-X", "importtime")
    medians = {name: statistics.median(values) for name, values in times.items()}
    handler_ratio = ratio(medians["handler"], medians["baseline"])
    influx_ratio = ratio(medians["handler, InfluxDB"], medians["handler"])
    return {
        "ratio_influxdb_to_timestream": influx_ratio,
        "influxdb_ok": influx_ratio <= 1.0,
        "repeats": repeats,
        "seconds": times,
        "median_seconds": medians,
        "ratio_handler_to_baseline": handler_ratio,
        "target": TARGET_RATIO,
        "ok": handler_ratio <= TARGET_RATIO,
        "top_imports_ms": [
            {"module": m, "self_ms": s, "cumulative_ms": c} for m, s, c in top_imports(importtime)
        ],
    }


def report(numbers: Mapping[str, Any]) -> None:
    medians = numbers["median_seconds"]
    base = medians["baseline"]
    rows = []
    for name, label in LABELS.items():
        values = numbers["seconds"][name]
        rows.append(
            [
                label,
                f"{medians[name]:.3f}",
                f"{min(values):.3f}",
                f"{max(values):.3f}",
                f"{ratio(medians[name], base):.2f}",
            ]
        )
    print(f"whole processes, median of {numbers['repeats']} (seconds)")
    print(table(["", "median", "min", "max", "vs baseline"], rows))
    print(
        f"\nhandler / baseline: {numbers['ratio_handler_to_baseline']:.2f} "
        f"(target <= {numbers['target']}): {verdict(numbers['ok'])}"
    )
    print(
        f"handler with InfluxDB / handler with Timestream: "
        f"{numbers['ratio_influxdb_to_timestream']:.2f} (target <= 1, no worse): "
        f"{verdict(numbers['influxdb_ok'])}"
    )
    print(f"\n{TOP_IMPORTS} costliest imports of the handler case (-X importtime, self time)")
    print(
        table(
            ["module", "self ms", "cumulative ms"],
            [
                [i["module"], f"{i['self_ms']:.1f}", f"{i['cumulative_ms']:.1f}"]
                for i in numbers["top_imports_ms"]
            ],
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    report(run(parser.parse_args(argv).repeats))


if __name__ == "__main__":
    main()
