"""A device's durable record: its alert state and its outbox.

Pure data, shared by the pipeline (which decides) and the state store adapter
(which persists): the state store keeps exactly this per device.

The outbox holds transitions committed with the state but not yet delivered.
Each entry is claimed by the invocation that is delivering it, until a lease
ends: of two invocations running at once (a duplicate delivery overlapping
the first run), only the claimant publishes; an entry whose claimant failed
is released, or its lease runs out, and the next invocation delivers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from telemetry.core.alerts import AlertState, StateKey, Transition
from telemetry.core.connectivity import Connection, Presence, heard_at_ms, paused_as_recorded
from telemetry.core.flapping import due_ms as flapping_due_ms
from telemetry.core.immutable import immutable
from telemetry.core.operators import operator_due_ms
from telemetry.core.silence import next_due_ms

SHADOW_REPAIR_DELAY_MS: Final = 60_000
"""How long after a shadow mirror update failed in a way a retry may mend
(throttled, a 5xx, a race with another invocation) the scheduled sweep rewrites
the mirror whole, unless an invocation of the device did meanwhile: a device
that stops sending keeps no wrong shadow. Each failed repair puts the next one
off by as much; a failure no retry mends waits for the device's next message."""


@immutable
class OutboxEntry:
    """A committed transition not yet delivered.

    `owner` is the event that committed it (its fingerprint), `enqueued_ms`
    when. `claimant` is the invocation delivering it, which no other
    invocation may take it from before `lease_ms` (epoch ms); None when free.
    """

    transition: Transition
    owner: str
    enqueued_ms: int
    claimant: str | None = None
    lease_ms: int = 0

    @property
    def key(self) -> str:
        return self.transition.key

    def free_for(self, invocation: str, now_ms: int) -> bool:
        """Whether `invocation` may deliver this entry now."""
        return self.claimant is None or self.claimant == invocation or self.lease_ms <= now_ms

    def claimed(self, invocation: str | None, lease_ms: int = 0) -> OutboxEntry:
        return replace(self, claimant=invocation, lease_ms=lease_ms if invocation else 0)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "t": self.transition.to_json(),
            "owner": self.owner,
            "at": self.enqueued_ms,
        }
        if self.claimant is not None:
            out |= {"claim": self.claimant, "lease": self.lease_ms}
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> OutboxEntry:
        claimant = raw.get("claim")
        return cls(
            Transition.from_json(raw["t"]),
            str(raw["owner"]),
            int(raw["at"]),
            None if claimant is None else str(claimant),
            int(raw.get("lease", 0)),
        )


@dataclass(slots=True)
class DeviceRecord:
    """A device's durable alert state as read, with the version it was read at
    (0: never written). `parts` is the state store's own business: how many
    extra items it used to hold a record too large for one. `presence` is what
    it knows of the device's connection and its gateway's outages; `gateway`
    the gateway it sits behind (its first), written with the record so that a
    gateway can count its members that are down.

    `shadow_stale`: the shadow mirror missed an update, so the next delivery
    rewrites it whole. `shadow_stale_ms`: when it last failed in a way a retry may
    mend (epoch ms), which makes the device due for the sweep
    SHADOW_REPAIR_DELAY_MS later; None when no retry will mend it, or when the
    record was written before this was kept (the device's next invocation
    rewrites the mirror then)."""

    device_id: str
    version: int = 0
    state: dict[StateKey, AlertState] = field(default_factory=dict)
    outbox: list[OutboxEntry] = field(default_factory=list)
    shadow_stale: bool = False
    parts: int = 0
    shadow_stale_ms: int | None = None
    presence: Presence = field(default_factory=Presence)
    gateway: str | None = None

    @property
    def connection(self) -> Connection | None:
        """The device's last applied lifecycle event (None: never one)."""
        return self.presence.connection

    def due_ms(self) -> int | None:
        """When the scheduled sweep next has something to do for this device: a
        tracked sensor that may fall silent (not while the device is offline with
        an offline alert to explain it), an offline alert to raise, a snooze
        ending, a reminder, a flapping key quiet long enough for its STABLE, an
        outbox entry to deliver, or a stale mirror to rewrite. None: nothing.

        An outbox entry is due from when it was committed, claimed or not: a
        retried sweep, whose request id is its first attempt's, must find the
        entries that attempt claimed and could not release (its commit's answer
        lost); any other sweep reads the device and leaves them to their
        claimant until the lease ends."""
        presence = self.presence
        connection = presence.connection
        due = [
            next_due_ms(
                self.state,
                paused=paused_as_recorded(self.state, presence),
                from_ms=presence.windows_from_ms,
            ),
            operator_due_ms(self.state),
            flapping_due_ms(self.state),
            connection.check_ms if connection is not None else None,
        ]
        due += [e.enqueued_ms for e in self.outbox]
        if self.shadow_stale and self.shadow_stale_ms is not None:
            due.append(self.shadow_stale_ms + SHADOW_REPAIR_DELAY_MS)
        known = [d for d in due if d is not None]
        return min(known) if known else None

    def heard_at_ms(self) -> int | None:
        """The latest arrival the record knows of its device (0 while offline;
        None: none known): the sort key of the gateway index."""
        return heard_at_ms(self.state, self.presence)
