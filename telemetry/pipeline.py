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
   only the winner commits; the loser re-reads and re-evaluates). The commit
   claims its outbox entries for this invocation until a lease ends (the
   invocation's own deadline and a margin);
3. write every valid reading and the alert history of every delivery to
   the time-series store, in as few calls as it allows for the whole
   invocation (Timestream: 100 records a call; InfluxDB: 5,000 lines); records
   the store rejects for good go to the dead-letter queue;
4. per device, deliver (SNS, the shadow mirror) and clear the delivered
   entries. An entry claimed by another invocation that is still running is
   left to it: of a duplicate delivery overlapping the first run, exactly one
   publishes. An invocation that fails releases its claims, so that its retry
   (or the next invocation for the device) delivers them at once; a crashed
   one's lease runs out. Claims are named by the invocation's id, Lambda's
   request id, which a retry shares with its first attempt (never a duplicate
   delivery): a retry delivers at once what its earlier attempt claimed, even
   when that attempt could not release its claims (a commit whose answer was
   lost). A retry also rewrites the readings, which the store
   keeps once. A transition SNS refuses for good goes to the dead-letter
   queue with its reason, and the device goes on.

Permanent problems never fail the invocation; everything else raises after
every device has been attempted, so that Lambda retries and the retry ends
like one clean run.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from telemetry.core.alerts import (
    AlertState,
    Evaluation,
    StateKey,
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
from telemetry.core.mirror import mirror_disabled, mirror_entries
from telemetry.core.operators import Action, apply_action, finalize, key_view, timers
from telemetry.core.rules import RuleSet
from telemetry.core.state import DeviceRecord, OutboxEntry
from telemetry.errors import DependencyError, Refusal, StateConflictError

OUTBOX_LEASE_MS: Final = 5 * 60 * 1000
"""How long an invocation that does not know its deadline holds its claims:
longer than the function's timeout, so that a running invocation is never doubled."""
LEASE_MARGIN_MS: Final = 10 * 1000
"""Added to a known deadline: clocks of two execution environments differ a little."""
RELEASE_RESERVE_MS: Final = 10 * 1000
"""What an invocation keeps of its remaining time for after the time-series store:
releasing its outbox claims when the store gives up (a conditional write per
device), so that Lambda's retry delivers them at once rather than after the lease.
The store's writer is given the time left less this (`RecordWriter.write`)."""

MAX_CONFLICT_RETRIES: Final = 8
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
RECORDS_PER_CALL: Final = 100
"""Records built and handed over per write call, unless the writer says otherwise
(`RecordWriter.records_per_call`): Timestream's WriteRecords limit."""


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


class RecordWriter(Protocol):
    """Stores time-series records; returns those refused for good (each with
    `record`, `reason`, `source`, and the `store` that refused it).

    A writer may say how many records it takes per call (`records_per_call`:
    Timestream 100, InfluxDB 5,000); RECORDS_PER_CALL otherwise."""

    def write(
        self,
        records: Sequence[tuple[Any, object]],
        *,
        time_left_ms: Callable[[], float] | None = None,
    ) -> Sequence[Any]:
        """`time_left_ms`, when the invocation's deadline is known: how many
        milliseconds the write may still take, retries and their waits included.
        A writer that would need longer raises DependencyError (transient) at
        once; one whose own retries are bounded otherwise may ignore it."""
        ...


class Publisher(Protocol):
    def publish(self, transitions: Sequence[Transition]) -> Sequence[Refusal]: ...


class MirrorOutcome(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def code(self) -> str | None: ...

    @property
    def retryable(self) -> bool: ...

    @property
    def omitted(self) -> int: ...


class Mirror(Protocol):
    def update(
        self,
        thing_name: str,
        before: Sequence[tuple[str, Mapping[str, Any]]],
        after: Sequence[tuple[str, Mapping[str, Any]]],
        *,
        full: bool,
        disabled_before: Mapping[str, Mapping[str, Any]] | None = None,
        disabled_after: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> MirrorOutcome: ...


class Quarantine(Protocol):
    def send(self, items: Sequence[dict[str, Any]]) -> None: ...


class RecordFactory(Protocol):
    """Turns readings and transitions into time-series records (Timestream
    record dicts, InfluxDB line-protocol points)."""

    def reading(self, reading: Reading) -> Any: ...

    def alert(self, transition: Transition) -> Any: ...


@dataclass(slots=True)
class DeviceOutcome:
    """What one invocation did for one device. `shadow` is the mirror update's
    status; `shadow_failure` the service's code and whether it may heal."""

    device_id: str
    transitions: list[Transition] = field(default_factory=list)
    late: int = 0
    shadow: str | None = None
    shadow_failure: tuple[str, bool] | None = None
    shadow_omitted: int = 0
    dead_lettered: int = 0


@dataclass(frozen=True, slots=True)
class _Delivery:
    """A committed device record and the outbox entries it claimed to deliver,
    as of `now_ms` (the invocation's time)."""

    record: DeviceRecord
    before: Mapping[StateKey, AlertState]
    entries: list[OutboxEntry]
    done: DeviceOutcome
    now_ms: int
    redelivery: bool = False


@dataclass(frozen=True, slots=True)
class Invocation:
    """Who is delivering and until when its claims hold. `id` names the claims:
    Lambda's request id, which every retry of a request shares and nothing else
    does; a random one when the caller knows none."""

    id: str
    now_ms: int
    lease_ms: int
    owner: str

    @classmethod
    def start(
        cls, owner: str, now_ms: int, deadline_ms: int | None, invocation_id: str | None = None
    ) -> Invocation:
        lease = deadline_ms if deadline_ms is not None else now_ms + OUTBOX_LEASE_MS
        return cls(invocation_id or uuid.uuid4().hex, now_ms, lease + LEASE_MARGIN_MS, owner)


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


TimeLeft = Callable[[], int]
"""Milliseconds the invocation has left, asked when needed: the Lambda context's
get_remaining_time_in_millis."""

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
        self._deliver_all(by_device, deliveries, outcome, time_left_ms)
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
        self._deliver_all({}, deliveries, outcome, time_left_ms)

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
        self._deliver_all({}, deliveries, outcome, time_left_ms)
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
        self._deliver_all({}, deliveries, outcome, time_left_ms)
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
        time_left_ms: TimeLeft | None = None,
    ) -> None:
        """Store every record, then deliver each device; on a failure to store,
        release every claim so that the retry delivers at once (the store is given
        the time left less RELEASE_RESERVE_MS, which is what releasing takes)."""
        store_time = None if time_left_ms is None else _reserving(time_left_ms)
        try:
            # Every reading and every alert to deliver, in as few calls as the store
            # allows. Before any publish: a retry rewrites both, and the store keeps one.
            self._store_records(by_device, deliveries, outcome, store_time)
        except Exception:
            for delivery in deliveries:
                self._release(delivery, {e.key for e in delivery.entries})
            raise
        for delivery in deliveries:
            try:
                self._deliver(delivery)
            except (DependencyError, StateConflictError) as exc:
                outcome.failures.append((delivery.record.device_id, exc))

    def _store_records(
        self,
        by_device: Mapping[str, list[Reading]],
        deliveries: list[_Delivery],
        outcome: Outcome,
        time_left_ms: Callable[[], float] | None,
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
            records = [(self._record(s), s) for s in chunk]
            rejected.extend(self._timeseries.write(records, time_left_ms=time_left_ms))
        rejected_readings = sum(1 for r in rejected if isinstance(r.source, Reading))
        outcome.readings_stored += readings - rejected_readings
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

    def _deliver(self, delivery: _Delivery) -> None:
        """Publish, mirror, then clear what was delivered from the outbox."""
        record, done = delivery.record, delivery.done
        keys = {e.key for e in delivery.entries}
        # A snoozed key's transitions are history and mirror only: never published.
        transitions = [e.transition for e in delivery.entries if not e.transition.muted]
        try:
            refused = list(self._publisher.publish(transitions)) if transitions else []
            for_good = [r for r in refused if not r.retryable]
            if for_good:
                items = [_refused_item(r) for r in for_good]
                self._quarantine.send(items)
                done.dead_lettered += len(items)
        except (DependencyError, StateConflictError):
            self._release(delivery, keys)
            raise
        retry = {_key_of(r) for r in refused if r.retryable}
        stale, stale_ms, mirror_error = self._mirror_update(delivery)
        delivered = keys - retry
        if delivered or retry or (stale, stale_ms) != (record.shadow_stale, record.shadow_stale_ms):
            self._clear(record, delivered, retry, delivery.now_ms, stale, stale_ms)
        if retry:
            raise DependencyError(
                "sns",
                "PublishBatch",
                "EntriesFailed",
                f"{len(retry)} of {len(transitions)} alerts not accepted; kept to retry",
                transient=True,
            )
        if mirror_error is not None:
            raise mirror_error

    def _mirror_update(
        self, delivery: _Delivery
    ) -> tuple[bool, int | None, DependencyError | None]:
        """Update the shadow mirror; whether it is stale now, since when if a retry
        may mend it (the sweep rewrites it SHADOW_REPAIR_DELAY_MS later), and a
        misconfiguration to raise once the outbox is cleared."""
        record, done = delivery.record, delivery.done
        # Entries redelivered for a failed invocation never reached the mirror
        # either: rewrite it whole, as for a stale one.
        full = record.shadow_stale or delivery.redelivery
        before, after = mirror_entries(delivery.before), mirror_entries(record.state)
        disabled_before = mirror_disabled(delivery.before)
        disabled_after = mirror_disabled(record.state)
        if not full and before == after and disabled_before == disabled_after:
            return record.shadow_stale, record.shadow_stale_ms, None
        try:
            result = self._mirror.update(
                record.device_id,
                before,
                after,
                full=full,
                disabled_before=disabled_before,
                disabled_after=disabled_after,
            )
        except DependencyError as exc:
            done.shadow, done.shadow_failure = "failed", (exc.code, False)
            return True, None, exc
        done.shadow, done.shadow_omitted = str(result.status), result.omitted
        if result.status == "failed":
            done.shadow_failure = (result.code or "Unknown", result.retryable)
            return True, delivery.now_ms if result.retryable else None, None
        return False, None, None

    def _clear(
        self,
        record: DeviceRecord,
        delivered: set[str],
        release: set[str],
        now_ms: int,
        stale: bool,
        stale_ms: int | None,
    ) -> None:
        """Drop delivered entries from the outbox and release those to retry, and
        record whether the mirror is stale (`stale`, since `stale_ms` when a retry
        may mend it). If another invocation wrote meanwhile, its shadow update may
        have raced ours: mark the mirror stale as of `now_ms`, for the sweep to
        rewrite it unless the device's next invocation does."""
        for _ in range(MAX_CONFLICT_RETRIES):
            outbox = [
                e.claimed(None) if e.key in release else e
                for e in record.outbox
                if e.key not in delivered
            ]
            written = replace(record, outbox=outbox, shadow_stale=stale, shadow_stale_ms=stale_ms)
            try:
                self._store.save(written)
            except StateConflictError:
                stale, stale_ms = True, now_ms
                record = self._store.load(record.device_id)
                continue
            return
        raise StateConflictError(f"{record.device_id}: could not clear the outbox")

    def _release(self, delivery: _Delivery, keys: set[str]) -> None:
        """Best effort: give up this invocation's claims on `keys`, so that a retry
        need not wait for the lease. If this fails too, the lease runs out."""
        if not keys:
            return
        record = delivery.record
        try:
            self._clear(
                record, set(), keys, delivery.now_ms, record.shadow_stale, record.shadow_stale_ms
            )
        except (DependencyError, StateConflictError):
            return


def _reserving(time_left_ms: TimeLeft) -> Callable[[], float]:
    """The time the store may take: what the invocation has left less RELEASE_RESERVE_MS."""
    return lambda: time_left_ms() - RELEASE_RESERVE_MS


def _key_of(refusal: Refusal) -> str:
    item = refusal.item
    return item.key if isinstance(item, Transition) else str(item)


def _refused_item(refusal: Refusal) -> dict[str, Any]:
    """A transition SNS refused for good, as a dead-letter item."""
    item = refusal.item
    payload = item.to_json() if isinstance(item, Transition) else item
    device_id = item.device_id if isinstance(item, Transition) else None
    return {
        "source": "sns",
        "reason": f"sns_rejected: {refusal.code}: {refusal.message}",
        "code": "sns_rejected",
        "field": "transition",
        "detail": f"{refusal.code}: {refusal.message}",
        "deviceId": device_id,
        "payload": payload,
    }


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
