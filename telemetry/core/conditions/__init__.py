"""Conditions: what a rule measures, apart from what the alarm does about it.

A condition is a small pure unit. It keeps a bounded memo per key (device,
sensor, rule), says how one reading updates it, and reports a `Measure`: the
level the alarm state machine (telemetry.core.alerts) compares with the rule's
levels, the `value` operators are told, and the `threshold` it crossed. The
machine (`for`, hysteresis, latch, episodes, late data, operators' state) is
the same for every kind; a rule without a condition measures the reading's
own value (levels `above`/`below`, the fast path).

Adding a kind is one module here: an immutable record
(telemetry.core.immutable) with `kind`, `update`, `to_json`, and an entry in
`KINDS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

from telemetry.core.immutable import immutable
from telemetry.core.messages import Reading

Memo = tuple[float, ...]
"""What a condition keeps per key between readings: numbers only (times as
ints), stored as a JSON list; () when it keeps nothing."""

FAULT: Final = 1.0
"""The level a fault-like condition (stuck, spike, range) reports while the
fault holds; 0.0 otherwise. Its rule's one level sits at FAULT_LEVEL."""
FAULT_LEVEL: Final = 0.5


@immutable
class Measure:
    """What a condition measured on one reading: `level` is compared with the
    rule's levels, `value` is what transitions report, `threshold` (None: the
    level crossed, as for a value) what they say was crossed."""

    level: float
    value: float
    threshold: float | None = None


class Condition(Protocol):
    """What one kind of condition promises the alarm state machine."""

    @property
    def kind(self) -> str:
        """The `direction` of its alerts' transitions."""
        ...

    def update(self, memo: Memo, reading: Reading) -> tuple[Memo, Measure | None]:
        """The memo after `reading` (newer than every reading in `memo`), and what
        it measures then (None: not measurable yet; the alarm is not evaluated)."""
        ...

    def to_json(self) -> list[Any]:
        """Its settings as JSON values (the compiled rules cache)."""
        ...

    def quiet_band(self) -> tuple[float, float] | None:
        """Reading values that change nothing on a key with no alert and no memo
        (the evaluator skips them); None when every reading counts."""
        ...


def fault(held: bool, value: float, threshold: float) -> Measure:
    """The measure of a fault-like condition."""
    return Measure(FAULT if held else 0.0, value, threshold)


def condition_from_json(data: Sequence[Any]) -> Condition:
    """The condition `to_json` made `data` of: [kind, settings...]."""
    from telemetry.core.conditions.rate import Rate  # noqa: PLC0415 - one registry, no cycle
    from telemetry.core.conditions.span import Range  # noqa: PLC0415
    from telemetry.core.conditions.spike import Spike  # noqa: PLC0415
    from telemetry.core.conditions.stuck import Stuck  # noqa: PLC0415

    kind, *settings = data
    made: dict[str, type[Rate | Stuck | Spike | Range]] = {
        "rate": Rate,
        "stuck": Stuck,
        "spike": Spike,
        "range": Range,
    }
    return made[kind](*settings)


KINDS: Final = ("rate", "stuck", "spike", "range")
"""The kinds of condition a rule may have besides levels (their `direction`)."""
