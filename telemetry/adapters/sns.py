"""Alert transitions to the operators' SNS topic: one message per transition.

Message attributes drive subscription filter policies: `severity` (CRITICAL
when either side of the change is CRITICAL, so a CRITICAL-only subscriber gets
the raise and its resolution), `status`, `deviceId`, `rule` and `sensorType`
when known. On a FIFO topic the deduplication id, derived from alertId, status
and time, drops a re-sent duplicate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, translate
from telemetry.core.alerts import Severity, Status, Transition

MAX_BATCH: Final = 10
_SUBJECT_LIMIT: Final = 100
_VERBS: Final = {
    Status.RAISED: "raised",
    Status.ESCALATED: "escalated",
    Status.DEESCALATED: "de-escalated",
    Status.RESOLVED: "resolved",
}


def subject(transition: Transition) -> str:
    """A line a person can read in an e-mail client's inbox."""
    severity = transition.routing_severity.name
    what = transition.type or transition.sensor_id
    text = (
        f"[{severity}] {transition.device_id} {what} {_VERBS[transition.status]}: "
        f"{transition.value:g} ({transition.rule})"
    )
    if transition.severity is Severity.OK:
        text = f"[{severity}] {transition.device_id} {what} back to normal ({transition.rule})"
    printable = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return printable[:_SUBJECT_LIMIT]


def attributes(transition: Transition) -> dict[str, dict[str, str]]:
    attrs = {
        "severity": transition.routing_severity.name,
        "status": transition.status.value,
        "deviceId": transition.device_id,
        "rule": transition.rule,
    }
    if transition.type:
        attrs["sensorType"] = transition.type
    return {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}


class AlertPublisher:
    """Publishes transitions to `topic_arn`, ten per PublishBatch call."""

    def __init__(self, topic_arn: str, client: Any) -> None:
        self._topic_arn = topic_arn
        self._client = client
        self._fifo = topic_arn.endswith(".fifo")
        self.calls = 0

    def _entry(self, index: int, transition: Transition) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Id": f"t{index}",
            "Message": json.dumps(transition.to_json(), separators=(",", ":")),
            "Subject": subject(transition),
            "MessageAttributes": attributes(transition),
        }
        if self._fifo:
            entry["MessageGroupId"] = transition.device_id
            entry["MessageDeduplicationId"] = hashlib.sha256(transition.key.encode()).hexdigest()
        return entry

    def publish(self, transitions: Sequence[Transition]) -> list[Transition]:
        """Publish all; return those SNS refused (the caller keeps them to retry).

        Raises DependencyError when a whole call fails.
        """
        failed: list[Transition] = []
        for start in range(0, len(transitions), MAX_BATCH):
            chunk = transitions[start : start + MAX_BATCH]
            entries = [self._entry(i, t) for i, t in enumerate(chunk)]
            self.calls += 1
            try:
                if len(entries) == 1:
                    single = {k: v for k, v in entries[0].items() if k != "Id"}
                    self._client.publish(TopicArn=self._topic_arn, **single)
                    continue
                answer = self._client.publish_batch(
                    TopicArn=self._topic_arn, PublishBatchRequestEntries=entries
                )
            except AWS_ERRORS as exc:
                raise translate("sns", "Publish", exc) from exc
            by_id = {e["Id"]: t for e, t in zip(entries, chunk, strict=True)}
            failed.extend(by_id[f["Id"]] for f in answer.get("Failed", []) if f["Id"] in by_id)
        return failed
