"""AWS list prices, one table for the demo and the benchmarks.

US East (N. Virginia), on-demand, USD, from aws.amazon.com/lambda/pricing,
/dynamodb/pricing/on-demand, /timestream/pricing (1 KiB writes, metered as in
docs.aws.amazon.com/timestream/latest/developerguide/metering-and-pricing.writes.html),
/sns/pricing, /iot-core/pricing, /sqs/pricing, /cloudwatch/pricing and
/kinesis/data-streams/pricing.
Lambda on arm64, billed per ms; SNS deliveries to SQS are free. The IoT Core
messaging and rule prices are from third-party copies that
shared/context/aws-facts.md marks unconfirmed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from telemetry.adapters.timestream import billed_bytes


@dataclass(frozen=True, slots=True)
class Price:
    usd: float
    unit: str


PRICES: Final[Mapping[str, Price]] = {
    "Lambda requests": Price(0.20e-6, "request"),
    "Lambda compute": Price(0.0000133334, "GB-s"),
    "DynamoDB reads": Price(0.125e-6, "read unit (4 KB)"),
    "DynamoDB writes": Price(0.625e-6, "write unit (1 KB)"),
    "Timestream writes": Price(0.50e-6, "write (1 KiB)"),
    "SNS publishes": Price(0.50e-6, "request (64 KB)"),
    "IoT shadow updates": Price(1.25e-6, "operation (1 KB)"),
    "SQS requests": Price(0.40e-6, "request (64 KB)"),
    "IoT Core messages": Price(1.00e-6, "message (5 KB)"),
    "IoT rules and actions": Price(0.30e-6, "rule + action"),
    "CloudWatch Logs": Price(0.50, "GB ingested"),
    # Provisioned mode; shard-hours ($0.015 each) are per hour, not per message.
    "Kinesis PUT payload units": Price(0.014e-6, "PUT payload unit (25 KB)"),
}


def billed_units(size: int, unit: int) -> int:
    """How many `unit`-sized units a request of `size` bytes is billed: at least one."""
    return max(1, math.ceil(size / unit))


def dynamodb_item_bytes(item: Mapping[str, Mapping[str, Any]]) -> int:
    """DynamoDB's item size, which its write units are billed on: attribute names
    plus values (strings as UTF-8, numbers about one byte per two digits)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        elif "N" in value:
            size += math.ceil(len(value["N"].lstrip("-").replace(".", "")) / 2) + 1
        else:
            size += 1
    return size


def metered_units(service: str, operation: str, params: Mapping[str, Any]) -> dict[str, int]:
    """The billed units of one AWS call, keyed by the PRICES line they are paid on.

    `params` are the call's parameters as botocore's `before-parameter-build`
    event sees them; the demo and the benchmarks meter recorded calls with this.
    """
    match operation:
        case "GetItem":
            return {"DynamoDB reads": 1}  # strongly consistent, items under 4 KB
        case "BatchGetItem":
            keys = sum(len(t["Keys"]) for t in params["RequestItems"].values())
            return {"DynamoDB reads": keys}
        case "PutItem":
            return {"DynamoDB writes": billed_units(dynamodb_item_bytes(params["Item"]), 1024)}
        case "WriteRecords":
            size = sum(billed_bytes(r) for r in params["Records"])
            return {"Timestream writes": billed_units(size, 1024)}
        case "Publish" | "PublishBatch":
            entries = params.get("PublishBatchRequestEntries", [params])
            return {"SNS publishes": sum(billed_units(_sns_bytes(e), 65_536) for e in entries)}
        case "UpdateThingShadow":
            return {"IoT shadow updates": billed_units(len(params["payload"]), 1024)}
        case "SendMessage" | "SendMessageBatch" if service == "sqs":
            entries = params.get("Entries", [params])
            size = sum(len(e["MessageBody"].encode()) for e in entries)
            return {"SQS requests": billed_units(size, 65_536)}
    return {}


def _sns_bytes(entry: Mapping[str, Any]) -> int:
    """A published message is billed on its body and its attributes."""
    attributes = entry.get("MessageAttributes", {})
    return len(entry["Message"].encode()) + sum(
        len(k) + len(v.get("StringValue", "")) for k, v in attributes.items()
    )
