"""AWS API calls and cost per million messages: Direct, Stream and the naive handler.

One fleet workload (`workload.fleet`: 200 devices x 30 messages of four readings,
about 3% anomalous) goes, in the same run and each on a fresh stack in moto
(in process), through:

- Direct: our handler, one invocation per message (the IoT rule invokes the
  function for each message);
- Stream: our handler, one invocation per Kinesis batch of 500 records in arrival
  order (one shard, partition key deviceId);
- naive: the seed-style handler of `benchmarks.naive`.

Every AWS call is recorded and metered as AWS bills it (read and write units,
1 KiB Timestream units per request, 1 KB shadow units, 64 KB SNS and SQS chunks),
then priced with the table below. Lambda duration is this machine's mean time per
invocation under moto, billed at 256 MB arm64: a local measurement, not Lambda's.

CloudWatch Logs are a line of the processing bill: what the handler prints (log
lines and EMF metrics) and Lambda's own START, END and REPORT lines, which every
invocation of any handler writes, ours and the naive one alike.

The whole bill adds what AWS charges before the function runs: IoT Core's
messaging (5 KB units of each device PUBLISH's payload and topic; none with Basic
Ingest), one rule triggered and one action per message; and, for Stream, Kinesis
on demand (1 KB per record written and read, and the stream-hours at a stated
fleet rate). Basic Ingest changes only the messaging line, for any handler: the
naive one is priced with and without it too.

Every ratio printed as a headline is computed here from the same lines for both
sides (`headline_ratios`): the docs quote them, never a ratio worked out by hand.

The targets are checked per invocation against a reference run of the pure core
(`telemetry.core.alerts.evaluate` on the same readings): SNS publishes equal
transitions, shadow writes equal changes of the active alerts, and state writes
equal state changes (a commit, plus the outbox clear and the notification group's
count when there are transitions). The runs budget notifications per device, never
holding anything: the steady state (bench_notify measures a flood).

    python -m benchmarks.bench_cost [--devices N] [--messages M] [--batch B] [--seed S]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from benchmarks.naive import naive_records, run_naive
from benchmarks.workload import (
    PER_DEVICE_BUDGET,
    TIMESTREAM_BATCH,
    HandlerRun,
    Usage,
    ceil_div,
    default_rules,
    fleet,
    invocation_time,
    is_anomalous,
    ratio,
    readings_in,
    rules_with,
    run_handler,
    stream_events,
    table,
    verdict,
    warning_levels,
)
from telemetry.adapters.timestream import billed_bytes
from telemetry.core.rules import RuleSet
from telemetry.local.prices import PRICES as LIST_PRICES
from telemetry.local.prices import iot_message_units, kinesis_kilobytes

MEMORY_GB: Final = 256 / 1024
FLEET_RATE: Final = 100  # messages/s: 1,000 devices, one message each 10 s
GB: Final = 2**30
PER_MILLION: Final = 1_000_000
WAIT_MS: Final = 10  # an in-Region AWS round trip, for the sensitivity note

# USD per unit, from the one price table the demo uses too.
PRICES: Final = {
    "lambda_request": LIST_PRICES["Lambda requests"].usd,
    "lambda_gb_second": LIST_PRICES["Lambda compute"].usd,
    "dynamodb_read_unit": LIST_PRICES["DynamoDB reads"].usd,
    "dynamodb_write_unit": LIST_PRICES["DynamoDB writes"].usd,
    "timestream_write_unit": LIST_PRICES["Timestream writes"].usd,
    "sns_publish": LIST_PRICES["SNS publishes"].usd,
    "shadow_unit": LIST_PRICES["IoT shadow updates"].usd,
    "sqs_request": LIST_PRICES["SQS requests"].usd,
    "log_gb": LIST_PRICES["CloudWatch Logs"].usd,
    "iot_message": LIST_PRICES["IoT Core messages"].usd,
    "iot_rule": LIST_PRICES["IoT rules triggered"].usd,
    "iot_action": LIST_PRICES["IoT rule actions"].usd,
    "kinesis_in_gb": LIST_PRICES["Kinesis on-demand data in"].usd,
    "kinesis_out_gb": LIST_PRICES["Kinesis on-demand data out"].usd,
    "kinesis_stream_hour": LIST_PRICES["Kinesis on-demand stream-hours"].usd,
}

_REQUEST_ID: Final = "8f5c2d1e-3b4a-4c6d-9e8f-0a1b2c3d4e5f"
LAMBDA_LOG_LINES: Final = (
    f"START RequestId: {_REQUEST_ID} Version: $LATEST\n",
    f"END RequestId: {_REQUEST_ID}\n",
    (
        f"REPORT RequestId: {_REQUEST_ID}\tDuration: 4.04 ms\tBilled Duration: 5 ms\t"
        "Memory Size: 256 MB\tMax Memory Used: 83 MB\t\n"
    ),
)
LAMBDA_LOG_BYTES: Final = sum(len(line.encode()) for line in LAMBDA_LOG_LINES)
"""What Lambda itself writes to the function's log group per invocation, whatever
the handler prints."""
LOGS: Final = "CloudWatch Logs (handler + Lambda's lines)"


def log_bytes(usage: Usage) -> int:
    """Bytes ingested by CloudWatch Logs: the handler's output and Lambda's lines."""
    return usage.log_bytes + usage.invocations * LAMBDA_LOG_BYTES


COST_LINES: Final[tuple[tuple[str, Callable[[Usage], float]], ...]] = (
    ("Lambda requests", lambda u: u.invocations * PRICES["lambda_request"]),
    (
        "Lambda duration (local, 256 MB)",
        lambda u: u.billed_ms / 1000 * MEMORY_GB * PRICES["lambda_gb_second"],
    ),
    ("DynamoDB reads", lambda u: u.state_read_units * PRICES["dynamodb_read_unit"]),
    ("DynamoDB writes", lambda u: u.state_write_units * PRICES["dynamodb_write_unit"]),
    ("Timestream writes", lambda u: u.timestream_units * PRICES["timestream_write_unit"]),
    ("SNS publishes", lambda u: u.sns_units * PRICES["sns_publish"]),
    ("IoT shadow updates", lambda u: u.shadow_units * PRICES["shadow_unit"]),
    ("SQS dead-letter queue", lambda u: u.dlq_requests * PRICES["sqs_request"]),
    (LOGS, lambda u: log_bytes(u) / GB * PRICES["log_gb"]),
)


BILL_COLUMNS: Final = (
    ("Direct", "Direct", False),
    ("Direct, Basic Ingest", "Direct", True),
    ("Stream", "Stream", False),
    ("Stream, Basic Ingest", "Stream", True),
    ("naive", "naive", False),
    ("naive, Basic Ingest", "naive", True),
)
BILL_LINES: Final = (
    "IoT Core messaging",
    "IoT rules triggered",
    "IoT rule actions",
    "Kinesis data in",
    "Kinesis data out",
    "Kinesis stream-hours",
    "processing (above)",
)


def device_payload(message: Mapping[str, Any]) -> bytes:
    """What the device publishes: the message without what the topic rule adds."""
    sent = {k: v for k, v in message.items() if k not in {"deviceId", "receivedAt"}}
    return json.dumps(sent).encode()


def whole_bill(
    run: HandlerRun,
    messages: Sequence[Mapping[str, Any]],
    *,
    stream: bool,
    basic_ingest: bool,
    rate: float = FLEET_RATE,
) -> dict[str, float]:
    """USD per million messages, IoT Core and Kinesis included."""
    count = len(messages)
    units = sum(
        iot_message_units(device_payload(m), f"dt/plant/{m['deviceId']}/telemetry")
        for m in messages
    )
    kilobytes = sum(kinesis_kilobytes(json.dumps(m).encode()) for m in messages) if stream else 0
    per_message = {
        "IoT Core messaging": 0.0 if basic_ingest else units * PRICES["iot_message"] / count,
        "IoT rules triggered": PRICES["iot_rule"],
        "IoT rule actions": PRICES["iot_action"],
        "Kinesis data in": kilobytes * 1024 / GB * PRICES["kinesis_in_gb"] / count,
        "Kinesis data out": kilobytes * 1024 / GB * PRICES["kinesis_out_gb"] / count,
        "Kinesis stream-hours": PRICES["kinesis_stream_hour"] / (rate * 3600) if stream else 0,
        "processing (above)": total_per_million(run) / PER_MILLION,
    }
    bill = {line: value * PER_MILLION for line, value in per_message.items()}
    bill["total"] = sum(bill.values())
    return bill


def wait_cost_per_million() -> float:
    """Lambda duration cost of WAIT_MS more per invocation, per million invocations."""
    return WAIT_MS / 1000 * MEMORY_GB * PRICES["lambda_gb_second"] * PER_MILLION


@dataclass(slots=True)
class Effects:
    """What one invocation must do, by the reference run of the core."""

    transitions: int = 0
    state_writes: int = 0
    shadow_writes: int = 0


def cost_per_million(run: HandlerRun) -> dict[str, float]:
    return {label: price(run.usage) / run.messages * PER_MILLION for label, price in COST_LINES}


def total_per_million(run: HandlerRun) -> float:
    return sum(cost_per_million(run).values())


KINESIS_LINES: Final = ("Kinesis data in", "Kinesis data out", "Kinesis stream-hours")
DIRECT_MARGIN: Final = 0.15
"""USD per million messages Direct may cost over the naive handler, logs included."""


def headline_ratios(bill: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """naive / ours, each from the same lines on both sides (above 1: ours is cheaper):
    the whole bill with and without Basic Ingest, and the function's side alone
    (processing with its logs; for Stream, with the Kinesis it needs)."""

    def side(column: str) -> float:
        return bill[column]["processing (above)"] + sum(bill[column][k] for k in KINESIS_LINES)

    rows = []
    for mode in ("Direct", "Stream"):
        for suffix, label in (("", "whole bill"), (", Basic Ingest", "whole bill, Basic Ingest")):
            ours, naive = bill[mode + suffix]["total"], bill["naive" + suffix]["total"]
            rows.append({"mode": mode, "what": label, "ours": ours, "naive": naive})
        what = "processing + logs" + (" + Kinesis" if mode == "Stream" else "")
        rows.append({"mode": mode, "what": what, "ours": side(mode), "naive": side("naive")})
    for row in rows:
        row["ratio"] = ratio(row["naive"], row["ours"])
    return rows


def expected_effects(
    invocations: Sequence[Sequence[dict[str, Any]]], rules: RuleSet
) -> list[Effects]:
    """Replay the invocations through the pure core alone."""
    from telemetry.core.alerts import evaluate
    from telemetry.core.messages import parse_message
    from telemetry.core.mirror import mirror_entries

    states: dict[str, Any] = {}
    out = []
    for batch in invocations:
        now_ms = invocation_time(batch)
        by_device: dict[str, list[Any]] = defaultdict(list)
        for message in batch:
            parsed = parse_message(message, now_ms)
            by_device[parsed.device_id].extend(parsed.readings)
        effects = Effects()
        for device_id, readings in by_device.items():
            before = states.get(device_id, {})
            result = evaluate(readings, before, rules)
            states[device_id] = result.state
            effects.transitions += len(result.transitions)
            effects.state_writes += int(result.changed) + int(bool(result.transitions))
            # and the device's notification group counts its changes in one write
            effects.state_writes += int(bool(result.transitions))
            effects.shadow_writes += int(mirror_entries(before) != mirror_entries(result.state))
        out.append(effects)
    return out


def _timestream_excess(run: HandlerRun) -> tuple[int, int]:
    """Invocations that made more WriteRecords calls than ceil(records / 100), and
    how many calls more in all."""
    extra = [
        u.timestream_calls - ceil_div(u.timestream_records, TIMESTREAM_BATCH)
        for u in run.invocations
    ]
    return sum(e > 0 for e in extra), sum(e for e in extra if e > 0)


def _mismatches(run: HandlerRun, expected: Sequence[Effects], measure: str, want: str) -> int:
    return sum(
        getattr(u, measure) != getattr(e, want)
        for u, e in zip(run.invocations, expected, strict=True)
    )


def check_targets(
    direct: HandlerRun,
    stream: HandlerRun,
    naive: HandlerRun,
    expected: Mapping[str, Sequence[Effects]],
) -> list[dict[str, Any]]:
    """Each target: what it asks, what was measured, PASS or FAIL."""
    targets: list[dict[str, Any]] = []
    for run in (direct, stream):
        effects = expected[run.name]
        for label, measure, want in (
            ("SNS publishes = transitions", "sns_publishes", "transitions"),
            ("shadow writes = active-alert changes", "shadow_writes", "shadow_writes"),
            ("state writes = state changes", "state_writes", "state_writes"),
        ):
            got = sum(getattr(u, measure) for u in run.invocations)
            wanted = sum(getattr(e, want) for e in effects)
            bad = _mismatches(run, effects, measure, want)
            targets.append(
                {
                    "target": f"{run.name}: {label}",
                    "measured": f"{got:,} vs {wanted:,} ({bad} invocations differ)",
                    "ok": bad == 0,
                }
            )
        over, extra = _timestream_excess(run)
        targets.append(
            {
                "target": f"{run.name}: Timestream calls <= ceil(records/100)",
                "measured": f"{over:,} of {len(run.invocations):,} invocations exceed it "
                f"(+{extra:,} calls)",
                "ok": over == 0,
            }
        )
    limit = total_per_million(naive) + DIRECT_MARGIN
    targets.append(
        {
            "target": f"Direct <= naive + ${DIRECT_MARGIN:.2f} per million, logs included",
            "measured": f"${total_per_million(direct):.4f} vs ${limit:.4f} per million",
            "ok": total_per_million(direct) <= limit,
        }
    )
    return targets


def stream_target(bill: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Stream's processing, its logs and the Kinesis it needs, against naive's."""
    [row] = [r for r in headline_ratios(bill) if r["mode"] == "Stream" and "Kinesis" in r["what"]]
    return {
        "target": "Stream >= 10x cheaper than naive (processing + logs + Kinesis)",
        "measured": f"{row['ratio']:.2f}x",
        "ok": row["ratio"] >= 10,
    }


