"""AWS list prices, one table for the demo and the benchmarks.

US East (N. Virginia), on-demand, USD. Each price says where it comes from and
whether the figure itself was read on an AWS page (`confirmed`); the metering
rules these prices apply to are in `metered_units` and the functions below.

Read on AWS pages (via the project's search tool, 2026):
- IoT Core (aws.amazon.com/iot-core/pricing and /pricing/additional-details): billed
  separately for connectivity, messaging, shadow/registry and the rules engine;
  the free tier counts "rules triggered" and "actions applied" apart; an MQTT
  PUBLISH from a device is metered on its payload and topic in 5 KB units.
  Basic Ingest ($aws/rules/<rule>/...) sends data to rule actions "without
  incurring messaging costs" (docs.aws.amazon.com/iot/latest/developerguide/
  iot-basic-ingest.html), and its prefix is not seen by topic(n).
- Kinesis Data Streams on demand (aws.amazon.com/kinesis/data-streams/pricing): billed
  per GB written, each record rounded up to 1 KB, per GB read, and per stream-hour.
- Timestream writes in 1 KiB units of the summed record sizes (developerguide
  metering-and-pricing.writes.html).
Not found in page text the search tool could reach, so taken from the figures
AWS's own worked examples use as copied by third parties, or from earlier
copies (aws-facts.md marks them unconfirmed): the $1.00 per million messages is
the figure of AWS's own IoT Core pricing example (Europe, Ireland, as copied by
third parties; US East's could not be read and is taken to be the same);
$0.15 per million rules triggered and per million actions applied;
Kinesis on-demand $0.08 per GB in, $0.04 per GB out, $0.04 per stream-hour;
$0.015 per shard-hour. The page's own price tables are rendered by script and
were not readable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from telemetry.adapters.state_store import item_bytes
from telemetry.adapters.timestream import billed_bytes


@dataclass(frozen=True, slots=True)
class Price:
    usd: float
    unit: str
    source: str = ""
    confirmed: bool = True


_IOT = "aws.amazon.com/iot-core/pricing"
_KINESIS = "aws.amazon.com/kinesis/data-streams/pricing"

PRICES: Final[Mapping[str, Price]] = {
    "Lambda requests": Price(0.20e-6, "request", "aws.amazon.com/lambda/pricing"),
    "Lambda compute": Price(0.0000133334, "GB-s (arm64)", "aws.amazon.com/lambda/pricing"),
    "DynamoDB reads": Price(0.125e-6, "read unit (4 KB)", "aws.amazon.com/dynamodb/pricing"),
    "DynamoDB writes": Price(0.625e-6, "write unit (1 KB)", "aws.amazon.com/dynamodb/pricing"),
    "DynamoDB index reads": Price(
        0.0625e-6, "eventually consistent read (4 KB)", "aws.amazon.com/dynamodb/pricing"
    ),
    "Timestream writes": Price(0.50e-6, "write (1 KiB)", "aws.amazon.com/timestream/pricing"),
    "SNS publishes": Price(0.50e-6, "request (64 KB)", "aws.amazon.com/sns/pricing"),
    "IoT shadow updates": Price(1.25e-6, "operation (1 KB)", _IOT),
    "SQS requests": Price(0.40e-6, "request (64 KB)", "aws.amazon.com/sqs/pricing"),
    "IoT Core messages": Price(1.00e-6, "message (5 KB of payload and topic)", _IOT, False),
    "IoT rules and actions": Price(0.30e-6, "rule triggered with one action", _IOT, False),
    "IoT rules triggered": Price(0.15e-6, "rule triggered", _IOT, False),
    "IoT rule actions": Price(0.15e-6, "action applied", _IOT, False),
    "CloudWatch Logs": Price(0.50, "GB ingested", "aws.amazon.com/cloudwatch/pricing"),
    "Kinesis on-demand data in": Price(0.08, "GB written (1 KB per record)", _KINESIS, False),
    "Kinesis on-demand data out": Price(0.04, "GB read", _KINESIS, False),
    "Kinesis on-demand stream-hours": Price(0.04, "stream-hour", _KINESIS, False),
    # Provisioned mode: shard-hours and PUT payload units.
    "Kinesis shard-hours": Price(0.015, "shard-hour", _KINESIS, False),
    "Kinesis PUT payload units": Price(0.014e-6, "PUT payload unit (25 KB)", _KINESIS, False),
}

IOT_MESSAGE_UNIT: Final = 5 * 1024
KINESIS_RECORD_UNIT: Final = 1024


def iot_message_units(payload: bytes, topic: str) -> int:
    """5 KB units IoT Core meters a device's PUBLISH in: its payload and topic."""
    return billed_units(len(payload) + len(topic.encode()), IOT_MESSAGE_UNIT)


def kinesis_kilobytes(record: bytes) -> int:
    """What Kinesis on demand meters a record as: its size rounded up to 1 KB."""
    return billed_units(len(record), KINESIS_RECORD_UNIT)


def billed_units(size: int, unit: int) -> int:
    """How many `unit`-sized units a request of `size` bytes is billed: at least one."""
    return max(1, math.ceil(size / unit))


def metered_units(service: str, operation: str, params: Mapping[str, Any]) -> dict[str, int]:
    """The billed units of one AWS call, keyed by the PRICES line they are paid on.

    `params` are the call's parameters as botocore's `before-parameter-build`
    event sees them; the demo and the benchmarks meter recorded calls with this.
    """
    if service == "dynamodb":
        return _dynamodb_units(operation, params)
    match operation:
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


def _dynamodb_units(operation: str, params: Mapping[str, Any]) -> dict[str, int]:
    match operation:
        case "GetItem":
            return {"DynamoDB reads": 1}  # strongly consistent, items under 4 KB
        case "BatchGetItem":
            keys = sum(len(t["Keys"]) for t in params["RequestItems"].values())
            return {"DynamoDB reads": keys}
        case "Query":
            # The sweep's index: eventually consistent, half a read unit per 4 KB of
            # results, metered at its minimum (the call's answer is not seen here;
            # keys-only entries of ~70 bytes, so under 4 KB for up to ~58 due devices).
            return {"DynamoDB index reads": 1}
        case "PutItem":
            return {"DynamoDB writes": billed_units(item_bytes(params["Item"]), 1024)}
        case "DeleteItem":
            return {"DynamoDB writes": 1}
        case "TransactWriteItems":
            # Transactional writes cost two write units per 1 KB of each item.
            units = 0
            for entry in params["TransactItems"]:
                if "Put" in entry:
                    units += 2 * billed_units(item_bytes(entry["Put"]["Item"]), 1024)
                else:
                    units += 2
            return {"DynamoDB writes": units}
    return {}


def _sns_bytes(entry: Mapping[str, Any]) -> int:
    """A published message is billed on its body and its attributes."""
    attributes = entry.get("MessageAttributes", {})
    return len(entry["Message"].encode()) + sum(
        len(k) + len(v.get("StringValue", "")) for k, v in attributes.items()
    )
