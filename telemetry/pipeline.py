"""The processing pipeline: messages in, every output delivered exactly once.

This is where validation, evaluation and the adapters meet. It holds no AWS
code: the adapters it is given satisfy the small protocols below, and tests
hand it in-memory fakes or moto-backed adapters alike.

Per invocation:
1. validate every message; rejected messages and readings go to the
   dead-letter queue with their reasons;
2. per device, the outbox pattern: read the state (once per batch),
   evaluate, and commit the new state together with the transitions still to
   deliver, conditionally on the version read (of two concurrent invocations
   only the winner delivers; the loser re-reads and re-evaluates);
3. write every valid reading and the alert history of every delivery to
   the time-series store, in as few calls as it allows for the whole
   invocation (Timestream: 100 records a call; InfluxDB: 5,000 lines); records
   the store rejects for good go to the dead-letter queue;
4. per device, deliver (SNS, the shadow mirror) and clear the delivered
   entries. An outbox entry left by a failed invocation is delivered by the
   next one for that device: by its retry (same event) at once, by any other
   once its lease has run out. A retry also rewrites the readings, which
   Timestream keeps once.

Permanent problems never fail the invocation; everything else raises after
every device has been attempted, so that Lambda retries and the retry ends
like one clean run.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from telemetry.core.alerts import (
    AlertState,
    StateKey,
    Transition,
    active_alerts,
    evaluate,
    pruned,
)
from telemetry.core.messages import (
    MessageRejectedError,
    Reading,
    Rejection,
    iso_utc,
    parse_message,
)
from telemetry.core.rules import RuleSet
from telemetry.core.state import DeviceRecord, OutboxEntry
from telemetry.errors import DependencyError, StateConflictError

OUTBOX_LEASE_MS: Final = 5 * 60 * 1000
"""How long an outbox entry belongs to the invocation that wrote it. Longer
than the function's timeout, so that a running invocation is never doubled."""

MAX_CONFLICT_RETRIES: Final = 8
RECORDS_PER_CALL: Final = 100
"""Records built and handed over per write call, unless the writer says otherwise
(`RecordWriter.records_per_call`): Timestream's WriteRecords limit."""


class StateStore(Protocol):
    def load(self, device_id: str) -> DeviceRecord: ...

    def load_many(self, device_ids: Iterable[str]) -> dict[str, DeviceRecord]: ...

    def save(
        self,
        record: DeviceRecord,
        *,
        state: Mapping[StateKey, AlertState],
        outbox: Sequence[OutboxEntry],
        shadow_stale: bool,
    ) -> DeviceRecord: ...


class RecordWriter(Protocol):
    """Stores time-series records; returns those refused for good (each with
    `record`, `reason`, `source`, and the `store` that refused it).

    A writer may say how many records it takes per call (`records_per_call`:
    Timestream 100, InfluxDB 5,000); RECORDS_PER_CALL otherwise."""

    def write(self, records: Sequence[tuple[Any, object]]) -> Sequence[Any]: ...


class Publisher(Protocol):
    def publish(self, transitions: Sequence[Transition]) -> list[Transition]: ...


class Mirror(Protocol):
    def update(self, thing_name: str, alerts: Mapping[str, Any]) -> Any: ...


class Quarantine(Protocol):
    def send(self, items: Sequence[dict[str, Any]]) -> None: ...


class RecordFactory(Protocol):
    """Turns readings and transitions into time-series records (Timestream
    record dicts, InfluxDB line-protocol points)."""

    def reading(self, reading: Reading) -> Any: ...

    def alert(self, transition: Transition) -> Any: ...


@dataclass(slots=True)
class DeviceOutcome:
    device_id: str
    transitions: list[Transition] = field(default_factory=list)
    late: int = 0
    shadow: str | None = None


@dataclass(frozen=True, slots=True)
class _Delivery:
    """A committed device record and the outbox entries it still has to deliver."""

    record: DeviceRecord
    before: Mapping[StateKey, AlertState]
    entries: list[OutboxEntry]
    done: DeviceOutcome
    redelivery: bool = False


@dataclass(slots=True)
class Outcome:
    """What one invocation did, for logs, metrics, the demo and tests."""

    messages: int = 0
    readings_stored: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)
    records_rejected: int = 0
    not_evaluated: list[tuple[Reading, str]] = field(default_factory=list)
    devices: list[DeviceOutcome] = field(default_factory=list)
    failures: list[tuple[str, Exception]] = field(default_factory=list)

    @property
    def transitions(self) -> list[Transition]:
        return [t for d in self.devices for t in d.transitions]

    @property
    def late(self) -> int:
        """Readings too old to change their alert state (stored all the same)."""
        return sum(d.late for d in self.devices)

    def raise_failure(self) -> None:
        """Raise the first device failure, if any."""
        if self.failures:
            raise self.failures[0][1]


