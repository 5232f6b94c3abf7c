"""Output for people on a terminal: tables, lines and the words they are made of.

Used by every command of the `telemetry` tool (the CLI, backtest, the demo),
so that none of them imports another for its rendering. rich (the `local`
extra) is imported only here, only when a Screen is made, and only if
installed; without it the output is aligned plain text.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Final, TextIO

from telemetry.core.alerts import Transition
from telemetry.core.messages import iso_utc

COLUMN_GAP: Final = 2


class Screen:
    """Human-readable output on one stream: rich on a terminal when it is
    installed (and `plain` is not asked for); aligned plain text otherwise,
    with no trailing spaces, for pipes and files."""

    def __init__(self, stream: TextIO, *, plain: bool = False) -> None:
        self.stream = stream
        self.console: Any = None
        self._started = False
        if plain or not _is_terminal(stream):
            return
        try:
            from rich.console import Console  # noqa: PLC0415 - optional, and slow to import
        except ImportError:
            return
        self.console = Console(file=stream, highlight=False)

    @property
    def width(self) -> int | None:
        """Columns available, or None when the output has no width (a pipe)."""
        return None if self.console is None else int(self.console.width)

    def line(self, text: str = "", *, style: str | None = None) -> None:
        self._started = True
        if self.console is None:
            print(text, file=self.stream)
            return
        from rich.text import Text  # noqa: PLC0415

        self.console.print(Text(text, style=style or ""))

    def heading(self, text: str) -> None:
        """A bold line, set off from what came before by a blank one."""
        if self._started:
            self.line()
        self.line(text, style="bold")

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        numeric: Collection[int] = (),
        drop: Sequence[int] = (),
    ) -> None:
        """A table; `numeric` columns (by index) are right-aligned. On a screen too
        narrow for it, the `drop` columns go first, in that order; then only the
        last column wraps."""
        cells = [["" if c is None else str(c) for c in row] for row in rows]
        self._started = True
        columns, cells, numeric = _fitted(columns, cells, numeric, drop, self.width)
        if self.console is None:
            self._plain_table(columns, cells, numeric)
            return
        from rich import box  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        # One space of padding and the box's one-space separator: COLUMN_GAP.
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
        last = len(columns) - 1
        for index, name in enumerate(columns):
            table.add_column(
                name, justify="right" if index in numeric else "left", no_wrap=index != last
            )
        for row in cells:
            table.add_row(*(Text(c) for c in row))
        self.console.print(table)

    def _plain_table(
        self, columns: Sequence[str], cells: list[list[str]], numeric: Collection[int]
    ) -> None:
        widths = [max([len(name), *(len(r[i]) for r in cells)]) for i, name in enumerate(columns)]

        def fmt(row: Sequence[str]) -> str:
            parts = [
                v.rjust(w) if i in numeric else v.ljust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        print(fmt(columns), file=self.stream)
        print("  ".join("-" * w for w in widths), file=self.stream)
        for row in cells:
            print(fmt(row), file=self.stream)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def _fitted(
    columns: Sequence[str],
    cells: list[list[str]],
    numeric: Collection[int],
    drop: Sequence[int],
    width: int | None,
) -> tuple[list[str], list[list[str]], set[int]]:
    """The table without its least useful columns until it fits `width`."""
    keep = list(range(len(columns)))
    widths = [max([len(name), *(len(r[i]) for r in cells)]) for i, name in enumerate(columns)]
    for index in drop:
        if width is None or sum(widths[i] for i in keep) + COLUMN_GAP * (len(keep) - 1) <= width:
            break
        keep.remove(index)
    return (
        [columns[i] for i in keep],
        [[row[i] for i in keep] for row in cells],
        {keep.index(i) for i in numeric if i in keep},
    )


def one_line(text: str) -> str:
    """Text with its line breaks and runs of spaces folded: one line on a terminal."""
    return " ".join(text.split())


def duration_text(ms: int) -> str:
    """Compact, for people: 45s, 5m, 12m30s, 3h05m, 2d04h."""
    seconds = ms // 1000
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h" if hours else f"{days}d"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def time_text(ms: int) -> str:
    return iso_utc(ms)[:19] + "Z"


def number_text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


TRANSITION_COLUMNS: Final = (
    "time",
    "device",
    "sensor",
    "status",
    "severity",
    "value",
    "threshold",
    "rule",
)


TRANSITION_DROPPED_FIRST: Final = (6, 5)
"""On a narrow screen the threshold, then the value, make room for the rest."""


def transition_row(t: Transition, *, clock_only: bool = False) -> list[str]:
    """A transition as a table row; `clock_only` shows HH:MM:SS (when the table
    says which day it is)."""
    time = time_text(t.time_ms)
    return [
        time[11:19] if clock_only else time,
        t.device_id,
        t.sensor_id,
        t.status.value,
        t.severity.name,
        number_text(t.value),
        number_text(t.threshold),
        t.rule,
    ]


def render_transition_table(transitions: Sequence[Transition], screen: Screen) -> None:
    """The transitions as a table that a person reads at 80 columns: when they
    fall on one UTC day, the day is said once and the rows show the time of day."""
    if not transitions:
        return
    days = {time_text(t.time_ms)[:10] for t in transitions}
    clock_only = len(days) == 1
    columns = list(TRANSITION_COLUMNS)
    if clock_only:
        columns[0] = "UTC"
        screen.line(f"on {days.pop()}, times UTC")
    rows = [transition_row(t, clock_only=clock_only) for t in transitions]
    screen.table(columns, rows, numeric=(5, 6), drop=TRANSITION_DROPPED_FIRST)
