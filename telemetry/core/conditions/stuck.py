"""`stuck`: a sensor that has reported the same value, within ±tolerance, for
`for` of event time, and reported at least STUCK_READINGS times in that span
(so a sensor that reports once a day is never stuck).

The memo is the current run: when it started, the value it started at, whether
it has been called stuck, and the times of its last STUCK_READINGS readings. A
reading more than `tolerance` from the run's first value starts a new run (and
resolves a stuck alert). Time alone never ends a run: without a reading nothing
is measured, and the sweep invents none.
"""

from __future__ import annotations

from typing import Any, Final

from telemetry.core.conditions import Measure, Memo, fault
from telemetry.core.immutable import immutable
from telemetry.core.messages import Reading

STUCK_READINGS: Final = 3


@immutable
class Stuck:
    """Unchanged within ±`tolerance` for `for_ms`; `threshold` is `for` in seconds."""

    for_ms: int
    tolerance: float
    kind: str = "stuck"

    def update(self, memo: Memo, reading: Reading) -> tuple[Memo, Measure | None]:
        now, value = reading.time_ms, reading.value
        times: tuple[int, ...]
        if not memo or abs(value - memo[1]) > self.tolerance:
            start, first, was, times = now, value, False, (now,)
        else:
            start, first, was = int(memo[0]), memo[1], memo[2] == 1
            times = (*(int(t) for t in memo[3:]), now)[-STUCK_READINGS:]
        since = now - self.for_ms
        stuck = was or (start <= since and len(times) == STUCK_READINGS and times[0] >= since)
        after: Memo = (start, first, 1 if stuck else 0, *times)
        return after, fault(stuck, value, self.for_ms / 1000)

    def quiet_band(self) -> tuple[float, float] | None:
        return None  # every reading updates the memo

    def to_json(self) -> list[Any]:
        return [self.kind, self.for_ms, self.tolerance]