def event_fingerprint(messages: Sequence[Any]) -> str:
    """The same for a retry or duplicate delivery of an event: its owner tag.
    (Stream batches pass their record ids instead: cheaper, and as stable.)"""
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def rejection_item(rejection: Rejection, source: str = "validation") -> dict[str, Any]:
    return {"source": source, **rejection.as_dict()}


def shadow_patch(
    before: Mapping[StateKey, AlertState], after: Mapping[StateKey, AlertState], *, full: bool
) -> dict[str, Any]:
    """The `alerts` entries to send: changed sensors (or all known, when `full`)."""
    old, new = active_alerts(before), active_alerts(after)
    sensors = {s for s, _ in after} | set(old) if full else set(old) | set(new)
    patch: dict[str, Any] = {}
    for sensor in sorted(sensors):
        entry = _shadow_entry(new.get(sensor))
        if full or entry != _shadow_entry(old.get(sensor)):
            patch[sensor] = entry
    return patch


def _shadow_entry(active: tuple[str, AlertState] | None) -> dict[str, Any] | None:
    if active is None:
        return None
    rule, alert = active
    return {
        "severity": alert.severity.name,
        "rule": rule,
        "alertId": alert.alert_id,
        "since": iso_utc(alert.since_ms or 0),
        "value": alert.value,
    }


