"""The failure semantics as a property: faults anywhere, retries until success.

In-memory fakes of every adapter fail at random (transient errors on the state
store, Timestream, SNS and the dead-letter queue; a failed shadow update;
conflicting writes from another invocation). Each message is retried, as
Lambda does, until an attempt succeeds. Whatever the faults, the outcome must
be that of one clean run: every reading stored, the same final state, and
each transition published, duplicated only by a fault between publishing and
recording the publish.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.adapters.shadow import MirrorResult, MirrorStatus
from telemetry.adapters.timestream import TimestreamRecords
from telemetry.core.alerts import Transition
from telemetry.core.rules import load_rules
from telemetry.core.state import DeviceRecord
from telemetry.errors import DependencyError, StateConflictError
from telemetry.pipeline import LEASE_MARGIN_MS, OUTBOX_LEASE_MS, Pipeline

RULES = load_rules(Path(__file__).resolve().parent.parent / "rules")
START = 1_764_237_600_000
LEASE_MS = OUTBOX_LEASE_MS + LEASE_MARGIN_MS


@dataclass
class Faults:
    """Decides, call by call, whether an operation fails."""

    rng: random.Random
    rate: float
    counts: Counter[str] = field(default_factory=Counter)

    def strike(self, operation: str) -> bool:
        if self.rng.random() < self.rate:
            self.counts[operation] += 1
            return True
        return False

    def maybe_raise(self, operation: str) -> None:
        if self.strike(operation):
            raise DependencyError("fake", operation, "InternalError", "injected", transient=True)


@dataclass
class FakeStore:
    faults: Faults
    items: dict[str, DeviceRecord] = field(default_factory=dict)

    def load(self, device_id: str) -> DeviceRecord:
        self.faults.maybe_raise("GetItem")
        return copy.deepcopy(self.items.get(device_id, DeviceRecord(device_id)))

    def load_many(self, device_ids: Iterable[str]) -> dict[str, DeviceRecord]:
        self.faults.maybe_raise("BatchGetItem")
        return {d: copy.deepcopy(self.items.get(d, DeviceRecord(d))) for d in device_ids}

    def save(self, record: DeviceRecord) -> DeviceRecord:
        current = self.items.get(record.device_id, DeviceRecord(record.device_id))
        if self.faults.strike("Conflict"):
            # another invocation wrote the same state meanwhile: only the version moves
            current = copy.deepcopy(current)
            current.version += 1
            self.items[record.device_id] = current
        if current.version != record.version:
            raise StateConflictError(record.device_id)
        self.faults.maybe_raise("PutItem")
        saved = replace(record, version=record.version + 1)
        self.items[record.device_id] = copy.deepcopy(saved)
        return saved


@dataclass
class FakeTimeseries:
    faults: Faults
    records: set[str] = field(default_factory=set)

    def write(self, records: Sequence[tuple[dict[str, Any], object]], **_: Any) -> list[Any]:
        self.faults.maybe_raise("WriteRecords")
        self.records.update(repr(sorted(r.items())) for r, _ in records)  # Timestream dedups
        return []


@dataclass
class FakePublisher:
    faults: Faults
    published: list[tuple[str, str, int]] = field(default_factory=list)

    def publish(self, transitions: Sequence[Transition]) -> list[Transition]:
        self.faults.maybe_raise("Publish")
        self.published.extend((t.alert_id, t.status.value, t.time_ms) for t in transitions)
        return []


@dataclass
class FakeMirror:
    faults: Faults

    def update(
        self, thing_name: str, before: Sequence[Any], after: Sequence[Any], **_: Any
    ) -> MirrorResult:
        if self.faults.strike("UpdateThingShadow"):
            return MirrorResult(MirrorStatus.FAILED, "ThrottlingException", retryable=True)
        return MirrorResult(MirrorStatus.UPDATED)


@dataclass
class FakeQuarantine:
    faults: Faults
    items: list[dict[str, Any]] = field(default_factory=list)

    def send(self, items: Sequence[dict[str, Any]]) -> None:
        self.faults.maybe_raise("SendMessageBatch")
        self.items.extend(items)


@dataclass
class World:
    pipeline: Pipeline
    store: FakeStore
    timeseries: FakeTimeseries
    publisher: FakePublisher
    faults: Faults


def world(seed: int, rate: float) -> World:
    faults = Faults(random.Random(seed), rate)
    store, timeseries, publisher = FakeStore(faults), FakeTimeseries(faults), FakePublisher(faults)
    pipeline = Pipeline(
        rules=RULES,
        store=store,
        timeseries=timeseries,
        records=TimestreamRecords(),
        publisher=publisher,
        mirror=FakeMirror(faults),
        quarantine=FakeQuarantine(faults),
    )
    return World(pipeline, store, timeseries, publisher, faults)


def deliver(w: World, message: dict[str, Any], now_ms: int, step_ms: int = 60_000) -> int:
    """Invoke until an attempt succeeds, as Lambda retries (a minute apart by
    default); returns the attempts."""
    for attempt in range(1, 200):
        try:
            outcome = w.pipeline.process([message], now_ms + attempt * step_ms)
            outcome.raise_failure()
        except (DependencyError, StateConflictError):
            continue
        return attempt
    raise AssertionError("never succeeded")


messages = st.lists(
    st.tuples(
        st.sampled_from(["pump-1", "pump-2"]),
        st.sampled_from([60.0, 74.0, 76.0, 80.0, 89.0, 91.0, 95.0, 0.5, 5.0, 9.0, 11.0]),
    ),
    min_size=1,
    max_size=25,
)


def as_messages(pairs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    out = []
    for i, (device, value) in enumerate(pairs):
        kind = "pressure" if value < 20 else "temperature"
        out.append(
            {
                "deviceId": device,
                "timestamp": START + i * 1000,
                "data": [{"sensorId": f"{kind}-1", "type": kind, "value": value}],
            }
        )
    return out


@settings(max_examples=150)
@given(pairs=messages, seed=st.integers(0, 10_000), rate=st.sampled_from([0.1, 0.25, 0.4]))
def test_any_faults_with_retries_end_like_one_clean_run(
    pairs: list[tuple[str, float]], seed: int, rate: float
) -> None:
    # Given the same messages through a clean world and a faulty one
    batch = as_messages(pairs)
    clean, faulty = world(seed, 0.0), world(seed, rate)
    now = START + 3_600_000

    # When each message is delivered, retried until it succeeds
    for message in batch:
        deliver(clean, message, now)
        deliver(faulty, message, now)

    # and, once every lease has run out, each device is heard from again (an entry
    # whose claim a failed invocation could not release waits for its lease)
    later = now + 24 * 3_600_000
    for device in sorted({d for d, _ in pairs}):
        heartbeat = [{"sensorId": "heartbeat-1", "type": "heartbeat", "value": 1.0}]
        quiet = {"deviceId": device, "timestamp": later, "data": heartbeat}
        deliver(clean, quiet, later, step_ms=LEASE_MS)
        deliver(faulty, quiet, later, step_ms=LEASE_MS)

    # Then the stored data and the final alert state are the clean run's
    assert faulty.timeseries.records == clean.timeseries.records
    for device, record in clean.store.items.items():
        assert faulty.store.items[device].state == record.state
        assert faulty.store.items[device].outbox == []
    # and every transition was published; a repeat only where a fault hit after publishing
    published = Counter(faulty.publisher.published)
    assert set(published) == set(clean.publisher.published)
    assert len(clean.publisher.published) == len(set(clean.publisher.published))
    repeats = sum(n - 1 for n in published.values())
    assert repeats <= faulty.faults.counts["PutItem"] + faulty.faults.counts["Conflict"]
