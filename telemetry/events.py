"""What the function is invoked with, turned into device messages.

- Direct (IoT topic rule -> Lambda): the rule's SELECT result, one message
  object; a JSON array of messages is accepted too.
- Stream batches: Kinesis Data Streams records (base64 of the rule's JSON
  message, partition key = deviceId) and SQS records (the JSON message as the
  body). A record that cannot be decoded becomes a Rejection, not a failure.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from telemetry.core.messages import Rejection, parse_time_ms

KINESIS = "aws:kinesis"
SQS = "aws:sqs"


def direct_messages(event: Any) -> list[Any]:
    """The messages of a direct invocation: a list as is, anything else as one
    message (which validation then accepts or quarantines)."""
    if isinstance(event, list):
        return event
    return [event]


def stream_source(event: Any) -> str | None:
    """`aws:kinesis` or `aws:sqs` when the event is such a batch, else None."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        return None
    sources = {r.get("eventSource") for r in records if isinstance(r, dict)}
    if len(sources) == 1 and sources <= {KINESIS, SQS}:
        return sources.pop()
    return None


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One batch record: its id for partial batch responses (SQS messageId,
    Kinesis sequence number), and its message or why it has none."""

    record_id: str
    message: Any = None
    rejection: Rejection | None = None

    @property
    def device_id(self) -> str | None:
        if isinstance(self.message, dict) and isinstance(self.message.get("deviceId"), str):
            return str(self.message["deviceId"])
        return None


def _decode(raw: str | bytes, record_id: str, field: str) -> StreamRecord:
    try:
        return StreamRecord(record_id, message=json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        rejection = Rejection(field, "not_json", f"not a JSON message: {exc}", text)
        return StreamRecord(record_id, rejection=rejection)


def stream_records(event: dict[str, Any]) -> list[StreamRecord]:
    """Decode every record of a Kinesis or SQS batch, in batch order."""
    out: list[StreamRecord] = []
    for record in event["Records"]:
        if record.get("eventSource") == KINESIS:
            kinesis = record.get("kinesis", {})
            record_id = str(kinesis.get("sequenceNumber", ""))
            try:
                raw = base64.b64decode(kinesis.get("data", ""), validate=True)
            except binascii.Error as exc:
                rejection = Rejection(
                    "kinesis.data", "not_base64", f"undecodable: {exc}", kinesis.get("data")
                )
                out.append(StreamRecord(record_id, rejection=rejection))
                continue
            out.append(_decode(raw, record_id, "kinesis.data"))
        else:
            out.append(_decode(str(record.get("body", "")), str(record.get("messageId")), "body"))
    return out


def scheduled_time_ms(event: Any) -> int | None:
    """The time of an EventBridge scheduled event (the sweep), or None for any
    other event. An IoT rule's event always carries the deviceId it took from
    the topic, so a device publishing this shape can never pass for the schedule."""
    if not isinstance(event, dict) or "deviceId" in event or "receivedAt" in event:
        return None
    if event.get("source") != "aws.events" or event.get("detail-type") != "Scheduled Event":
        return None
    raw = event.get("time")
    if not isinstance(raw, str):
        return None
    try:
        return parse_time_ms(raw)
    except ValueError:
        return None
