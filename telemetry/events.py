"""What the function is invoked with, turned into a list of device messages.

- Direct (IoT topic rule -> Lambda): the rule's SELECT result, one message
  object; a JSON array of messages is accepted too.
- Stream batches (Kinesis, SQS) are recognised by their `Records`.
"""

from __future__ import annotations

from typing import Any


def direct_messages(event: Any) -> list[Any]:
    """The messages of a direct invocation: a list as is, anything else as one
    message (which validation then accepts or quarantines)."""
    if isinstance(event, list):
        return event
    return [event]


def is_stream_batch(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return isinstance(records, list) and bool(records) and all(
        isinstance(r, dict) and r.get("eventSource") in {"aws:sqs", "aws:kinesis"}
        for r in records
    )