def smallest_record_bytes(reading: Any) -> int:
    """The metered size of the smallest record that still carries deviceId,
    sensorId, type and location: those four dimensions, the time, a one-letter
    measure name and the double."""
    size = 8 + 1 + 8
    for name, value in (
        ("deviceId", reading.device_id),
        ("sensorId", reading.sensor_id),
        ("type", reading.type),
        ("location", reading.location),
    ):
        if value:
            size += len(name) + len(value.encode())
    return size


def _shared_bytes(device: str, location: str) -> int:
    return len("deviceId") + len(device) + (len("location") + len(location) if location else 0)


def common_attribute_units(invocations: Sequence[Sequence[dict[str, Any]]]) -> int:
    """1 KiB units the readings' records of `invocations` would take with
    CommonAttributes: one call per device (and location) per invocation, at most
    100 records, deviceId and location counted once in the call, the rest per record."""
    units = 0
    for records in invocations:
        by_call: dict[tuple[str, str], list[int]] = defaultdict(list)
        for record in records:
            if record["MeasureName"] != "reading":
                continue
            dims = {d["Name"]: d["Value"] for d in record["Dimensions"]}
            key = (dims["deviceId"], dims.get("location", ""))
            by_call[key].append(billed_bytes(record) - _shared_bytes(*key))
        for key, sizes in by_call.items():
            for start in range(0, len(sizes), TIMESTREAM_BATCH):
                chunk = sizes[start : start + TIMESTREAM_BATCH]
                units += ceil_div(sum(chunk) + _shared_bytes(*key), 1024)
    return units


