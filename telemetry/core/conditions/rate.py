"""`rate`: the change per `per`, measured over the last `over` of readings.

The slope is a least-squares fit over the window, not first-to-last: a noisy
reading at either end of the window moves a first-to-last slope by its whole
error divided by the window, and would raise or resolve a rate alert on its
own; the fit spreads it over every point. The window is built in event time
and keeps at most RATE_POINTS_MAX points: past that, the point closest in
time to its predecessor goes (never the oldest or the newest), so the window
still spans `over` and the slope stays a fit of its shape.
"""

from __future__ import annotations

from typing import Any, Final

from telemetry.core.conditions import Measure, Memo
from telemetry.core.immutable import immutable
from telemetry.core.messages import Reading

RATE_POINTS_MAX: Final = 32
"""Points a rate window keeps. Stored as [time ms, value] pairs: about 22
bytes a point in the state's JSON, so at most about 700 bytes a key: some 550
rate keys fill a device's 400 KB item."""


@immutable
class Rate:
    """Signed change per `per_ms`, over readings within `over_ms` of the newest;
    measurable once the window holds two readings at least `per_ms`/2 apart."""

    per_ms: int
    over_ms: int
    kind: str = "rate"

    def update(self, memo: Memo, reading: Reading) -> tuple[Memo, Measure | None]:
        now = reading.time_ms
        start = now - self.over_ms
        kept = [(int(memo[i]), memo[i + 1]) for i in range(0, len(memo), 2) if memo[i] >= start]
        kept.append((now, reading.value))
        while len(kept) > RATE_POINTS_MAX:
            gaps = [kept[i][0] - kept[i - 1][0] for i in range(1, len(kept) - 1)]
            del kept[1 + gaps.index(min(gaps))]
        after: Memo = tuple(x for point in kept for x in point)
        if len(kept) < 2 or now - kept[0][0] < self.per_ms / 2:
            return after, None
        slope = slope_per_ms(kept) * self.per_ms
        return after, Measure(slope, slope)

    def quiet_band(self) -> tuple[float, float] | None:
        return None  # every reading updates the memo

    def to_json(self) -> list[Any]:
        return [self.kind, self.per_ms, self.over_ms]


def slope_per_ms(points: list[tuple[int, float]]) -> float:
    """The least-squares slope of (time ms, value) points (two at least, not all
    at one time), per millisecond."""
    t0 = points[0][0]
    n = len(points)
    mean_t = sum(t - t0 for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    num = sum((t - t0 - mean_t) * (v - mean_v) for t, v in points)
    den = sum((t - t0 - mean_t) ** 2 for t, _ in points)
    return num / den
