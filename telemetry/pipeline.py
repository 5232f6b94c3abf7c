"""The processing pipeline: messages in, every output delivered exactly once.

This is where validation, evaluation and the adapters meet. It holds no AWS
code: the adapters it is given satisfy small protocols (here and in
`telemetry.delivery`), and tests hand it in-memory fakes or moto-backed
adapters alike.

Per invocation:
1. validate every message; rejected messages and readings go to the
   dead-letter queue with their reasons;
2. per device, the outbox pattern: read the state (once per batch),
   evaluate, and commit the new state together with the transitions still to
   deliver, conditionally on the version read (of two concurrent invocations
   only the winner commits; the loser re-reads and re-evaluates). The commit
   claims its outbox entries for this invocation until a lease ends (the
   invocation's own deadline and a margin). Claims are named by the
   invocation's id, Lambda's request id, which a retry shares with its first
   attempt (never a duplicate delivery): a retry delivers at once what its
   earlier attempt claimed, even when that attempt could not release its
   claims (a commit whose answer was lost);
3. hand what was committed to `telemetry.delivery.Delivery`, which stores
   the readings and the alert history, applies the notification budget,
   publishes, mirrors in the shadow and clears the outbox (see there). An
   entry claimed by another invocation that is still running is left to it:
   of a duplicate delivery overlapping the first run, exactly one publishes.

The pipeline keeps validation, the commit, and the orchestration of the
scheduled sweep (in batches, shard by shard, while its invocation has time),
of IoT Core's lifecycle events and of operators' actions, all through the same
commit and delivery.

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
from telemetry.core.connectivity import (
    Decision,
    GatewayView,
    Presence,
    combined,
    down_since,
    follows,
    gateway_view,
    on_heard,
    on_lifecycle,
    parse_lifecycle_event,
    raises_own_outage,
    settled,
    sweep_device,
    with_members,
)
from telemetry.core.messages import (
    MessageRejectedError,
    Reading,
    Rejection,
    parse_message,
)
from telemetry.core.operators import Action, apply_action, finalize, key_view, timers
from telemetry.core.rules import RuleSet
from telemetry.core.state import DeviceRecord, OutboxEntry
from telemetry.delivery import (
    LEASE_MARGIN_MS,
    MAX_CONFLICT_RETRIES,
    OUTBOX_LEASE_MS,
    RECORDS_PER_CALL,
    RELEASE_RESERVE_MS,
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
    TimeLeft,
)
from telemetry.delivery import DeviceDelivery as _Delivery
from telemetry.errors import DependencyError, StateConflictError

__all__ = [
    "LEASE_MARGIN_MS",
    "OUTBOX_LEASE_MS",
    "RECORDS_PER_CALL",
    "RELEASE_RESERVE_MS",
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
    "TimeLeft",
    "event_fingerprint",
    "rejection_item",
]

SWEEP_LIMIT: Final = 5_000
"""Devices one sweep invocation handles at most; the rest stay due for the next
one. The deadline bounds it first (SWEEP_RESERVE_MS): raising a silent device
takes about four AWS calls (make bench, nodata), so at 10 ms a call about 2,500
fit in one 120 s invocation; with the schedule fanned out over the 16 shards of
the due index, a sweep reaches 16 times that."""
SWEEP_BATCH: Final = 200
"""Devices read, decided and delivered together by a sweep: one index query per
shard, two BatchGetItem calls, and the time-series writes of the batch."""
SWEEP_RESERVE_MS: Final = 20_000
"""What a sweep keeps of its invocation's time when it takes the next batch:
one batch's work and the release of its claims if the store fails."""
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

    def due_devices(
        self, now_ms: int, limit: int, shards: Sequence[str] | None = None
    ) -> list[str]:
        """Devices whose `DeviceRecord.due_ms` is at or before `now_ms`, the most
        overdue first, at most `limit`, from `shards` of the due index (all: None)."""
        ...

    def count_members(self, gateway_id: str, before_ms: int) -> int:
        """How many of the gateway's members' records were last heard before
        `before_ms` (or are disconnected)."""
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


