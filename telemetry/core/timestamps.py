"""Timestamps that are plainly epoch seconds where epoch milliseconds are meant.

Validation takes any whole number from 0 as epoch milliseconds, as the function
must: it cannot tell a mistake from a clock that really says 1970. A history
written by hand is another matter: 1764237600 (2025-11-27T10:00:00Z in seconds)
read as milliseconds is 1970-01-21, and every `for`, flap window and `nodata`
replayed on it is a thousand times too short. A number that names an instant
before 2001 as milliseconds is such a suspect; saying so changes nothing that
validation decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Final, TypeGuard

from telemetry.core.immutable import immutable
from telemetry.core.messages import LATEST_MS, iso_utc

MILLENNIUM_MS: Final = 978_307_200_000
"""2001-01-01T00:00:00Z: a number of milliseconds before it is no device's clock
in a history worth replaying (and every epoch-seconds time since 1970 is)."""

_MESSAGE_TIMES: Final = ("receivedAt", "timestamp")


@immutable
class SecondsSuspect:
    """A timestamp of a message, at `field` (`timestamp`, `data[2].timestamp`),
    whose `value` is a number before 2001 as epoch milliseconds."""

    field: str
    value: int | float

    @property
    def warning(self) -> str:
        """One sentence: what the number says as sent, and what it likely meant:
        epoch seconds only when, as seconds, it is a time since 2001 (1764237600);
        a smaller one (0, 42) is just "before 2001"."""
        meant = self.value * 1000
        if meant >= MILLENNIUM_MS:
            guess = f" ({iso_utc(int(meant))})" if meant <= LATEST_MS else ""
            likely = f": epoch seconds{guess}?"
        else:
            likely = "."
        return (
            f"{self.field} {self.value!r} read as epoch milliseconds is "
            f"{iso_utc(int(self.value))}, before 2001{likely} "
            "Timestamps are epoch milliseconds or ISO-8601"
        )


def looks_like_seconds(raw: object) -> TypeGuard[int | float]:
    """Whether `raw` is a number (not a boolean) before 2001 as epoch milliseconds."""
    if type(raw) is int:
        return 0 <= raw < MILLENNIUM_MS
    return type(raw) is float and math.isfinite(raw) and 0 <= raw < MILLENNIUM_MS


def seconds_suspects(message: object) -> list[SecondsSuspect]:
    """Every timestamp of `message` (its `receivedAt`, its `timestamp`, each
    reading's `timestamp`, in that order) that looks like epoch seconds.
    Anything that is not shaped like a message has none."""
    return list(_suspects(message))


def _suspects(message: object) -> Iterator[SecondsSuspect]:
    if not isinstance(message, dict):
        return
    for name in _MESSAGE_TIMES:
        raw = message.get(name)
        if looks_like_seconds(raw):
            yield SecondsSuspect(name, raw)
    data = message.get("data")
    if not isinstance(data, list):
        return
    for index, reading in enumerate(data):
        raw = reading.get("timestamp") if isinstance(reading, dict) else None
        if looks_like_seconds(raw):
            yield SecondsSuspect(f"data[{index}].timestamp", raw)
