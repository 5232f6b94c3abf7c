"""The notification budget's failure semantics as a property: faults anywhere, retries.

The in-memory world of test_pipeline_properties, with a notification group store
beside the device store and a small budget (2 changes in any 10 minutes, so that
most changes are held). Faults strike at random: transient errors and lost races
on the group store too, and a hold whose transaction committed but whose answer
was lost. Each message is retried until it succeeds, then sweeps run (retried
too) until every digest went. Whatever the faults, every change the clean run
made reaches operators, alone or in exactly one digest; a change reaches them
twice only where a fault struck after it was published.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.adapters.timestream import TimestreamRecords
from telemetry.core.notify import DeviceHold, DigestMessage, Group, GroupRecord, hold
from telemetry.core.rules import Notifications, RuleSet
from telemetry.core.state import DeviceRecord
from telemetry.errors import DependencyError, StateConflictError
from telemetry.pipeline import Pipeline
from tests.test_pipeline_properties import (
    LEASE_MS,
    RULES,
    START,
    FakeMirror,
    FakePublisher,
    FakeQuarantine,
    FakeStore,
    FakeTimeseries,
    Faults,
    as_messages,
    messages,
)

BUDGET = Notifications(max_per_window=2)
BUDGETED_RULES = RuleSet(RULES.rules, notifications=BUDGET)
EVERYTHING_RULES = RuleSet(RULES.rules)
"""No notification policy: every change published alone."""
MINUTE = 60_000


@dataclass
class FakeGroups:
    """Groups in memory, with the device store for holds; faults as the other fakes."""

    faults: Faults
    devices: FakeStore
    items: dict[Group, GroupRecord] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)
    """Every transition key a write counted in a group's window, and when first."""

    def _written(self, record: GroupRecord) -> None:
        self.items[record.group] = copy.deepcopy(record)
        for at, key in record.state.sent:
            self.counted.setdefault(key, at)

    def load(self, group: Group) -> GroupRecord:
        self.faults.maybe_raise("GetItem")
        return copy.deepcopy(self.items.get(group, GroupRecord(group)))

    def load_many(self, groups: Iterable[Group]) -> dict[Group, GroupRecord]:
        self.faults.maybe_raise("BatchGetItem")
        return {g: copy.deepcopy(self.items.get(g, GroupRecord(g))) for g in groups}

    def _check(self, record: GroupRecord) -> None:
        current = self.items.get(record.group, GroupRecord(record.group))
        if self.faults.strike("GroupConflict"):
            self.items[record.group] = replace(current, version=current.version + 1)
            raise StateConflictError("another invocation wrote the group")
        if current.version != record.version:
            raise StateConflictError("group moved on")

    def save(self, record: GroupRecord, notifications: Notifications) -> GroupRecord:
        self._check(record)
        self.faults.maybe_raise("PutItem")
        saved = replace(record, version=record.version + 1)
        self._written(saved)
        return saved

    def save_holding(
        self,
        groups: Mapping[Group, GroupRecord],
        holds: Sequence[DeviceHold],
        notifications: Notifications,
        now_ms: int,
    ) -> tuple[dict[Group, GroupRecord], list[DeviceRecord]]:
        for record in groups.values():
            self._check(record)
        for h in holds:
            current = self.devices.items.get(h.record.device_id, DeviceRecord(h.record.device_id))
            if current.version != h.record.version:
                raise StateConflictError("device moved on")
        self.faults.maybe_raise("TransactWriteItems")
        written = {}
        for group, record in groups.items():
            held = [t for h in holds for g, t in h.held if g == group]
            after = replace(
                record, state=hold(record.state, held, now_ms), version=record.version + 1
            )
            self._written(after)
            written[group] = after
        devices = []
        for h in holds:
            saved = replace(h.record, version=h.record.version + 1)
            self.devices.items[saved.device_id] = copy.deepcopy(saved)
            devices.append(saved)
        # Committed; the answer may still be lost on its way back.
        self.faults.maybe_raise("TransactAnswer")
        return written, devices

    def due_groups(self, now_ms: int, limit: int) -> list[GroupRecord]:
        self.faults.maybe_raise("Query")
        due = [
            r for r in self.items.values() if (d := r.due_ms(BUDGET)) is not None and d <= now_ms
        ]
        return copy.deepcopy(due[:limit])


@dataclass
class DigestPublisher(FakePublisher):
    digests: list[DigestMessage] = field(default_factory=list)

    def publish_digest(self, message: DigestMessage) -> list[Any]:
        self.faults.maybe_raise("PublishDigest")
        self.digests.append(message)
        return []


