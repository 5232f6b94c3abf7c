"""`spike`: a reading that differs from the previous one by more than `jump`.

Measured from the previous reading, so a one-reading glitch (10, 40, 10, 11)
jumps twice and resolves at 11, the first reading that does not jump. The memo
is the previous value."""

from __future__ import annotations

from typing import Any

from telemetry.core.conditions import Measure, Memo, fault
from telemetry.core.immutable import immutable
from telemetry.core.messages import Reading


@immutable
class Spike:
    """|value - previous value| > `jump`; `value` is the absolute jump."""

    jump: float
    kind: str = "spike"

    def update(self, memo: Memo, reading: Reading) -> tuple[Memo, Measure | None]:
        if not memo:
            return (reading.value,), None
        jumped = abs(reading.value - memo[0])
        return (reading.value,), fault(jumped > self.jump, jumped, self.jump)

    def quiet_band(self) -> tuple[float, float] | None:
        return None  # every reading updates the memo

    def to_json(self) -> list[Any]:
        return [self.kind, self.jump]
