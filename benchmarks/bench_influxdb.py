"""Cost per million messages with InfluxDB as the store, by fleet rate, beside
Timestream for LiveAnalytics and the naive seed handler, in one run.

The same fleet workload as bench_cost goes through our handler with
TIMESERIES_STORE=influxdb (Direct and Stream) against a real local influxd
(Debian's influxdb package; the local InfluxDB 3 of tests/influxdb_server.py
when influxd is not installed), and with LiveAnalytics and through the naive
handler, each on a fresh moto stack. Every AWS call is metered as bench_cost
meters it; InfluxDB writes are not billed per write but per instance-hour, so
the instance's price is spread over the messages of an hour at each rate:

    USD per million messages = hourly price / (rate x 3600) x 1e6

on the smallest instance that holds the rate's points per second (readings plus
alert history, counted in the run) at most at TARGET_LOAD of its write capacity.

    python -m benchmarks.bench_influxdb [--devices N] [--messages M]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from benchmarks.bench_cost import cost_per_million, total_per_million
from benchmarks.naive import run_naive
from benchmarks.workload import (
    HandlerRun,
    default_rules,
    fleet,
    readings_in,
    run_handler,
    stream_events,
    table,
    warning_levels,
)

RATES: Final = (100, 1_000, 10_000)
"""Fleet rates, messages per second."""
TARGET_LOAD: Final = 0.7
"""Size so that the writes take at most this share of the instance's write capacity
(AWS's monitoring guide: production CPU under 80%)."""
HOURS_PER_MONTH: Final = 730


@dataclass(frozen=True, slots=True)
class Instance:
    name: str
    vcpus: int
    usd_per_hour: float
    writes_per_second: float


# Prices, Single-AZ, us-east-1 on-demand. db.influx.medium at $0.12/h is from a
# third-party copy (the AWS pricing page, aws.amazon.com/timestream/pricing, could
# not be read from here: unconfirmed); the larger sizes follow AWS Prescriptive
# Guidance (Timestream for InfluxDB Well-Architected, cost optimization pillar):
# "instance costs scale linearly", the 2xlarge twice the xlarge. Multi-AZ doubles it.
# Write capacity: the same guide, "db.influx.2xlarge typically supports up to
# 150,000 writes per second" (50,000 to over 500,000 across types), scaled by vCPUs.
_WRITES_PER_VCPU: Final = 150_000 / 8
INSTANCES: Final = tuple(
    Instance(name, vcpus, 0.12 * vcpus, _WRITES_PER_VCPU * vcpus)
    for name, vcpus in (
        ("db.influx.medium", 1),
        ("db.influx.large", 2),
        ("db.influx.xlarge", 4),
        ("db.influx.2xlarge", 8),
        ("db.influx.4xlarge", 16),
        ("db.influx.8xlarge", 32),
    )
)
VPC_ENDPOINTS_PER_HOUR: Final = 5 * 2 * 0.01
"""With the function in the instance's VPC: SNS, SQS, IoT data, Secrets Manager and
Lambda (the sweep's fan-out) interface endpoints in two AZs at $0.01 per endpoint-hour
and AZ (AWS PrivateLink pricing, us-east-1; data processed, $0.01/GB, is negligible
here). The DynamoDB gateway endpoint is free. A NAT gateway instead costs ~$0.045/h
plus $0.045/GB."""


def smallest_instance(points_per_second: float) -> Instance:
    """The smallest instance whose write capacity holds the rate at TARGET_LOAD."""
    for instance in INSTANCES:
        if points_per_second <= instance.writes_per_second * TARGET_LOAD:
            return instance
    return INSTANCES[-1]


def per_million(usd_per_hour: float, rate: float) -> float:
    return usd_per_hour / (rate * 3600) * 1e6


@contextlib.contextmanager
def influx_store() -> Iterator[tuple[str, Mapping[str, str]]]:
    """(what it is, the TIMESERIES_STORE variables): a real influxd when installed."""
    if shutil.which("influxd"):
        from telemetry.local.influx import LocalInfluxd, influxql

        with LocalInfluxd() as influxd:
            influxql(influxd.url, 'CREATE DATABASE "bench"')
            yield (
                "a real influxd 1.x (v1 API)",
                {
                    "TIMESERIES_STORE": "influxdb",
                    "INFLUXDB_URL": influxd.url,
                    "INFLUXDB_API": "v1",
                    "INFLUXDB_DATABASE": "bench",
                },
            )
        return
    from tests.influxdb_server import FakeInflux

    with FakeInflux(flavor="v3") as fake:
        yield (
            "the local InfluxDB 3 of tests/influxdb_server.py (influxd not installed)",
            {
                "TIMESERIES_STORE": "influxdb",
                "INFLUXDB_URL": fake.url,
                "INFLUXDB_API": "v3",
                "INFLUXDB_DATABASE": "telemetry",
                "INFLUXDB_TOKEN": "write-token",
            },
        )


def run(devices: int = 200, messages: int = 30, batch: int = 500, seed: int = 7) -> dict[str, Any]:
    rules = default_rules()
    workload = fleet(devices, messages, seed=seed, rules=rules)
    direct_batches = [[m] for m in workload]
    stream_batches = [workload[i : i + batch] for i in range(0, len(workload), batch)]
    with influx_store() as (store_name, store):
        runs = {
            "Direct, InfluxDB": run_handler("Direct, InfluxDB", direct_batches, workload, store),
            "Stream, InfluxDB": run_handler(
                "Stream, InfluxDB", stream_batches, stream_events(stream_batches), store
            ),
        }
    runs["Direct, LiveAnalytics"] = run_handler("Direct, LiveAnalytics", direct_batches, workload)
    runs["Stream, LiveAnalytics"] = run_handler(
        "Stream, LiveAnalytics", stream_batches, stream_events(stream_batches)
    )
    runs["naive (Timestream)"] = run_naive(workload, warning_levels(rules))
    transitions = runs["Direct, InfluxDB"].usage.sns_publishes
    points_per_message = (readings_in(workload) + transitions) / len(workload)
    return {
        "store": store_name,
        "workload": {
            "messages": len(workload),
            "readings": readings_in(workload),
            "points_per_message": points_per_message,
            "stream_batch": batch,
        },
        "function_cost_per_million": {name: total_per_million(r) for name, r in runs.items()},
        "cost_lines": {name: cost_per_million(r) for name, r in runs.items()},
        "store_requests_per_1000_messages": {
            name: r.store_requests / r.messages * 1000
            for name, r in runs.items()
            if r.store_requests
        },
        "timestream_requests_per_1000_messages": {
            name: r.usage.timestream_calls / r.messages * 1000 for name, r in runs.items()
        },
        "by_rate": [_at_rate(rate, points_per_message, runs) for rate in RATES],
    }


def _at_rate(
    rate: int, points_per_message: float, runs: Mapping[str, HandlerRun]
) -> dict[str, Any]:
    instance = smallest_instance(rate * points_per_message)
    instance_cost = per_million(instance.usd_per_hour, rate)
    endpoints = per_million(VPC_ENDPOINTS_PER_HOUR, rate)
    totals = {name: total_per_million(r) for name, r in runs.items()}
    influx = {
        name: totals[name] + instance_cost for name in ("Direct, InfluxDB", "Stream, InfluxDB")
    }
    return {
        "rate": rate,
        "points_per_second": rate * points_per_message,
        "instance": instance.name,
        "instance_usd_per_month": instance.usd_per_hour * HOURS_PER_MONTH,
        "instance_per_million": instance_cost,
        "vpc_endpoints_per_million": endpoints,
        "totals": influx
        | {name: totals[name] for name in totals if "InfluxDB" not in name}
        | {f"{name} + VPC endpoints": cost + endpoints for name, cost in influx.items()},
    }


def report(numbers: Mapping[str, Any]) -> None:
    w = numbers["workload"]
    print(
        f"workload: {w['messages']:,} messages, {w['readings']:,} readings, "
        f"{w['points_per_message']:.3f} points per message (readings + alert history); "
        f"Stream batches of {w['stream_batch']}; InfluxDB: {numbers['store']}"
    )
    function = numbers["function_cost_per_million"]
    print("\nUSD per million messages for the function and what it calls (no instance)")
    names = list(function)
    print(table(["", *names], [["total", *(f"{function[n]:.4f}" for n in names)]]))
    requests = numbers["store_requests_per_1000_messages"]
    print(
        "store write requests per 1,000 messages: "
        + ", ".join(f"{name} {value:.1f}" for name, value in requests.items())
    )
    print(
        "\nUSD per million messages by fleet rate, InfluxDB instance included "
        f"(sized for <= {TARGET_LOAD:.0%} of its write capacity; Single-AZ)"
    )
    header = [
        "msg/s",
        "points/s",
        "instance",
        "instance $/month",
        "InfluxDB Direct",
        "InfluxDB Stream",
        "LiveAnalytics Direct",
        "LiveAnalytics Stream",
        "naive",
        "InfluxDB Stream + VPC endpoints",
    ]
    rows = []
    for row in numbers["by_rate"]:
        t = row["totals"]
        rows.append(
            [
                f"{row['rate']:,}",
                f"{row['points_per_second']:,.0f}",
                row["instance"],
                f"{row['instance_usd_per_month']:.0f}",
                f"{t['Direct, InfluxDB']:.4f}",
                f"{t['Stream, InfluxDB']:.4f}",
                f"{t['Direct, LiveAnalytics']:.4f}",
                f"{t['Stream, LiveAnalytics']:.4f}",
                f"{t['naive (Timestream)']:.4f}",
                f"{t['Stream, InfluxDB + VPC endpoints']:.4f}",
            ]
        )
    print(table(header, rows))
    print(
        "\nInstance price: db.influx.medium $0.12/h (third-party copy, unconfirmed), larger "
        "sizes linear in vCPUs (AWS Prescriptive Guidance); capacity: db.influx.2xlarge "
        "~150,000 writes/s (same guide), linear in vCPUs. Storage is not included."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--messages", type=int, default=30)
    args = parser.parse_args(argv)
    report(run(args.devices, args.messages))


if __name__ == "__main__":
    main()
