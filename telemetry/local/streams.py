"""Stream events as Lambda delivers them, for local runs, benchmarks and tests.

Kinesis records carry the topic rule's message, base64-encoded, with deviceId
as the partition key (what IngestMode=Stream deploys); SQS records carry it as
the body. A payload given as bytes is sent as is (to test undecodable data).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

REGION = "us-east-1"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:123456789012:stream/telemetry"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:telemetry-ingest"


def _raw(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def _field(payload: Any, name: str) -> Any:
    return payload.get(name) if isinstance(payload, dict) else None


def sequence_number(n: int) -> str:
    """Kinesis sequence numbers are decimal strings that sort as they count."""
    return f"{n:030d}"


def kinesis_event(payloads: Sequence[Any], first_sequence: int = 1) -> dict[str, Any]:
    """One shard's batch: the payloads in order, numbered from `first_sequence`."""
    records = []
    for offset, payload in enumerate(payloads):
        n = first_sequence + offset
        key = _field(payload, "deviceId")
        arrival = _field(payload, "receivedAt")
        records.append(
            {
                "eventSource": "aws:kinesis",
                "eventSourceARN": STREAM_ARN,
                "eventID": f"shardId-000000000000:{sequence_number(n)}",
                "eventName": "aws:kinesis:record",
                "eventVersion": "1.0",
                "awsRegion": REGION,
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/telemetry",
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": key if isinstance(key, str) else "unknown",
                    "sequenceNumber": sequence_number(n),
                    "data": base64.b64encode(_raw(payload)).decode(),
                    "approximateArrivalTimestamp": (
                        arrival / 1000 if isinstance(arrival, int | float) else 0.0
                    ),
                },
            }
        )
    return {"Records": records}


def sqs_event(payloads: Sequence[Any]) -> dict[str, Any]:
    """One SQS batch: each payload as a message body."""
    return {
        "Records": [
            {
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": REGION,
                "messageId": f"m-{i}",
                "receiptHandle": f"r-{i}",
                "body": _raw(payload).decode("utf-8", "replace"),
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
            }
            for i, payload in enumerate(payloads)
        ]
    }