def full_call_units(invocations: Sequence[Sequence[dict[str, Any]]]) -> int:
    """1 KiB units of the same records in full calls of 100 (the last one partial)."""
    units = 0
    for records in invocations:
        sizes = [billed_bytes(r) for r in records if r["MeasureName"] == "reading"]
        for start in range(0, len(sizes), TIMESTREAM_BATCH):
            units += ceil_div(sum(sizes[start : start + TIMESTREAM_BATCH]), 1024)
    return units


def record_shape_by_batch(
    messages: Sequence[dict[str, Any]], batches: Sequence[int] = (100, 500, 2_000, 6_000)
) -> list[dict[str, float]]:
    """Units per reading in full calls and in per-device calls with CommonAttributes,
    for invocations of `batch` messages in arrival order."""
    from telemetry.adapters.timestream import TimestreamRecords
    from telemetry.core.messages import parse_message

    factory = TimestreamRecords()
    records = [
        factory.reading(r)
        for m in messages
        for r in parse_message(m, invocation_time([m])).readings
    ]
    per_message = [len(m["data"]) for m in messages]
    out = []
    for batch in batches:
        invocations, first = [], 0
        for start in range(0, len(messages), batch):
            count = sum(per_message[start : start + batch])
            invocations.append(records[first : first + count])
            first += count
        devices = len({m["deviceId"] for m in messages[:batch]})
        out.append(
            {
                "batch": batch,
                "readings_per_device": sum(per_message[:batch]) / devices,
                "full_calls": full_call_units(invocations) / len(records),
                "common_attributes": common_attribute_units(invocations) / len(records),
            }
        )
    return out


