"""`range`: values a working sensor can produce. A reading outside is a fault
of the sensor, not of the process: the evaluator keeps it out of every other
rule of that sensor (telemetry.core.alerts.evaluate), and this condition
raises it. Nothing is kept per key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from telemetry.core.conditions import Measure, Memo, fault
from telemetry.core.messages import Reading


@dataclass(frozen=True, slots=True)
class Range:
    """Outside [`low`, `high`] is a fault; `threshold` is the bound crossed
    (inside: the nearer bound)."""

    low: float
    high: float
    kind: str = "range"

    def outside(self, value: float) -> bool:
        return value < self.low or value > self.high

    def update(self, memo: Memo, reading: Reading) -> tuple[Memo, Measure | None]:
        value = reading.value
        nearer = self.low if value - self.low < self.high - value else self.high
        return (), fault(self.outside(value), value, nearer)

    def to_json(self) -> list[Any]:
        return [self.kind, self.low, self.high]
