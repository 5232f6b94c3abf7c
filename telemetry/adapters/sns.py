"""Alert transitions to the operators' SNS topic: one message per transition,
and digests (one message for a group's held transitions, `publish_digest`).

Message attributes drive subscription filter policies: `severity` (CRITICAL
when either side of the change is CRITICAL, so a CRITICAL-only subscriber gets
the raise and its resolution, and a flapping key's FLAPPING and STABLE),
`status`, `deviceId`, `rule` and `sensorType` when known. On a FIFO topic the
deduplication id, derived from alertId, status and time, drops a re-sent
duplicate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Final

from telemetry.adapters.aws import AWS_ERRORS, error_code_of, translate
from telemetry.core.alerts import NODATA, OFFLINE, Severity, Status, Transition
from telemetry.core.conditions import KINDS
from telemetry.core.messages import iso_utc
from telemetry.core.notify import DigestMessage, group_hash
from telemetry.errors import DependencyError, Refusal

MAX_BATCH: Final = 10
_MESSAGE_REFUSED: Final = frozenset(
    {"InvalidParameter", "InvalidParameterValue", "ValidationError", "ValidationException"}
)
"""Refusals of the message itself: sending it again cannot succeed."""
_MISCONFIGURED: Final = frozenset(
    {"AuthorizationError", "NotFound", "KMSAccessDenied", "KMSDisabled", "KMSNotFound"}
)
_SUBJECT_LIMIT: Final = 100
_VERBS: Final = {
    Status.RAISED: "raised",
    Status.ESCALATED: "escalated",
    Status.DEESCALATED: "de-escalated",
    Status.RESOLVED: "resolved",
}


def _window(seconds: float | None) -> str:
    """A no-data window as people write it: 90s, 5m, 1h30m, 2d."""
    total = round(seconds or 0)
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if total >= size or (unit == "s" and not parts):
            count, total = divmod(total, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)


_ACTED: Final = {
    Status.ACKNOWLEDGED: "acknowledged",
    Status.SNOOZED: "snoozed",
    Status.UNSNOOZED: "unsnoozed",
    Status.DISABLED: "disabled",
    Status.ENABLED: "enabled",
    Status.RESET: "reset",
}


_PER_WORDS: Final = {1000: "s", 60_000: "min", 3_600_000: "h", 86_400_000: "day"}


def _condition_subject(transition: Transition, where: str, rule: str) -> str:
    """A condition's change of level, by its sensor: `rising 6.2/min`, `stuck
    at 4.10 for 30m`, `jumped 27.0`, `out of range: 850.0`; back to normal."""
    sensor = transition.sensor_id
    value = transition.value if transition.value is not None else 0.0
    if transition.severity is Severity.OK:
        return f"{where} {sensor} {transition.direction} back to normal {rule}"
    if transition.direction == "rate":
        per = transition.per_ms
        unit = "" if per is None else "/" + _PER_WORDS.get(per, _window(per / 1000))
        moving = "rising" if value >= 0 else "falling"
        return f"{where} {sensor} {moving} {abs(value):.1f}{unit} {rule}"
    if transition.direction == "stuck":
        span = "" if transition.threshold is None else f" for {_window(transition.threshold)}"
        return f"{where} {sensor} stuck at {value:.2f}{span} {rule}"
    if transition.direction == "spike":
        return f"{where} {sensor} jumped {value:.1f} {rule}"
    return f"{where} {sensor} out of range: {value:.1f} {rule}"


def _offline_subject(transition: Transition, where: str, rule: str) -> str:
    """A device's offline alert: `[WARNING] pump-17 offline for 2m (rule)`."""
    window = "" if transition.threshold is None else f" for {_window(transition.threshold)}"
    if transition.status is Status.REMINDER:
        return f"{where} still offline{window} {rule}"
    if transition.status in _ACTED or transition.status not in _VERBS:
        by = f" by {transition.by}" if transition.by else ""
        done = _ACTED.get(transition.status, transition.status.lower())
        return f"{where} offline alert {done}{by} {rule}"
    if transition.severity is Severity.OK:
        return f"{where} back online {rule}"
    if transition.status is Status.RAISED:
        return f"{where} offline{window} {rule}"
    return f"{where} offline alert {_VERBS[transition.status]} {rule}"


def subject(transition: Transition) -> str:
    """A line a person can read in an e-mail client's inbox."""
    severity = transition.routing_severity.name
    nodata = transition.direction == NODATA
    what = transition.sensor_id if nodata else (transition.type or transition.sensor_id)
    where = f"[{severity}] {transition.device_id}"
    rule = f"({transition.rule})"
    value = "" if transition.value is None else f": {transition.value:g}"
    if transition.direction == OFFLINE:
        text = _offline_subject(transition, where, rule)
    elif transition.status in _ACTED:
        until = ""
        if transition.until_ms is not None and transition.status is Status.SNOOZED:
            until = f" until {iso_utc(transition.until_ms)[:16]}Z"
        by = f" by {transition.by}" if transition.by else ""
        text = f"{where} {what} {_ACTED[transition.status]}{until}{by} {rule}"
    elif transition.status is Status.LATCHED:
        text = f"{where} {what} back within its levels{value}, latched until reset {rule}"
    elif transition.status is Status.FLAPPING:
        count = f"{transition.changes} changes" if transition.changes else "changes"
        within = _window((transition.within_ms or 0) / 1000)
        text = f"{where} {what} flapping: {count} in {within} {rule}"
    elif transition.status is Status.STABLE:
        text = f"{where} {what} stable at {transition.severity.name} {rule}"
    elif transition.status is Status.REMINDER:
        still = f"silent for {_window(transition.threshold)}" if nodata else severity
        text = f"{where} {what} still {still}{'' if nodata else value} {rule}"
    elif nodata:
        state = (
            f"silent for {_window(transition.threshold)}"
            if transition.severity is not Severity.OK
            else "reporting again"
        )
        text = f"{where} {what} {state} {rule}"
    elif transition.direction in KINDS and transition.status in _VERBS:
        text = _condition_subject(transition, where, rule)
    elif transition.severity is Severity.OK:
        text = f"{where} {what} back to normal {rule}"
    else:
        verb = _VERBS.get(transition.status, transition.status.lower())
        text = f"{where} {what} {verb}{value} {rule}"
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
    if transition.direction in KINDS:
        attrs["direction"] = transition.direction  # rate, stuck, spike, range: filterable
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

    def publish(self, transitions: Sequence[Transition]) -> list[Refusal]:
        """Publish all; return the ones SNS refused, each saying whether a retry can
        help (the caller keeps those to retry and dead-letters the rest).

        Raises DependencyError when a whole call fails for a reason other than
        the message itself (throttling, an outage, a missing topic, no access).
        """
        refused: list[Refusal] = []
        for start in range(0, len(transitions), MAX_BATCH):
            chunk = transitions[start : start + MAX_BATCH]
            entries = [self._entry(i, t) for i, t in enumerate(chunk)]
            if len(entries) == 1:
                refused.extend(self._publish_one(entries[0], chunk[0]))
                continue
            self.calls += 1
            try:
                answer = self._client.publish_batch(
                    TopicArn=self._topic_arn, PublishBatchRequestEntries=entries
                )
            except AWS_ERRORS as exc:
                if error_code_of(exc) not in _MESSAGE_REFUSED:
                    raise translate("sns", "PublishBatch", exc) from exc
                # One bad entry refuses the whole batch: find it, one message at a time.
                for entry, transition in zip(entries, chunk, strict=True):
                    refused.extend(self._publish_one(entry, transition))
                continue
            by_id = {e["Id"]: t for e, t in zip(entries, chunk, strict=True)}
            refused.extend(
                self._refusal(by_id[failure["Id"]], failure)
                for failure in answer.get("Failed", [])
                if failure["Id"] in by_id
            )
        return refused

    def publish_digest(self, message: DigestMessage) -> list[Refusal]:
        """Publish one digest (its body, subject and attributes as
        `DigestMessage` says); its refusal if SNS refused the message itself.
        Raises DependencyError when the call fails for another reason."""
        entry: dict[str, Any] = {
            "Message": json.dumps(message.to_json(), separators=(",", ":")),
            "Subject": message.subject(),
            "MessageAttributes": {
                k: {"DataType": "String", "StringValue": v} for k, v in message.attributes().items()
            },
        }
        if self._fifo:
            entry["MessageGroupId"] = f"digest-{group_hash(message.group)}"
            entry["MessageDeduplicationId"] = hashlib.sha256(message.key.encode()).hexdigest()
        return self._publish_one({"Id": "d0", **entry}, message)

    def _publish_one(
        self, entry: dict[str, Any], transition: Transition | DigestMessage
    ) -> list[Refusal]:
        single = {k: v for k, v in entry.items() if k != "Id"}
        self.calls += 1
        try:
            self._client.publish(TopicArn=self._topic_arn, **single)
        except AWS_ERRORS as exc:
            code = error_code_of(exc)
            if code not in _MESSAGE_REFUSED:
                raise translate("sns", "Publish", exc) from exc
            message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
            return [Refusal(transition, str(code), message, retryable=False)]
        return []

    @staticmethod
    def _refusal(transition: Transition, failure: dict[str, Any]) -> Refusal:
        code = str(failure.get("Code", "Failed"))
        message = str(failure.get("Message", ""))
        if code in _MISCONFIGURED:
            raise DependencyError("sns", "PublishBatch", code, message, transient=False)
        permanent = bool(failure.get("SenderFault")) or code in _MESSAGE_REFUSED
        return Refusal(transition, code, message, retryable=not permanent)