Decide = Callable[[DeviceRecord], Evaluation | Decision]
"""What a device's new state is, given its record as read: evaluating readings,
or a sweep, or an operator's action, or a lifecycle event (a Decision when the
record's presence changes too). Called again after a lost race."""


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

    def use_rules(self, rules: RuleSet) -> None:
        """Put `rules` in force from the next decision on (a new configuration
        version): a changed rule's open episodes follow it as after a deploy."""
        if rules is self.rules:
            return
        self.rules = rules
        if self.delivery.notifications is not None:
            self.delivery.notifications = rules.notifications

    @property
    def _timeseries(self) -> RecordWriter:
        """The time-series writer delivery uses (local tools read its counters)."""
        return self.delivery.timeseries

    def process(
        self,
        messages: Sequence[Any],
        now_ms: int,
        rejected: Sequence[Rejection] = (),
        owner: str | None = None,
        *,
        deadline_ms: int | None = None,
        invocation_id: str | None = None,
        time_left_ms: TimeLeft | None = None,
    ) -> Outcome:
        """Handle one invocation's messages. A device whose handling failed is
        listed in `Outcome.failures` after every other device was handled; the
        caller raises it (`Outcome.raise_failure`) so that Lambda retries.
        `deadline_ms` is when the invocation will be stopped, if known: its
        claims on outbox entries last that long (and a margin). `invocation_id`
        names its claims: the Lambda request id, so that a retry of the same
        request delivers at once what an earlier attempt claimed. `time_left_ms`
        bounds the time-series store's retries (less RELEASE_RESERVE_MS)."""
        outcome = Outcome(messages=len(messages) + len(rejected))
        outcome.rejections.extend(rejection_item(r) for r in rejected)
        by_device: dict[str, list[Reading]] = defaultdict(list)
        arrival: dict[str, int] = {}
        heard: dict[str, int] = {}
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
            # When IoT Core received it (if the rule said): what ends a disconnection.
            at = parsed.received_ms if parsed.received_ms is not None else now_ms
            heard[parsed.device_id] = max(heard.get(parsed.device_id, at), at)
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
            ) -> Decision:
                evaluation = evaluate(readings, record.state, self.rules, arrival[device])
                return on_heard(device, evaluation, record.presence, self.rules, heard[device])

            self._commit_device(records[device_id], decide, invocation, outcome, deliveries)
        self._deliver_all(by_device, deliveries, outcome, invocation, time_left_ms)
        return outcome

    def sweep(
        self,
        now_ms: int,
        *,
        shards: Sequence[str] | None = None,
        limit: int = SWEEP_LIMIT,
        deadline_ms: int | None = None,
        invocation_id: str | None = None,
        time_left_ms: TimeLeft | None = None,
    ) -> Outcome:
        """The scheduled sweep as of `now_ms` (the schedule event's time, so that a
        late or retried sweep decides the same): every device with something due
        (in `shards` of the due index, or all) has its silent sensors raised, its
        stranded outbox entries delivered and its stale shadow mirror rewritten,
        through the same conditional commit and outbox as readings.

        Devices are taken SWEEP_BATCH at a time, the most overdue first, while
        the invocation has more than SWEEP_RESERVE_MS left (`time_left_ms`) and
        fewer than `limit` were swept: the rest stay due for the next sweep, and
        a batch once started is always delivered."""
        outcome = Outcome()
        label = ",".join(shards) if shards is not None else "all"
        invocation = Invocation.start(f"sweep:{now_ms}:{label}", now_ms, deadline_ms, invocation_id)
        seen: set[str] = set()
        while len(seen) < limit:
            if time_left_ms is not None and time_left_ms() < SWEEP_RESERVE_MS:
                break
            wanted = min(SWEEP_BATCH, limit - len(seen))
            due = self._store.due_devices(now_ms, len(seen) + wanted, shards)
            batch = [d for d in due if d not in seen][:wanted]
            if not batch:
                break
            seen.update(batch)
            self._sweep_batch(batch, now_ms, invocation, outcome, time_left_ms)
        outcome.swept = len(seen)
        return outcome

    def _sweep_batch(
        self,
        device_ids: list[str],
        now_ms: int,
        invocation: Invocation,
        outcome: Outcome,
        time_left_ms: TimeLeft | None,
    ) -> None:
        gateways = {d: self.rules.gateways_of(d) for d in device_ids}
        gateway_ids = sorted({g.device_id for found in gateways.values() for g in found})
        # One read for the devices and the gateways they sit behind.
        records = self._store.load_many([*device_ids, *gateway_ids])
        views = {
            g: gateway_view(g, records[g].state, records[g].presence, self.rules, now_ms)
            for g in gateway_ids
        }
        deliveries: list[_Delivery] = []
        for device_id in device_ids:
            gateway = combined(views[g.device_id] for g in gateways[device_id])

            def decide(record: DeviceRecord, gateway: GatewayView | None = gateway) -> Decision:
                return self._swept(record, now_ms, gateway)

            self._commit_device(records[device_id], decide, invocation, outcome, deliveries)
        self._deliver_all({}, deliveries, outcome, invocation, time_left_ms)

    def _swept(self, record: DeviceRecord, now_ms: int, gateway: GatewayView | None) -> Decision:
        """A device's sweep: its silences and connection as of `now_ms` (held
        while its gateway is down), then operators' timers. A gateway's own
        outage is raised with how many of its members are down."""
        device_id = record.device_id
        swept = sweep_device(device_id, record.state, record.presence, self.rules, now_ms, gateway)
        silences = swept.evaluation
        timed = timers(device_id, silences.state, self.rules, now_ms)
        evaluation = Evaluation(
            timed.state,
            [*silences.transitions, *timed.transitions],
            silences.changed or timed.changed,
        )
        if self.rules.gateway(device_id) is not None and raises_own_outage(evaluation):
            down = down_since(device_id, evaluation.state, swept.presence, self.rules, now_ms)
            if down is not None:
                evaluation = with_members(evaluation, self._store.count_members(device_id, down))
        return Decision(evaluation, swept.presence)

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

    def connectivity(
        self,
        event: Any,
        now_ms: int,
        *,
        deadline_ms: int | None = None,
        invocation_id: str | None = None,
        time_left_ms: TimeLeft | None = None,
    ) -> Outcome:
        """One IoT Core lifecycle event (a device connected or disconnected),
        through the same conditional commit and outbox as readings: a connect
        resolves the device's offline alerts; a disconnect starts its offline
        window (the sweep raises it). A stale or duplicate event changes nothing;
        a malformed one goes to the dead-letter queue with its reason."""
        outcome = Outcome(messages=1)
        try:
            lifecycle = parse_lifecycle_event(event)
        except MessageRejectedError as exc:
            outcome.rejections.append(rejection_item(exc.rejection, "lifecycle"))
            self._quarantine.send(outcome.rejections)
            return outcome
        if not follows(lifecycle.device_id, self.rules):
            return outcome
        owner = f"lifecycle:{event_fingerprint([event])}"
        invocation = Invocation.start(owner, now_ms, deadline_ms, invocation_id)

        def decide(record: DeviceRecord) -> Decision:
            return on_lifecycle(
                record.device_id, record.state, record.presence, lifecycle, self.rules
            )

        deliveries: list[_Delivery] = []
        record = self._store.load(lifecycle.device_id)
        self._commit_device(record, decide, invocation, outcome, deliveries)
        self._deliver_all({}, deliveries, outcome, invocation, time_left_ms)
        return outcome

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
        time_left_ms: TimeLeft | None = None,
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
        self._deliver_all({}, deliveries, outcome, invocation, time_left_ms)
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
        time_left_ms: TimeLeft | None = None,
    ) -> None:
        """Hand the committed deliveries to `Delivery` and tally what it did."""
        delivered = self.delivery.deliver_all(
            by_device, deliveries, invocation.now_ms, time_left_ms
        )
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
            evaluation, presence = self._decided(record, decide(record), invocation.now_ms)
            moved = presence != record.presence
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
            if not evaluation.changed and not due and not moved and not record.shadow_stale:
                return done, None
            before = record.state
            if evaluation.changed or due or moved:
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
                            presence=presence,
                            gateway=self._gateway_of(record.device_id),
                        )
                    )
                except StateConflictError:
                    continue
            done.transitions = evaluation.transitions
            entries = [e for e in record.outbox if e.key in due or e in new_entries]
            if entries or record.shadow_stale:
                return done, _Delivery(
                    record, before, entries, done, invocation.now_ms, redelivery=bool(due)
                )
            return done, None
        raise StateConflictError(
            f"{record.device_id}: state kept changing under {MAX_CONFLICT_RETRIES} attempts"
        )

    def _decided(
        self, record: DeviceRecord, decided: Evaluation | Decision, now_ms: int
    ) -> tuple[Evaluation, Presence]:
        """A decision's evaluation, finalized (snoozes, reminders), and the
        presence to write with it (when its offline alerts are next due; a
        gateway's return)."""
        if isinstance(decided, Decision):
            evaluation, presence = decided.evaluation, decided.presence
        else:
            evaluation, presence = decided, record.presence
        evaluation = finalize(evaluation, self.rules, now_ms)
        version = self.rules.version
        if version is not None and evaluation.transitions:
            stamped = [replace(t, rules_version=version) for t in evaluation.transitions]
            evaluation = replace(evaluation, transitions=stamped)
        presence = settled(
            record.device_id,
            (record.state, record.presence),
            (evaluation.state, presence),
            self.rules,
            now_ms,
        )
        return evaluation, presence

    def _gateway_of(self, device_id: str) -> str | None:
        """The gateway a device's record is filed under in the gateway index."""
        gateways = self.rules.gateways_of(device_id)
        return gateways[0].device_id if gateways else None
