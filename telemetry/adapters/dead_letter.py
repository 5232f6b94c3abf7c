"""The dead-letter queue: nothing rejected is dropped silently.

Each item is a JSON message with its `reason`, the original `payload` and a
deterministic `id` (the same item sent again by a retried invocation has the
same id; on a FIFO queue it is also the deduplication id).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, translate
from telemetry.errors import DependencyError

MAX_BATCH: Final = 10
MAX_BATCH_BYTES: Final = 256 * 1024
MAX_BODY_BYTES: Final = 250 * 1024
"""SQS takes 256 KiB per message; a larger payload (a Kinesis record may hold
1 MB) is cut, and the item says so, with the whole payload's SHA-256."""


def _json_safe(value: Any) -> Any:
    """NaN and infinities become strings: the queue's consumers parse strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def dead_letter_body(item: dict[str, Any]) -> str:
    """The message body: the item plus its deterministic id, within SQS's size."""
    safe = _json_safe(item)
    canonical = json.dumps(safe, sort_keys=True, separators=(",", ":"), default=str)
    safe["id"] = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    body = json.dumps(safe, separators=(",", ":"), default=str)
    if len(body.encode()) <= MAX_BODY_BYTES:
        return body
    payload = json.dumps(safe.get("payload"), separators=(",", ":"), default=str)
    safe["payloadSha256"] = hashlib.sha256(payload.encode()).hexdigest()
    safe["payloadBytes"] = len(payload.encode())
    safe["payloadTruncated"] = True
    safe["payload"] = payload.encode()[: MAX_BODY_BYTES // 2].decode("utf-8", "ignore")
    return json.dumps(safe, separators=(",", ":"), default=str)


class DeadLetterQueue:
    """Sends quarantined items to one SQS queue, ten per SendMessageBatch."""

    def __init__(self, queue_url: str, client: Any) -> None:
        self._queue_url = queue_url
        self._client = client
        self._fifo = queue_url.endswith(".fifo")
        self.calls = 0

    def send(self, items: Sequence[dict[str, Any]]) -> None:
        """Send every item or raise DependencyError (so the invocation is retried)."""
        batch: list[dict[str, Any]] = []
        size = 0
        for item in items:
            body = dead_letter_body(item)
            if batch and (len(batch) == MAX_BATCH or size + len(body) > MAX_BATCH_BYTES):
                self._send_batch(batch)
                batch, size = [], 0
            entry: dict[str, Any] = {"Id": f"m{len(batch)}", "MessageBody": body}
            if self._fifo:
                entry["MessageGroupId"] = str(item.get("deviceId") or "unknown")
                entry["MessageDeduplicationId"] = json.loads(body)["id"]
            batch.append(entry)
            size += len(body)
        if batch:
            self._send_batch(batch)

    def _send_batch(self, entries: list[dict[str, Any]]) -> None:
        self.calls += 1
        try:
            answer = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        except AWS_ERRORS as exc:
            raise translate("sqs", "SendMessageBatch", exc) from exc
        failed = answer.get("Failed", [])
        if failed:
            first = failed[0]
            raise DependencyError(
                "sqs",
                "SendMessageBatch",
                str(first.get("Code", "Failed")),
                f"{len(failed)} of {len(entries)} dead-letter items not accepted",
                transient=not first.get("SenderFault", False),
            )
