"""The dead-letter queue: nothing rejected is dropped silently.

Each item is a JSON message with its `reason`, the original `payload` and a
deterministic `id`: the same item sent again by a retried invocation has the
same id (on a FIFO queue it is also the deduplication id). The id covers what
the item is (source, code, field, deviceId, payload), not the sentence that
explains it, which may quote the function's clock.

Any payload fits, however hostile: values JSON cannot hold become strings,
nesting deeper than MAX_PAYLOAD_DEPTH is cut, and a payload too large for an
SQS message is cut to fit (the item then says so, with the whole payload's
SHA-256 and size).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Sequence
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, translate
from telemetry.errors import DependencyError

MAX_BATCH: Final = 10
MAX_BATCH_BYTES: Final = 256 * 1024
MAX_BODY_BYTES: Final = 250 * 1024
"""SQS takes 256 KiB per message; a larger payload (a Kinesis record may hold
1 MB) is cut, and the item says so, with the whole payload's SHA-256."""
MAX_PAYLOAD_DEPTH: Final = 64
"""Containers nested deeper than this are replaced by a note: no real message
nests so deep, and JSON encoders recurse."""
_IDENTITY: Final = ("source", "code", "field", "deviceId", "payload")
_DIGITS: Final = sys.get_int_max_str_digits()
_TOO_LONG: Final = 10**_DIGITS if _DIGITS else None


def _leaf(value: Any) -> tuple[Any, bool]:
    """A scalar as JSON holds it, and whether it had to be changed beyond a spelling."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value), False  # NaN and infinities: the consumers parse strict JSON
    if isinstance(value, int) and _TOO_LONG is not None and abs(value) >= _TOO_LONG:
        return f"<an integer of more than {_DIGITS} digits>", True
    if value is None or isinstance(value, str | int | float):
        return value, False
    return str(value), False


def json_safe(value: Any) -> tuple[Any, bool]:
    """A copy of `value` that JSON text holds, and whether anything was cut.

    Iterative, so that no nesting depth can exhaust the stack: containers
    deeper than MAX_PAYLOAD_DEPTH become a note, dict keys become strings.
    """
    cut = False
    root: list[Any] = [None]
    pending: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 0)]
    while pending:
        item, parent, key, depth = pending.pop()
        if isinstance(item, dict | list | tuple) and depth >= MAX_PAYLOAD_DEPTH:
            parent[key], cut = f"<nested deeper than {MAX_PAYLOAD_DEPTH} levels>", True
        elif isinstance(item, dict):
            copy: dict[str, Any] = {}
            parent[key] = copy
            for k, v in item.items():
                copy[str(k)] = None
                pending.append((v, copy, str(k), depth + 1))
        elif isinstance(item, list | tuple):
            items: list[Any] = [None] * len(item)
            parent[key] = items
            pending.extend((v, items, i, depth + 1) for i, v in enumerate(item))
        else:
            parent[key], changed = _leaf(item)
            cut = cut or changed
    return root[0], cut


def _compact(value: Any, **options: Any) -> str:
    return json.dumps(value, separators=(",", ":"), **options)


def dead_letter_body(item: dict[str, Any]) -> str:
    """The message body: the item plus its deterministic id, within SQS's size."""
    safe, cut = json_safe(item)
    identity = {k: safe.get(k) for k in _IDENTITY}
    safe["id"] = hashlib.sha256(_compact(identity, sort_keys=True).encode()).hexdigest()[:32]
    if cut:
        safe["payloadTruncated"] = True
    body = _compact(safe)
    if len(body.encode()) <= MAX_BODY_BYTES:
        return body
    payload = _compact(safe.get("payload")).encode()
    safe["payloadSha256"] = hashlib.sha256(payload).hexdigest()
    safe["payloadBytes"] = len(payload)
    safe["payloadTruncated"] = True
    safe["payload"] = payload[: MAX_BODY_BYTES // 2].decode("utf-8", "ignore")
    return _compact(safe)


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