def data_model(
    direct: HandlerRun, stream: HandlerRun, naive: HandlerRun, messages: Sequence[dict[str, Any]]
) -> dict[str, float]:
    """Metered bytes per reading record, and 1 KiB write units per reading."""
    from telemetry.adapters.timestream import TimestreamRecords
    from telemetry.core.messages import parse_message

    factory = TimestreamRecords()
    ours = [
        billed_bytes(factory.reading(r))
        for m in messages
        for r in parse_message(m, invocation_time([m])).readings
    ]
    seed = [billed_bytes(r) for m in messages for r in naive_records(m)]
    readings = readings_in(messages)
    smallest = [
        smallest_record_bytes(r)
        for m in messages
        for r in parse_message(m, invocation_time([m])).readings
    ]
    return {
        "ours_bytes_per_reading": sum(ours) / len(ours),
        "smallest_bytes_per_reading": sum(smallest) / len(smallest),
        "stream_units_per_device_calls_with_common_attributes": common_attribute_units(
            stream.written
        )
        / readings,
        "naive_bytes_per_reading": sum(seed) / len(seed),
        "direct_units_per_reading": direct.usage.timestream_units / readings,
        "stream_units_per_reading": stream.usage.timestream_units / readings,
        "naive_units_per_reading": naive.usage.timestream_units / readings,
    }


