"""The processing pipeline: messages in, every output delivered exactly once.

This is where validation, evaluation and the adapters meet. It holds no AWS
code: the adapters it is given satisfy small protocols (here and in
`telemetry.delivery`), and tests
hand it in-memory fakes or moto-backed adapters alike.

Per invocation:
1. validate every message; rejected messages and readings go to the
   dead-letter queue with their reasons;
2. per device, the outbox pattern: read the state (once per batch),
   evaluate, and commit the new state together with the transitions still to
   deliver, conditionally on the version read (of two concurrent invocations
   only the winner commits; the loser re-reads and re-evaluates). The commit
   claims its outbox entries for this invocation until a lease ends (the
   invocation's own deadline and a margin);
3. hand what was committed to `telemetry.delivery.Delivery`, which stores
   the readings and the alert history, publishes, mirrors in the shadow and
   clears the outbox (see there). An entry claimed by another invocation that
   is still running is left to it: of a duplicate delivery overlapping the
   first run, exactly one publishes.

The pipeline keeps validation, the commit, and the orchestration of the
scheduled sweep and of operators' actions, all through the same commit and
delivery.

Permanent problems never fail the invocation; everything else raises after
every device has been attempted, so that Lambda retries and the retry ends
like one clean run.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from telemetry.core.alerts import (
    Evaluation,
    Transition,
    evaluate,
)
from telemetry.core.messages import (
    MessageRejectedError,
    Reading,
    Rejection,
    parse_message,
)
from telemetry.core.operators import Action, apply_action, finalize, key_view, timers
from telemetry.core.rules import RuleSet
from telemetry.core.silence import sweep
from telemetry.core.state import DeviceRecord, OutboxEntry
from telemetry.delivery import (
    LEASE_MARGIN_MS,
    MAX_CONFLICT_RETRIES,
    OUTBOX_LEASE_MS,
    RECORDS_PER_CALL,
    Delivery,
    DeviceOutcome,
    DigestsSent,
    GroupStore,
    Invocation,
    Mirror,
    MirrorOutcome,
    Publisher,
    Quarantine,
    RecordFactory,
    RecordWriter,
)
from telemetry.delivery import DeviceDelivery as _Delivery
from telemetry.errors import DependencyError, StateConflictError

__all__ = [
    "LEASE_MARGIN_MS",
    "OUTBOX_LEASE_MS",
    "RECORDS_PER_CALL",
    "SWEEP_LIMIT",
    "DeviceOutcome",
    "DigestsSent",
    "GroupStore",
    "Invocation",
    "Mirror",
    "MirrorOutcome",
    "Outcome",
    "Pipeline",
    "Publisher",
    "Quarantine",
    "RecordFactory",
    "RecordWriter",
    "StateStore",
    "event_fingerprint",
    "rejection_item",
]

SWEEP_LIMIT: Final = 1_500
"""Devices one sweep handles at most; the rest stay due for the next one. From
the sweep benchmark (make bench, nodata): raising a silent device takes about
four AWS calls, so 1,500 take under 60% of the 120 s timeout at 10 ms a call."""
DIGEST_LIMIT: Final = 500
"""Notification groups one sweep sends digests for at most (three AWS calls each)."""


class StateStore(Protocol):
    def load(self, device_id: str) -> DeviceRecord: ...

    def load_many(self, device_ids: Iterable[str]) -> dict[str, DeviceRecord]: ...

    def save(self, record: DeviceRecord) -> DeviceRecord:
        """Write `record` conditionally on `record.version` (the version read);
        StateConflictError if another invocation wrote meanwhile. Returns what
        was written, at its new version."""
        ...

    def due_devices(self, now_ms: int, limit: int) -> list[str]:
        """Devices whose `DeviceRecord.due_ms` is at or before `now_ms`, the most
        overdue first, at most `limit`."""
        ...


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
    swept: int = 0
    """Devices a scheduled sweep looked at (0 for messages)."""

    @property
    def transitions(self) -> list[Transition]:
        return [t for d in self.devices for t in d.transitions]

    @property
    def late(self) -> int:
        """Readings too old to change their alert state (stored all the same)."""
        return sum(d.late for d in self.devices)

    @property
    def held(self) -> int:
        """Transitions over their group's budget, left to a digest."""
        return sum(d.held for d in self.devices)

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


