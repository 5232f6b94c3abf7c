"""A device's durable record: its alert state and its outbox.

Pure data, shared by the pipeline (which decides) and the state store adapter
(which persists): one DynamoDB item per device holds exactly this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from telemetry.core.alerts import AlertState, StateKey, Transition


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A committed transition not yet delivered, with who committed it and when."""

    transition: Transition
    owner: str
    enqueued_ms: int

    @property
    def key(self) -> str:
        return self.transition.key

    def to_json(self) -> dict[str, Any]:
        return {"t": self.transition.to_json(), "owner": self.owner, "at": self.enqueued_ms}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> OutboxEntry:
        return cls(Transition.from_json(raw["t"]), str(raw["owner"]), int(raw["at"]))


@dataclass(slots=True)
class DeviceRecord:
    """A device's durable alert state as read, with the version it was read at
    (0: never written)."""

    device_id: str
    version: int = 0
    state: dict[StateKey, AlertState] = field(default_factory=dict)
    outbox: list[OutboxEntry] = field(default_factory=list)
    shadow_stale: bool = False