def run(devices: int = 200, messages: int = 30, batch: int = 500, seed: int = 7) -> dict[str, Any]:
    rules = default_rules()
    levels = warning_levels(rules)
    workload = fleet(devices, messages, seed=seed, rules=rules)
    direct_invocations = [[m] for m in workload]
    stream_invocations = [workload[i : i + batch] for i in range(0, len(workload), batch)]
    # The steady state: a notification budget per device the fleet never exceeds
    # (bench_notify measures it beside today's code, and a flood).
    budget = {"RULES_PATH": rules_with(PER_DEVICE_BUDGET)}
    direct = run_handler("Direct", direct_invocations, workload, budget)
    stream = run_handler("Stream", stream_invocations, stream_events(stream_invocations), budget)
    naive = run_naive(workload, levels)
    expected = {
        "Direct": expected_effects(direct_invocations, rules),
        "Stream": expected_effects(stream_invocations, rules),
    }
    runs = (direct, stream, naive)
    bill = {
        column: whole_bill(
            {"Direct": direct, "Stream": stream, "naive": naive}[mode],
            workload,
            stream=mode == "Stream",
            basic_ingest=basic_ingest,
        )
        for column, mode, basic_ingest in BILL_COLUMNS
    }
    return {
        "workload": {
            "devices": devices,
            "messages": len(workload),
            "readings": readings_in(workload),
            "stream_batch": batch,
            "anomalous_messages": sum(is_anomalous(m, levels) for m in workload),
            "transitions": sum(e.transitions for e in expected["Direct"]),
            "batch_failures": stream.batch_failures,
        },
        "usage": {r.name: _usage_json(r.usage) for r in runs},
        "cost_per_million": {
            r.name: {**cost_per_million(r), "total": total_per_million(r)} for r in runs
        },
        "lambda_log_bytes_per_invocation": LAMBDA_LOG_BYTES,
        "data_model": data_model(direct, stream, naive, workload),
        "whole_bill": bill,
        "headline_ratios": headline_ratios(bill),
        "fleet_rate": FLEET_RATE,
        "record_shape_by_batch": record_shape_by_batch(workload),
        "targets": [
            *check_targets(direct, stream, naive, expected),
            stream_target(bill),
            _partial_writes(stream),
        ],
    }