Decide = Callable[[DeviceRecord], Evaluation]
"""What a device's new state is, given its record as read: evaluating readings,
or a sweep, or an operator's action. Called again after a lost race."""


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
        groups: GroupStore | None = None,
    ) -> None:
        """`groups` keeps the notification budget (`rules.notifications`); a
        pipeline built without one publishes every transition."""
        self.rules = rules
        self._store = store
        self._quarantine = quarantine
        # The adapters delivery uses, reachable here too (local tools read their counters).
        self._timeseries = timeseries
        self._records = records
        self._publisher = publisher
        self._mirror = mirror
        self.delivery = Delivery(
            store=store,
            timeseries=timeseries,
            records=records,
            publisher=publisher,
            mirror=mirror,
            quarantine=quarantine,
            groups=groups,
            notifications=rules.notifications,
        )

    def process(
        self,
        messages: Sequence[Any],
        now_ms: int,
        rejected: Sequence[Rejection] = (),
        owner: str | None = None,
        *,
        deadline_ms: int | None = None,
        invocation_id: str | None = None,
    ) -> Outcome:
        """Handle one invocation's messages. A device whose handling failed is
        listed in `Outcome.failures` after every other device was handled; the
        caller raises it (`Outcome.raise_failure`) so that Lambda retries.
        `deadline_ms` is when the invocation will be stopped, if known: its
        claims on outbox entries last that long (and a margin)."""
        outcome = Outcome(messages=len(messages) + len(rejected))
        outcome.rejections.extend(rejection_item(r) for r in rejected)
        by_device: dict[str, list[Reading]] = defaultdict(list)
        arrival: dict[str, int] = {}
        for message in messages:
            try:
                parsed = parse_message(message, now_ms)
            except MessageRejectedError as exc:
                outcome.rejections.append(rejection_item(exc.rejection))
                continue
            outcome.rejections.extend(rejection_item(r) for r in parsed.rejections)
            by_device[parsed.device_id].extend(parsed.readings)
            received = max(now_ms, parsed.received_ms or 0)
            arrival[parsed.device_id] = max(arrival.get(parsed.device_id, received), received)
        if outcome.rejections:
            self._quarantine.send(outcome.rejections)
        invocation = Invocation.start(
            owner or event_fingerprint(messages), now_ms, deadline_ms, invocation_id
        )
        records = self._store.load_many([d for d, r in by_device.items() if r])
        deliveries: list[_Delivery] = []
        for device_id, readings in by_device.items():
            if not readings:
                continue

            def decide(
                record: DeviceRecord, readings: list[Reading] = readings, device: str = device_id
            ) -> Evaluation:
                return evaluate(readings, record.state, self.rules, arrival[device])

            self._commit_device(records[device_id], decide, invocation, outcome, deliveries)
        self._deliver_all(by_device, deliveries, outcome, invocation)
        return outcome

    def sweep(
        self,
        now_ms: int,
        *,
        limit: int = SWEEP_LIMIT,
        deadline_ms: int | None = None,
        invocation_id: str | None = None,
    ) -> Outcome:
        """The scheduled sweep as of `now_ms` (the schedule event's time, so that a
        late or retried sweep decides the same): every device with something due
        has its silent sensors raised and its stranded outbox entries delivered,
        through the same conditional commit and outbox as readings."""
        outcome = Outcome()
        device_ids = self._store.due_devices(now_ms, limit)
        outcome.swept = len(device_ids)
        records = self._store.load_many(device_ids)
        invocation = Invocation.start(f"sweep:{now_ms}", now_ms, deadline_ms, invocation_id)
        deliveries: list[_Delivery] = []
        for device_id in device_ids:

            def decide(record: DeviceRecord) -> Evaluation:
                silences = sweep(record.device_id, record.state, self.rules, now_ms)
                timed = timers(record.device_id, silences.state, self.rules, now_ms)
                return Evaluation(
                    timed.state,
                    [*silences.transitions, *timed.transitions],
                    silences.changed or timed.changed,
                )

            self._commit_device(records[device_id], decide, invocation, outcome, deliveries)
        self._deliver_all({}, deliveries, outcome, invocation)
        return outcome

    def send_digests(
        self,
        now_ms: int,
        *,
        limit: int = DIGEST_LIMIT,
        deadline_ms: int | None = None,
        invocation_id: str | None = None,
    ) -> DigestsSent:
        """The scheduled sweep's digests as of `now_ms`: every notification group
        with a digest due sends it, through its own outbox (see
        `Delivery.send_digests`)."""
        invocation = Invocation.start(f"digests:{now_ms}", now_ms, deadline_ms, invocation_id)
        return self.delivery.send_digests(invocation, limit)

    def quarantine(self, items: Sequence[dict[str, Any]]) -> None:
        """Send items to the dead-letter queue (an entry point's own rejections)."""
        self._quarantine.send(items)

    def act(
        self,
        action: Action,
        now_ms: int,
        *,
        deadline_ms: int | None = None,
        invocation_id: str | None = None,
    ) -> tuple[Outcome, dict[str, Any]]:
        """An operator's action, through the same conditional commit and outbox
        as readings (an action racing a reading, or another operator, is decided
        on the state it finds after a lost race). Returns the outcome and the
        answer: {"applied": true, "state": ...} or {"applied": false, "reason": ...}."""
        outcome = Outcome()
        refusals: list[str | None] = []

        def decide(record: DeviceRecord) -> Evaluation:
            result = apply_action(record.device_id, record.state, action, self.rules, now_ms)
            refusals.append(result.refusal)
            return result.evaluation

        owner = f"action:{action.kind.value}:{action.device_id}:{action.sensor_id}:{now_ms}"
        invocation = Invocation.start(owner, now_ms, deadline_ms, invocation_id)
        record = self._store.load(action.device_id)
        deliveries: list[_Delivery] = []
        self._commit_device(record, decide, invocation, outcome, deliveries)
        self._deliver_all({}, deliveries, outcome, invocation)
        if outcome.failures:
            return outcome, {}
        if refusals and refusals[-1] is not None:
            return outcome, {"applied": False, "reason": refusals[-1]}
        final = deliveries[0].record if deliveries else self._store.load(action.device_id)
        view = key_view(action.device_id, action.key, final.state.get(action.key))
        return outcome, {"applied": True, "state": view}

    def _commit_device(
        self,
        record: DeviceRecord,
        decide: Decide,
        invocation: Invocation,
        outcome: Outcome,
        deliveries: list[_Delivery],
    ) -> None:
        try:
            done, delivery = self._commit(record, decide, invocation, outcome)
        except (DependencyError, StateConflictError) as exc:
            outcome.failures.append((record.device_id, exc))
            return
        outcome.devices.append(done)
        if delivery is not None:
            deliveries.append(delivery)

    def _deliver_all(
        self,
        by_device: Mapping[str, list[Reading]],
        deliveries: list[_Delivery],
        outcome: Outcome,
        invocation: Invocation,
    ) -> None:
        """Hand the committed deliveries to `Delivery` and tally what it did."""
        delivered = self.delivery.deliver_all(by_device, deliveries, invocation.now_ms)
        outcome.readings_stored += delivered.readings_stored
        outcome.records_rejected += delivered.records_rejected
        outcome.rejections.extend(delivered.rejections)
        outcome.failures.extend(delivered.failures)

    def _commit(
        self, record: DeviceRecord, decide: Decide, invocation: Invocation, outcome: Outcome
    ) -> tuple[DeviceOutcome, _Delivery | None]:
        """Decide and commit the new state with its outbox, claiming the entries
        this invocation will deliver (re-reading on a lost race); return what is
        then to be delivered."""
        done = DeviceOutcome(record.device_id)
        for attempt in range(MAX_CONFLICT_RETRIES):
            if attempt:
                record = self._store.load(record.device_id)
            evaluation = finalize(decide(record), self.rules, invocation.now_ms)
            if attempt == 0:
                outcome.not_evaluated.extend(evaluation.not_evaluated)
            done.late = evaluation.late
            # Entries claimed by another invocation that is still running are its own.
            due = {e.key for e in record.outbox if e.free_for(invocation.id, invocation.now_ms)}
            new_entries = [
                OutboxEntry(
                    t, invocation.owner, invocation.now_ms, invocation.id, invocation.lease_ms
                )
                for t in evaluation.transitions
            ]
            if not evaluation.changed and not due and not record.shadow_stale:
                return done, None
            before = record.state
            if evaluation.changed or due:
                outbox = [
                    e.claimed(invocation.id, invocation.lease_ms) if e.key in due else e
                    for e in record.outbox
                ]
                try:
                    record = self._store.save(
                        replace(
                            record,
                            state=evaluation.state if evaluation.changed else record.state,
                            outbox=[*outbox, *new_entries],
                        )
                    )
                except StateConflictError:
                    continue
            done.transitions = evaluation.transitions
            entries = [e for e in record.outbox if e.key in due or e in new_entries]
            if entries or record.shadow_stale:
                return done, _Delivery(record, before, entries, done, redelivery=bool(due))
            return done, None
        raise StateConflictError(
            f"{record.device_id}: state kept changing under {MAX_CONFLICT_RETRIES} attempts"
        )
