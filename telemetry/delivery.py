"""Delivery: what the pipeline committed, delivered once to every output.

The pipeline decides and commits each device's new state with its outbox
(the transitions still to deliver, claimed by the committing invocation until
a lease ends); this module takes it from there, for the whole invocation:

1. write every valid reading and the alert history of every delivery to the
   time-series store, in as few calls as it allows (Timestream: 100 records a
   call; InfluxDB: 5,000 lines); records the store rejects for good go to the
   dead-letter queue;
2. apply the notification budget (telemetry.core.notify decides): admit the
   invocation's publishable transitions per group; a group that holds nothing
   is written once, conditionally, and only if it counted something; held
   transitions leave their devices' outboxes in the same transaction as their
   group's digest gains them, so that a retry can neither lose nor recount
   them. A lost race reads again and admits again. On a failure in 1 or 2,
   every claim is released and the invocation fails;
3. per device, publish (SNS) what was admitted and mirror (the device shadow),
   then clear the delivered entries from the outbox. An invocation that fails
   releases its claims, so that its retry (or the next invocation for the
   device) delivers them at once; a crashed one's lease runs out. A retry
   publishes what its first attempt counted without counting it again. A
   transition SNS refuses for good goes to the dead-letter queue with its
   reason, and the device goes on.

The sweep's `send_digests` takes each due digest into its group's own outbox,
claimed as device entries are, publishes it and clears it; a digest SNS refuses
for good goes to the dead-letter queue.

It holds no AWS code: the adapters it is given satisfy the small protocols below.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from telemetry.core.alerts import AlertState, StateKey, Transition
from telemetry.core.messages import Reading
from telemetry.core.mirror import mirror_disabled, mirror_entries
from telemetry.core.notify import (
    BUDGETED,
    Admission,
    DeviceHold,
    DigestEntry,
    DigestMessage,
    Group,
    GroupRecord,
    admit,
    digest_due_ms,
    group_id,
    group_of,
    take_digest,
)
from telemetry.core.rules import Notifications
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
GROUP_CONFLICT_RETRIES: Final = 24
"""Attempts at committing an invocation's admission. A fleet incident has every
shard's sweep write the same group at once: a lost race backs off (jittered, up
to GROUP_BACKOFF_CAP_S) and admits again, rather than failing its devices."""
GROUP_BACKOFF_BASE_S: Final = 0.01
GROUP_BACKOFF_CAP_S: Final = 0.5
RECORDS_PER_CALL: Final = 100
"""Records built and handed over per write call, unless the writer says otherwise
(`RecordWriter.records_per_call`): Timestream's WriteRecords limit."""


class RecordStore(Protocol):
    """The device records, as delivery needs them: read one, write one
    conditionally on the version read (StateConflictError if another
    invocation wrote meanwhile; returns what was written, at its new version)."""

    def load(self, device_id: str) -> DeviceRecord: ...

    def save(self, record: DeviceRecord) -> DeviceRecord: ...


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

    def publish_digest(self, message: DigestMessage) -> Sequence[Refusal]:
        """Publish one digest; its refusal, if SNS refused it."""
        ...


class GroupStore(Protocol):
    """Notification groups' records (telemetry.core.notify.GroupRecord), each
    written conditionally on the version read (StateConflictError if another
    invocation wrote meanwhile)."""

    def load(self, group: Group) -> GroupRecord: ...

    def load_many(self, groups: Iterable[Group]) -> dict[Group, GroupRecord]: ...

    def save(self, record: GroupRecord, notifications: Notifications) -> GroupRecord: ...

    def save_holding(
        self,
        groups: Mapping[Group, GroupRecord],
        holds: Sequence[DeviceHold],
        notifications: Notifications,
        now_ms: int,
    ) -> tuple[dict[Group, GroupRecord], list[DeviceRecord]]:
        """Write the groups (their budget counted) with the held transitions
        added to their digests, and the devices without them, atomically per
        transaction; returns both as written."""
        ...

    def due_groups(self, now_ms: int, limit: int) -> list[GroupRecord]:
        """Groups with a digest to take or to deliver as of `now_ms`, at most `limit`."""
        ...


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


TimeLeft = Callable[[], int]
"""Milliseconds the invocation has left, asked when needed: the Lambda context's
get_remaining_time_in_millis."""


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
    held: int = 0
    """Transitions over their group's budget: left to a digest, not published alone."""


