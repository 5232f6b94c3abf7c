"""What the function is invoked with, turned into device messages.

- IoT Core lifecycle events (the connectivity rule -> Lambda): a device
  connected or disconnected, exactly as IoT Core publishes it.
- Direct (IoT topic rule -> Lambda): the rule's SELECT result, one message
  object. Anything else (a JSON array included: the rule never sends one, and
  its items would carry deviceIds no topic vouches for) is one message that
  validation quarantines.
- Stream batches: Kinesis Data Streams records (base64 of the rule's JSON
  message, partition key = the deviceId the rule took from the topic) and SQS
  records (the JSON message as the body). Each record is decoded and validated
  in one pass from its bytes. A record that cannot be used, however hostile,
  becomes a Rejection and its siblings go on: not base64, not JSON (nested
  too deep, numbers too long), or, on Kinesis, a payload whose deviceId is not
  the partition key (never processed under the payload's id).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from dataclasses import dataclass
from typing import Any, Final

from telemetry.core.connectivity import LIFECYCLE_EVENT_TYPES
from telemetry.core.messages import (
    MessageRejectedError,
    ParsedMessage,
    Rejection,
    decode_json,
    iso_utc,
    parse_message_json,
    parse_time_ms,
)

KINESIS: Final = "aws:kinesis"
SQS: Final = "aws:sqs"


def direct_messages(event: Any) -> list[Any]:
    """The messages of a direct invocation: the event is one message (which
    validation then accepts or quarantines)."""
    return [event]


def _from_the_topic_rule(event: Any) -> bool:
    """Whether the event carries what the IoT topic rule adds to a device's
    message (deviceId from the topic, receivedAt): whatever else it holds, it
    is that device's message, never a batch or a schedule."""
    return isinstance(event, dict) and ("deviceId" in event or "receivedAt" in event)


def stream_source(event: Any) -> str | None:
    """`aws:kinesis` or `aws:sqs` when the event is such a batch, else None.

    A device that publishes a `Records` list must not pass its contents off as
    a batch, whose records name their own devices."""
    if _from_the_topic_rule(event):
        return None
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
    Kinesis sequence number), and its validated message or why it has none."""

    record_id: str
    message: ParsedMessage | None = None
    rejection: Rejection | None = None

    @property
    def device_id(self) -> str | None:
        return self.message.device_id if self.message is not None else None


def _unusable(record_id: str, field: str, code: str, detail: str, payload: Any) -> StreamRecord:
    return StreamRecord(record_id, rejection=Rejection(field, code, detail, payload))


def _parsed(
    raw: bytes | str, record_id: str, field: str, now_ms: int, partition_key: str | None
) -> StreamRecord:
    try:
        parsed = parse_message_json(raw, now_ms)
    except MessageRejectedError as exc:
        rejection = exc.rejection
        if rejection.code == "not_json":
            rejection = dataclasses.replace(rejection, field=field)
        return StreamRecord(record_id, rejection=rejection)
    if partition_key is not None and parsed.device_id != partition_key:
        detail = (
            f"the payload's deviceId {parsed.device_id!r} is not the record's partition key "
            f"{partition_key!r}, the deviceId the topic rule took from the topic"
        )
        rejection = Rejection(
            "deviceId", "device_mismatch", detail, decode_json(raw), partition_key
        )
        return StreamRecord(record_id, rejection=rejection)
    return StreamRecord(record_id, message=parsed)


def _kinesis_record(record: dict[str, Any], now_ms: int) -> StreamRecord:
    kinesis = record.get("kinesis")
    if not isinstance(kinesis, dict):
        return _unusable("", "kinesis", "malformed_record", "no kinesis record", record)
    record_id = str(kinesis.get("sequenceNumber", ""))
    data = kinesis.get("data")
    key = kinesis.get("partitionKey")
    if not isinstance(key, str):
        return _unusable(record_id, "kinesis.partitionKey", "missing", "no partition key", data)
    if not isinstance(data, str):
        return _unusable(record_id, "kinesis.data", "not_base64", "no base64 data", data)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        return _unusable(record_id, "kinesis.data", "not_base64", f"undecodable: {exc}", data)
    return _parsed(raw, record_id, "kinesis.data", now_ms, key)


def _sqs_record(record: dict[str, Any], now_ms: int) -> StreamRecord:
    record_id = str(record.get("messageId"))
    body = record.get("body")
    if not isinstance(body, str):
        return _unusable(record_id, "body", "not_json", "no message body", body)
    return _parsed(body, record_id, "body", now_ms, None)


def stream_records(event: dict[str, Any], now_ms: int) -> list[StreamRecord]:
    """Decode and validate every record of a Kinesis or SQS batch, in batch
    order; `now_ms` is the validation clock."""
    out: list[StreamRecord] = []
    for record in event["Records"]:
        if not isinstance(record, dict):
            out.append(_unusable("", "$", "malformed_record", "a record must be an object", record))
        elif record.get("eventSource") == KINESIS:
            out.append(_kinesis_record(record, now_ms))
        else:
            out.append(_sqs_record(record, now_ms))
    return out


def is_lifecycle_event(event: Any) -> bool:
    """Whether the event is one of IoT Core's lifecycle (presence) events, as the
    connectivity topic rule hands it over: `eventType` connected or disconnected,
    and none of what the telemetry rule adds. A device's payload on its telemetry
    topic carries the deviceId the rule took from the topic: it is telemetry,
    whatever its fields. (A malformed lifecycle event is recognised here and
    quarantined with its reason.)"""
    if not isinstance(event, dict) or _from_the_topic_rule(event):
        return False
    return event.get("eventType") in LIFECYCLE_EVENT_TYPES


def scheduled_time_ms(event: Any) -> int | None:
    """The time of an EventBridge scheduled event (the sweep), or None for any
    other event. An IoT rule's event always carries the deviceId it took from
    the topic, so a device publishing this shape can never pass for the schedule."""
    if not isinstance(event, dict) or _from_the_topic_rule(event):
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


SWEEP_SHARD_SOURCE: Final = "telemetry.sweep"
"""The `source` of the events the scheduled sweep sends the function itself,
one per shard of the due index (`{"source", "shard", "time"}`). Only principals
allowed to invoke the function can send one; a device's message through the
topic rule always carries its deviceId, so it never passes for one."""


def sweep_shard(event: Any) -> tuple[str, int] | None:
    """The shard and time of a sweep shard event, or None for any other event."""
    if not isinstance(event, dict) or _from_the_topic_rule(event):
        return None
    if event.get("source") != SWEEP_SHARD_SOURCE:
        return None
    shard, raw = event.get("shard"), event.get("time")
    if not isinstance(shard, str) or not isinstance(raw, str):
        return None
    try:
        return shard, parse_time_ms(raw)
    except ValueError:
        return None


def sweep_shard_event(shard: str, time_ms: int) -> dict[str, Any]:
    """The event that has one invocation sweep one shard as of `time_ms`."""
    return {"source": SWEEP_SHARD_SOURCE, "shard": shard, "time": iso_utc(time_ms)}