def _partial_writes(stream: HandlerRun) -> dict[str, Any]:
    """Stream's Timestream bill at the floor of its calls: none partial but the last."""
    partial = sum(
        any(size < TIMESTREAM_BATCH for size in u.timestream_sizes[:-1]) for u in stream.invocations
    )
    return {
        "target": "Stream: no partial WriteRecords call but an invocation's last",
        "measured": f"{partial} of {len(stream.invocations)} invocations have one",
        "ok": partial == 0,
    }


def _usage_json(usage: Usage) -> dict[str, Any]:
    out = asdict(usage)
    out["operations"] = dict(sorted(usage.operations.items()))
    del out["timestream_sizes"]
    return out


def report(numbers: Mapping[str, Any]) -> None:
    w = numbers["workload"]
    print(
        f"workload: {w['devices']:,} devices, {w['messages']:,} messages, {w['readings']:,} "
        f"readings; {w['anomalous_messages']:,} anomalous messages "
        f"({w['anomalous_messages'] / w['messages']:.1%}), {w['transitions']:,} transitions; "
        f"Stream batches of {w['stream_batch']:,}; batch item failures: {w['batch_failures']}"
    )
    modes = ("Direct", "Stream", "naive")
    usage = numbers["usage"]

    platform, per = numbers["lambda_log_bytes_per_invocation"], w["messages"] / 1000

    def per_k(key: str) -> list[str]:
        return [f"{usage[m][key] / w['messages'] * 1000:,.1f}" for m in modes]

    rows = [
        ["Lambda invocations", *per_k("invocations")],
        [
            "mean ms per invocation (local)",
            *[f"{usage[m]['seconds'] / usage[m]['invocations'] * 1000:,.2f}" for m in modes],
        ],
        ["AWS API calls", *per_k("api_calls")],
        ["DynamoDB read units", *per_k("state_read_units")],
        ["DynamoDB PutItem", *per_k("state_writes")],
        ["DynamoDB write units", *per_k("state_write_units")],
        ["shadow updates", *per_k("shadow_writes")],
        ["SNS publishes", *per_k("sns_publishes")],
        ["Timestream WriteRecords calls", *per_k("timestream_calls")],
        ["Timestream 1 KiB write units", *per_k("timestream_units")],
        ["SQS requests", *per_k("dlq_requests")],
        ["log bytes printed by the handler", *per_k("log_bytes")],
        [
            "log bytes with Lambda's lines",
            *[
                f"{(usage[m]['log_bytes'] + usage[m]['invocations'] * platform) / per:,.1f}"
                for m in modes
            ],
        ],
    ]
    print("\nAWS usage per 1,000 messages")
    print(table(["", *modes], rows))

    costs = numbers["cost_per_million"]
    lines = [label for label, _ in COST_LINES]
    cost_rows = [[label, *(f"{costs[m][label]:.4f}" for m in modes)] for label in [*lines, "total"]]
    print(
        f"\nUSD per million messages, our processing (Lambda's own log lines: "
        f"{numbers['lambda_log_bytes_per_invocation']} bytes per invocation, on every side)"
    )
    print(table(["", *modes], cost_rows))

    d = numbers["data_model"]
    print("\nTimestream data model")
    print(
        table(
            ["", "bytes per reading", "units per reading, Direct", "units per reading, Stream"],
            [
                [
                    "ours: multi-measure `reading`",
                    f"{d['ours_bytes_per_reading']:.1f}",
                    f"{d['direct_units_per_reading']:.3f}",
                    f"{d['stream_units_per_reading']:.3f}",
                ],
                [
                    "smallest record with deviceId, sensorId, type, location",
                    f"{d['smallest_bytes_per_reading']:.1f}",
                    "-",
                    "-",
                ],
                [
                    "ours, CommonAttributes (one call per device)",
                    "-",
                    "-",
                    f"{d['stream_units_per_device_calls_with_common_attributes']:.3f}",
                ],
                [
                    "naive: single-measure per sensor",
                    f"{d['naive_bytes_per_reading']:.1f}",
                    f"{d['naive_units_per_reading']:.3f}",
                    "-",
                ],
            ],
        )
    )
    print("\nTimestream 1 KiB units per reading by invocation size: full calls of 100 records")
    print("beside one call per device with deviceId and location as CommonAttributes")
    print(
        table(
            ["messages per invocation", "readings per device", "full calls", "CommonAttributes"],
            [
                [
                    f"{b['batch']:,}",
                    f"{b['readings_per_device']:.0f}",
                    f"{b['full_calls']:.3f}",
                    f"{b['common_attributes']:.3f}",
                ]
                for b in numbers["record_shape_by_batch"]
            ],
        )
    )
    bill = numbers["whole_bill"]
    columns = [column for column, _, _ in BILL_COLUMNS]
    print(
        f"\nThe whole bill, USD per million messages: IoT Core, Kinesis on demand (stream-hours "
        f"at {numbers['fleet_rate']} messages/s) and our processing"
    )
    print(
        table(
            ["", *columns],
            [[line, *(f"{bill[c][line]:.4f}" for c in columns)] for line in [*BILL_LINES, "total"]],
        )
    )
    print(
        "\nHeadline ratios, naive / ours (above 1: ours is cheaper), the same lines on both sides"
    )
    print(
        table(
            ["", "what", "ours", "naive", "naive / ours"],
            [
                [
                    r["mode"],
                    r["what"],
                    f"${r['ours']:.4f}",
                    f"${r['naive']:.4f}",
                    f"{r['ratio']:.2f}x",
                ]
                for r in numbers["headline_ratios"]
            ],
        )
    )
    print("\nTargets")
    print(
        table(
            ["target", "measured", "verdict"],
            [[t["target"], t["measured"], verdict(t["ok"])] for t in numbers["targets"]],
        )
    )
    calls = {m: usage[m]["api_calls"] / usage[m]["invocations"] for m in ("Direct", "naive")}
    print(
        f"Each {WAIT_MS} ms an invocation waits on AWS adds ${wait_cost_per_million():.4f} per "
        f"million at 256 MB; Direct makes {calls['Direct']:.2f} AWS calls per message, "
        f"naive {calls['naive']:.2f}. Durations here are local, under moto."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--messages", type=int, default=30)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    report(run(args.devices, args.messages, args.batch, args.seed))


if __name__ == "__main__":
    main()