@dataclass(frozen=True, slots=True)
class DeviceDelivery:
    """A committed device record and the outbox entries it claimed to deliver,
    as of `now_ms` (the invocation's time)."""

    record: DeviceRecord
    before: Mapping[StateKey, AlertState]
    entries: list[OutboxEntry]
    done: DeviceOutcome
    now_ms: int
    redelivery: bool = False


@dataclass(slots=True)
class DigestsSent:
    """What one sweep's delivery of digests did: the digests published, those
    SNS refused for good (dead-lettered), and the groups that failed."""

    sent: list[DigestMessage] = field(default_factory=list)
    dead_lettered: int = 0
    failures: list[tuple[str, Exception]] = field(default_factory=list)


@dataclass(slots=True)
class Delivered:
    """What delivering one invocation's records and deliveries did."""

    readings_stored: int = 0
    records_rejected: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, Exception]] = field(default_factory=list)


class Delivery:
    """Stores records, then publishes, mirrors and clears each device's outbox."""

    def __init__(
        self,
        *,
        store: RecordStore,
        timeseries: RecordWriter,
        records: RecordFactory,
        publisher: Publisher,
        mirror: Mirror,
        quarantine: Quarantine,
        groups: GroupStore | None = None,
        notifications: Notifications | None = None,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self._pause = pause
        self._store = store
        self.timeseries = timeseries
        self._records = records
        self._publisher = publisher
        self._mirror = mirror
        self._quarantine = quarantine
        self._groups = groups
        self.notifications = notifications if groups is not None else None
        """The budget in force; None (no policy, or no group store) publishes everything."""

    def deliver_all(
        self,
        readings: Mapping[str, Sequence[Reading]],
        deliveries: Sequence[DeviceDelivery],
        now_ms: int,
        time_left_ms: TimeLeft | None = None,
    ) -> Delivered:
        """Store every record, hold what is over its group's budget (arrival
        time `now_ms`), then deliver each device; a device that failed is listed
        in `Delivered.failures` after every other was attempted. On a failure
        to store or to hold, release every claim (so that the retry delivers
        at once) and raise. The store is given the time left less
        RELEASE_RESERVE_MS, which is what releasing takes."""
        delivered = Delivered()
        store_time = None if time_left_ms is None else _reserving(time_left_ms)
        try:
            # Every reading and every alert to deliver, in as few calls as the store
            # allows. Before any publish: a retry rewrites both, and the store keeps one.
            self._store_records(readings, deliveries, delivered, store_time)
            deliveries = self._hold_over_budget(deliveries, now_ms)
        except Exception:
            self.release_all(deliveries)
            raise
        for delivery in deliveries:
            try:
                self._deliver(delivery)
            except (DependencyError, StateConflictError) as exc:
                delivered.failures.append((delivery.record.device_id, exc))
        return delivered

    # ------------------------------------------------------------- the budget

    def _hold_over_budget(
        self, deliveries: Sequence[DeviceDelivery], now_ms: int
    ) -> list[DeviceDelivery]:
        """Admit the invocation's transitions per group and commit the admission
        (see `_Admitting`); returns the deliveries without the held entries, at
        the versions written."""
        if self.notifications is None or self._groups is None:
            return list(deliveries)
        run = _Admitting(self._groups, self._store, self.notifications, now_ms, deliveries)
        for attempt in range(GROUP_CONFLICT_RETRIES):
            if attempt:
                ceiling = min(GROUP_BACKOFF_CAP_S, GROUP_BACKOFF_BASE_S * 2**attempt)
                self._pause(random.uniform(0, ceiling))  # noqa: S311 - jitter, not secrecy
            if run.attempt():
                return list(run.current.values())
        raise StateConflictError(
            f"notification groups kept changing under {GROUP_CONFLICT_RETRIES} attempts"
        )

    # ------------------------------------------------------------- digests

    def send_digests(self, invocation: Invocation, limit: int) -> DigestsSent:
        """Every group with a digest due as of the invocation's time: take it
        into the group's outbox (claimed, as a device's entries are), publish
        it, clear it. A digest SNS refuses for good goes to the dead-letter
        queue; a group that failed is listed after every other was attempted."""
        out = DigestsSent()
        store, notifications = self._groups, self.notifications
        if store is None or notifications is None:
            return out
        for record in store.due_groups(invocation.now_ms, limit):
            try:
                self._send_group(_Digests(store, notifications, invocation), record, out)
            except (DependencyError, StateConflictError) as exc:
                out.failures.append((group_id(record.group), exc))
        return out

    def _send_group(self, digests: _Digests, record: GroupRecord, out: DigestsSent) -> None:
        claimed = digests.claim(record)
        if claimed is None:
            return
        mine = [e for e in claimed.outbox if e.claimant == digests.invocation.id]
        delivered: set[str] = set()
        release: set[str] = set()
        try:
            for entry in mine:
                refused = list(self._publisher.publish_digest(entry.message))
                if any(r.retryable for r in refused):
                    release.add(entry.key)
                    continue
                delivered.add(entry.key)
                if refused:
                    self._quarantine.send([_refused_digest_item(r, entry.message) for r in refused])
                    out.dead_lettered += 1
                else:
                    out.sent.append(entry.message)
        except (DependencyError, StateConflictError):
            unsent = {e.key for e in mine} - delivered
            with suppress(DependencyError, StateConflictError):
                digests.clear(claimed, delivered, unsent)
            raise
        digests.clear(claimed, delivered, release)
        if release:
            raise DependencyError(
                "sns",
                "Publish",
                "EntriesFailed",
                f"{len(release)} digests not accepted; kept to retry",
                transient=True,
            )

    # ------------------------------------------------------------- devices

    def release_all(self, deliveries: Iterable[DeviceDelivery]) -> None:
        """Best effort: give up this invocation's claims on every delivery."""
        for delivery in deliveries:
            self._release(delivery, {e.key for e in delivery.entries})

    def _store_records(
        self,
        by_device: Mapping[str, Sequence[Reading]],
        deliveries: Sequence[DeviceDelivery],
        delivered: Delivered,
        time_left_ms: Callable[[], float] | None,
    ) -> None:
        sources: list[Reading | Transition] = [r for rs in by_device.values() for r in rs]
        readings = len(sources)
        sources += [e.transition for d in deliveries for e in d.entries]
        rejected: list[Any] = []
        # Records are built a call's worth at a time: a 10,000-message batch never
        # holds its 40,000 record dicts at once.
        per_call = int(getattr(self.timeseries, "records_per_call", RECORDS_PER_CALL))
        for start in range(0, len(sources), per_call):
            chunk = sources[start : start + per_call]
            records = [(self._record(s), s) for s in chunk]
            rejected.extend(self.timeseries.write(records, time_left_ms=time_left_ms))
        rejected_readings = sum(1 for r in rejected if isinstance(r.source, Reading))
        delivered.readings_stored += readings - rejected_readings
        delivered.records_rejected += len(rejected)
        if rejected:
            items = [_rejected_record_item(r) for r in rejected]
            delivered.rejections.extend(items)
            self._quarantine.send(items)

    def _record(self, source: Reading | Transition) -> Any:
        if isinstance(source, Reading):
            return self._records.reading(source)
        return self._records.alert(source)

    def _deliver(self, delivery: DeviceDelivery) -> None:
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
        self, delivery: DeviceDelivery
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

    def _release(self, delivery: DeviceDelivery, keys: set[str]) -> None:
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


@dataclass(frozen=True, slots=True)
class _Digests:
    """A sweep's digests of one group: taken and claimed, then cleared."""

    store: GroupStore
    notifications: Notifications
    invocation: Invocation

    def claim(self, record: GroupRecord) -> GroupRecord | None:
        """Take the group's digest if it is due, and claim every digest of its
        outbox no running invocation holds; the group as written, or None when
        there is nothing for this invocation to send."""
        now_ms, invocation = self.invocation.now_ms, self.invocation
        for _ in range(MAX_CONFLICT_RETRIES):
            state, outbox = record.state, list(record.outbox)
            due = digest_due_ms(state, self.notifications)
            if due is not None and due <= now_ms:
                message, state = take_digest(state, record.group, self.notifications, now_ms)
                outbox.append(DigestEntry(message, now_ms))
            free = {e.key for e in outbox if e.free_for(invocation.id, now_ms)}
            if not free:
                return None
            outbox = [
                e.claimed(invocation.id, invocation.lease_ms) if e.key in free else e
                for e in outbox
            ]
            try:
                return self.store.save(
                    replace(record, state=state, outbox=tuple(outbox)), self.notifications
                )
            except StateConflictError:
                record = self.store.load(record.group)
        raise StateConflictError(f"{group_id(record.group)}: could not take its digest")

    def clear(self, record: GroupRecord, delivered: set[str], release: set[str]) -> None:
        """Drop delivered digests from the group's outbox and release those to retry."""
        for _ in range(MAX_CONFLICT_RETRIES):
            outbox = tuple(
                e.claimed(None) if e.key in release else e
                for e in record.outbox
                if e.key not in delivered
            )
            if outbox == record.outbox:
                return
            try:
                self.store.save(replace(record, outbox=outbox), self.notifications)
            except StateConflictError:
                record = self.store.load(record.group)
                continue
            return
        raise StateConflictError(f"{group_id(record.group)}: could not clear its digests")


class _Admitting:
    """One invocation's transitions, admitted per group and committed.

    A group that holds nothing is written alone, once, and only when it counted
    something new; held transitions leave their devices' outboxes in the same
    transaction as their groups' digests gain them. A lost race (a group or a
    device written meanwhile) reads them again and admits again."""

    def __init__(
        self,
        groups: GroupStore,
        devices: RecordStore,
        notifications: Notifications,
        now_ms: int,
        deliveries: Sequence[DeviceDelivery],
    ) -> None:
        self._store = groups
        self._devices = devices
        self._notifications = notifications
        self._now_ms = now_ms
        self.current = {d.record.device_id: d for d in deliveries}
        self._claimed = {device: {e.key for e in d.entries} for device, d in self.current.items()}
        self._todo = set(self._members())
        self._groups = groups.load_many(self._todo) if self._todo else {}

    def _members(self) -> dict[Group, list[Transition]]:
        """The budgeted transitions of each group still to commit, in order."""
        members: dict[Group, list[Transition]] = defaultdict(list)
        for delivery in self.current.values():
            for entry in delivery.entries:
                if entry.transition.status in BUDGETED and not entry.transition.muted:
                    members[group_of(entry.transition, self._notifications)].append(
                        entry.transition
                    )
        return members

    def attempt(self) -> bool:
        """Admit and write every group still to commit; whether all are done."""
        if not self._todo:
            return True
        members = self._members()
        admissions = {
            g: admit(self._groups[g].state, members[g], self._notifications, self._now_ms)
            for g in self._todo
        }
        holding = {g for g, a in admissions.items() if a.hold}
        raced = {g for g in self._todo - holding if not self._write_counted(g, admissions[g])}
        moved: set[str] = set()
        if holding and not self._write_holds(admissions, holding):
            raced |= holding
            held = {t.key for g in holding for t in admissions[g].hold}
            moved = {d for d, c in self.current.items() if any(e.key in held for e in c.entries)}
        if not raced:
            return True
        self._todo = raced
        self._groups.update(self._store.load_many(raced))
        for device_id in moved:
            record = self._devices.load(device_id)
            entries = [e for e in record.outbox if e.key in self._claimed[device_id]]
            self.current[device_id] = replace(
                self.current[device_id], record=record, entries=entries
            )
        return False

    def _write_counted(self, group: Group, admission: Admission) -> bool:
        """Write a group that holds nothing, if it counted something new; False
        if it lost a race."""
        record = self._groups[group]
        if not {k for _, k in admission.state.sent} - {k for _, k in record.state.sent}:
            return True
        try:
            self._groups[group] = self._store.save(
                replace(record, state=admission.state), self._notifications
            )
        except StateConflictError:
            return False
        return True

    def _write_holds(self, admissions: Mapping[Group, Admission], holding: set[Group]) -> bool:
        """Move the held entries into their groups' digests; False if it lost a race."""
        held = {t.key: g for g in holding for t in admissions[g].hold}
        holds = [
            DeviceHold(
                replace(d.record, outbox=[e for e in d.record.outbox if e.key not in held]),
                tuple((held[e.key], e.transition) for e in d.entries if e.key in held),
            )
            for d in self.current.values()
            if any(e.key in held for e in d.entries)
        ]
        # Each group as read, with its budget counted and its digest still as read.
        counted = {
            g: replace(
                self._groups[g],
                state=replace(admissions[g].state, pending=self._groups[g].state.pending),
            )
            for g in holding
        }
        try:
            groups, devices = self._store.save_holding(
                counted, holds, self._notifications, self._now_ms
            )
        except StateConflictError:
            return False
        self._groups.update(groups)
        for record in devices:
            delivery = self.current[record.device_id]
            kept = [e for e in delivery.entries if e.key not in held]
            delivery.done.held += len(delivery.entries) - len(kept)
            self.current[record.device_id] = replace(delivery, record=record, entries=kept)
        return True


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


def _refused_digest_item(refusal: Refusal, message: DigestMessage) -> dict[str, Any]:
    """A digest SNS refused for good, as a dead-letter item."""
    return {
        "source": "sns",
        "reason": f"sns_rejected: {refusal.code}: {refusal.message}",
        "code": "sns_rejected",
        "field": "digest",
        "detail": f"{refusal.code}: {refusal.message}",
        "deviceId": None,
        "payload": message.to_json(),
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
