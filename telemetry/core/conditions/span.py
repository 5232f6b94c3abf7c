"""`range`: values a working sensor can produce. A reading outside is a fault
of the sensor, not of the process: the evaluator keeps it out of every other
rule of that sensor (telemetry.core.alerts.evaluate), and this condition
raises it. Nothing is kept per key."""

from __future__ import annotations

import math
from typing import Any

from telemetry.core.conditions import Measure, Memo, fault
from telemetry.core.immutable import immutable
from telemetry.core.messages import Reading


@immutable
class Range:
    """Outside [`low`, `high`] (None: unbounded there) is a fault; `threshold`
    is the bound crossed (inside: the nearer bound)."""

    low: float | None
    high: float | None
    kind: str = "range"

    def outside(self, value: float) -> bool:
        return (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        )

    def update(self, memo: Memo, reading: Reading) -> tuple[Memo, Measure | None]:
        value = reading.value
        if self.low is None or (self.high is not None and value - self.low >= self.high - value):
            nearer = self.high
        else:
            nearer = self.low
        return (), fault(self.outside(value), value, nearer if nearer is not None else value)

    def quiet_band(self) -> tuple[float, float] | None:
        low = -math.inf if self.low is None else self.low
        return low, math.inf if self.high is None else self.high

    def to_json(self) -> list[Any]:
        return [self.kind, self.low, self.high]