@dataclass
class World:
    pipeline: Pipeline
    publisher: DigestPublisher
    groups: FakeGroups
    faults: Faults


def world(seed: int, rate: float, rules: RuleSet) -> World:
    import random

    faults = Faults(random.Random(seed), rate)
    store = FakeStore(faults)
    groups = FakeGroups(faults, store)
    publisher = DigestPublisher(faults)
    pipeline = Pipeline(
        rules=rules,
        store=store,
        timeseries=FakeTimeseries(faults),
        records=TimestreamRecords(),
        publisher=publisher,
        mirror=FakeMirror(faults),
        quarantine=FakeQuarantine(faults),
        groups=groups,
    )
    return World(pipeline, publisher, groups, faults)


def until_done(attempt: Any, first_ms: int, step_ms: int) -> int:
    """Call `attempt(now_ms)` until it succeeds, `step_ms` apart; the time it did.
    (At a 40% fault rate an attempt through every fault point rarely succeeds.)"""
    for n in range(5_000):
        now_ms = first_ms + n * step_ms
        try:
            attempt(now_ms)
        except (DependencyError, StateConflictError):
            continue
        return now_ms
    raise AssertionError("never succeeded")


def process(w: World, message: dict[str, Any], first_ms: int, step_ms: int = MINUTE) -> int:
    def attempt(now_ms: int) -> None:
        w.pipeline.process([message], now_ms).raise_failure()

    return until_done(attempt, first_ms, step_ms)


def send_digests(w: World, first_ms: int) -> int:
    def attempt(now_ms: int) -> None:
        sent = w.pipeline.send_digests(now_ms)
        if sent.failures:
            raise sent.failures[0][1]

    return until_done(attempt, first_ms, LEASE_MS)


@settings(max_examples=120)
@given(pairs=messages, seed=st.integers(0, 10_000), rate=st.sampled_from([0.1, 0.25, 0.4]))
def test_every_change_reaches_operators_alone_or_in_one_digest_whatever_the_faults(
    pairs: list[tuple[str, float]], seed: int, rate: float
) -> None:
    # Given the same messages through a clean world without a budget, and a faulty
    # world with one
    batch = as_messages(pairs)
    clean = world(seed, 0.0, EVERYTHING_RULES)
    faulty = world(seed, rate, BUDGETED_RULES)
    now = START + 3_600_000

    # When each message is delivered, retried until it succeeds, and then, once every
    # lease has run out, each device is heard from and the sweeps send every digest
    at = now
    for message in batch:
        process(clean, message, now)
        at = process(faulty, message, at)
    later = at + 24 * 3_600_000
    for device in sorted({d for d, _ in pairs}):
        heartbeat = [{"sensorId": "heartbeat-1", "type": "heartbeat", "value": 1.0}]
        quiet = {"deviceId": device, "timestamp": later, "data": heartbeat}
        process(clean, quiet, later)
        # (an entry whose claim a failed attempt could not release waits for its lease)
        later = process(faulty, quiet, later + LEASE_MS, step_ms=LEASE_MS) + LEASE_MS
    for _ in range(3):
        later = send_digests(faulty, later) + 24 * 3_600_000

    # Then every change of the clean run reached operators, alone or in a digest
    changes = Counter(clean.publisher.published)
    assert all(n == 1 for n in changes.values())
    alone = Counter(faulty.publisher.published)
    digests = {m.key: m for m in faulty.publisher.digests}
    digested = Counter(
        (a.alert_id, a.status, a.time_ms) for m in digests.values() for a in m.digest.alerts
    )
    assert set(alone) | set(digested) == set(changes)
    # and each held change is in exactly one digest, counts adding up
    assert all(n == 1 for n in digested.values())
    assert sum(m.digest.held for m in digests.values()) == sum(digested.values())
    # and every change published alone was counted in its window, which never
    # counted more than maxPerWindow
    counted = faulty.groups.counted
    assert {f"{a}:{s}:{t}" for a, s, t in alone} <= set(counted)
    times = sorted(counted.values())
    for end in times:
        assert sum(end - BUDGET.window_ms < t <= end for t in times) <= BUDGET.max_per_window
    # and nothing is left to send
    assert all(r.state.pending is None and not r.outbox for r in faulty.groups.items.values())
    # and a change or a digest reached operators twice only where a fault struck after
    # publishing it (its outbox not cleared: a failed write, or a lost race)
    resent = len(faulty.publisher.digests) - len(digests)
    repeats = sum(n - 1 for n in (alone + digested).values()) + resent
    counts = faulty.faults.counts
    assert repeats <= counts["PutItem"] + counts["Conflict"] + counts["GroupConflict"]