class Pipeline:
    """Processes batches of device messages against the rules in force."""

    def __init__(
        self,
        *,
        rules: RuleSet,
        store: StateStore,
        timeseries: RecordWriter,
        records: RecordFactory,
        publisher: Publisher,
        mirror: Mirror,
        quarantine: Quarantine,
    ) -> None:
        self.rules = rules
        self._store = store
        self._timeseries = timeseries
        self._records = records
        self._publisher = publisher
        self._mirror = mirror
        self._quarantine = quarantine

    def process(
        self,
        messages: Sequence[Any],
        now_ms: int,
        rejected: Sequence[Rejection] = (),
        owner: str | None = None,
    ) -> Outcome:
        """Handle one invocation's messages. A device whose handling failed is
        listed in `Outcome.failures` after every other device was handled; the
        caller raises it (`Outcome.raise_failure`) so that Lambda retries."""
        outcome = Outcome(messages=len(messages) + len(rejected))
        outcome.rejections.extend(rejection_item(r) for r in rejected)
        by_device: dict[str, list[Reading]] = defaultdict(list)
        for message in messages:
            try:
                parsed = parse_message(message, now_ms)
            except MessageRejectedError as exc:
                outcome.rejections.append(rejection_item(exc.rejection))
                continue
            outcome.rejections.extend(rejection_item(r) for r in parsed.rejections)
            by_device[parsed.device_id].extend(parsed.readings)
        if outcome.rejections:
            self._quarantine.send(outcome.rejections)
        owner = owner or event_fingerprint(messages)
        records = self._store.load_many([d for d, r in by_device.items() if r])
        deliveries: list[_Delivery] = []
        for device_id, readings in by_device.items():
            if not readings:
                continue
            try:
                done, delivery = self._commit(records[device_id], readings, owner, now_ms, outcome)
            except (DependencyError, StateConflictError) as exc:
                outcome.failures.append((device_id, exc))
                continue
            outcome.devices.append(done)
            if delivery is not None:
                deliveries.append(delivery)
        # Every reading and every alert to deliver, in as few calls as the API allows.
        # Before any publish: a retry rewrites both, and Timestream keeps one copy.
        self._store_records(by_device, deliveries, outcome)
        for delivery in deliveries:
            try:
                self._deliver(delivery)
            except (DependencyError, StateConflictError) as exc:
                outcome.failures.append((delivery.record.device_id, exc))
        return outcome

    def _store_records(
        self, by_device: Mapping[str, list[Reading]], deliveries: list[_Delivery], outcome: Outcome
    ) -> None:
        sources: list[Reading | Transition] = [r for rs in by_device.values() for r in rs]
        readings = len(sources)
        sources += [e.transition for d in deliveries for e in d.entries]
        rejected: list[Any] = []
        # Records are built a call's worth at a time: a 10,000-message batch never
        # holds its 40,000 record dicts at once.
        per_call = int(getattr(self._timeseries, "records_per_call", RECORDS_PER_CALL))
        for start in range(0, len(sources), per_call):
            chunk = sources[start : start + per_call]
            rejected.extend(self._timeseries.write([(self._record(s), s) for s in chunk]))
        rejected_readings = sum(1 for r in rejected if isinstance(r.source, Reading))
        outcome.readings_stored = readings - rejected_readings
        outcome.records_rejected += len(rejected)
        if rejected:
            items = [_rejected_record_item(r) for r in rejected]
            outcome.rejections.extend(items)
            self._quarantine.send(items)

    def _record(self, source: Reading | Transition) -> Any:
        if isinstance(source, Reading):
            return self._records.reading(source)
        return self._records.alert(source)

    def _commit(
        self,
        record: DeviceRecord,
        readings: list[Reading],
        owner: str,
        now_ms: int,
        outcome: Outcome,
    ) -> tuple[DeviceOutcome, _Delivery | None]:
        """Evaluate and commit the new state with its outbox (re-reading on a
        lost race); return what is then to be delivered."""
        done = DeviceOutcome(record.device_id)
        # An entry is ours to deliver when this event is a retry or duplicate of the
        # one that committed it (same owner, or it carries the reading that caused it:
        # a Kinesis retry starts at the failed record, so its owner differs), or when
        # its lease has run out.
        carried = {(r.sensor_id, r.time_ms) for r in readings}
        for attempt in range(MAX_CONFLICT_RETRIES):
            if attempt:
                record = self._store.load(record.device_id)
            due = [
                e
                for e in record.outbox
                if e.owner == owner
                or (e.transition.sensor_id, e.transition.time_ms) in carried
                or now_ms - e.enqueued_ms >= OUTBOX_LEASE_MS
            ]
            evaluation = evaluate(readings, record.state, self.rules)
            if attempt == 0:
                outcome.not_evaluated.extend(evaluation.not_evaluated)
            done.late = evaluation.late
            new_entries = [OutboxEntry(t, owner, now_ms) for t in evaluation.transitions]
            if not evaluation.changed and not due and not record.shadow_stale:
                return done, None
            before = record.state
            if evaluation.changed:
                try:
                    record = self._store.save(
                        record,
                        state=pruned(evaluation.state),
                        outbox=[*record.outbox, *new_entries],
                        shadow_stale=record.shadow_stale,
                    )
                except StateConflictError:
                    continue
            done.transitions = evaluation.transitions
            if new_entries or due or record.shadow_stale:
                entries = [*due, *new_entries]
                return done, _Delivery(record, before, entries, done, redelivery=bool(due))
            return done, None
        raise StateConflictError(
            f"{record.device_id}: state kept changing under {MAX_CONFLICT_RETRIES} attempts"
        )

    def _deliver(self, delivery: _Delivery) -> None:
        """Publish, mirror, then clear what was delivered from the outbox."""
        record, done = delivery.record, delivery.done
        transitions = [e.transition for e in delivery.entries]
        failed = self._publisher.publish(transitions) if transitions else []
        failed_keys = {t.key for t in failed}
        # Entries redelivered for a failed invocation never reached the mirror
        # either: rewrite it whole, as for a stale one.
        repair = record.shadow_stale or delivery.redelivery
        patch = shadow_patch(delivery.before, record.state, full=repair)
        stale = False
        mirror_error: DependencyError | None = None
        if patch:
            try:
                done.shadow = str(self._mirror.update(record.device_id, patch))
            except DependencyError as exc:
                done.shadow, mirror_error = "failed", exc
            stale = done.shadow == "failed"
        delivered = {e.key for e in delivery.entries} - failed_keys
        if delivered or stale != record.shadow_stale:
            self._clear(record, delivered, stale)
        if failed:
            raise DependencyError(
                "sns",
                "PublishBatch",
                "EntriesFailed",
                f"{len(failed)} of {len(transitions)} alerts not accepted; kept to retry",
                transient=True,
            )
        if mirror_error is not None:
            raise mirror_error

    def _clear(self, record: DeviceRecord, delivered: set[str], stale: bool) -> None:
        """Drop delivered entries from the outbox. If another invocation wrote
        meanwhile, its shadow update may have raced ours: mark the mirror stale."""
        raced = False
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                self._store.save(
                    record,
                    state=record.state,
                    outbox=[e for e in record.outbox if e.key not in delivered],
                    shadow_stale=stale or raced,
                )
            except StateConflictError:
                raced = True
                record = self._store.load(record.device_id)
                continue
            return
        raise StateConflictError(f"{record.device_id}: could not clear the outbox")


def _rejected_record_item(rejected: Any) -> dict[str, Any]:
    source = rejected.source
    payload: Any = rejected.record
    device_id = None
    if isinstance(source, Reading | Transition):
        device_id = source.device_id
    store = str(getattr(rejected, "store", "timestream"))
    return {
        "source": store,
        "reason": f"{store}_rejected: {rejected.reason}",
        "code": f"{store}_rejected",
        "field": "record",
        "detail": rejected.reason,
        "deviceId": device_id,
        "payload": payload,
    }
