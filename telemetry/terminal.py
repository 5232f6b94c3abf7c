"""Output for people on a terminal: tables, lines and the words they are made of.

Used by every command of the `telemetry` tool (the CLI, backtest, the demo),
so that none of them imports another for its rendering. rich (the `local`
extra) is imported only here, only when a Screen is made, and only if
installed; without it the output is aligned plain text.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Final, TextIO

from telemetry.core.alerts import NODATA, Transition
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

    def line(self, text: str = "", *, style: str | None = None, hang: int | None = None) -> None:
        """A line; on a terminal too narrow for it, wrapped at words, the lines
        after the first indented by `hang` spaces (None: rich's own wrap)."""
        self._started = True
        if self.console is None:
            print(text, file=self.stream)
            return
        from rich.text import Text  # noqa: PLC0415

        width = self.width or 0
        if hang is None or len(text) <= width:
            self.console.print(Text(text, style=style or ""))
            return
        for part in _wrapped(text, width, hang):
            self.console.print(Text(part, style=style or ""))

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
        fold: Sequence[int] = (),
        wrap: int | None = None,
    ) -> None:
        """A table; `numeric` columns (by index) are right-aligned.

        In a pipe every column is shown in full, one row a line, whatever the
        width, headers on one line. On a terminal nothing is cut or dropped:
        the `wrap` column (default the last, unless numeric) wraps within its
        cell, a header breaks at its line breaks; on a screen still too narrow,
        the `fold` columns leave the row, in that order, for a second line
        under it ("name value")."""
        cells = [["" if c is None else str(c) for c in row] for row in rows]
        self._started = True
        if self.console is None:
            self._plain_table([" ".join(c.split()) for c in columns], cells, numeric)
            return
        last = len(columns) - 1
        wrapping = (None if last in numeric else last) if wrap is None else wrap
        self._terminal_table(columns, cells, numeric, fold, wrapping)

    def _terminal_table(
        self,
        columns: Sequence[str],
        cells: list[list[str]],
        numeric: Collection[int],
        fold: Sequence[int],
        wrapping: int | None,
    ) -> None:
        """The table laid out for a terminal `self.width` wide (see `table`)."""
        from rich.text import Text  # noqa: PLC0415

        width = self.width or 0
        kept = _fitting(columns, cells, wrapping, fold, width)
        widths = {i: _column_width(columns[i], cells, i) for i in kept}
        total = sum(widths.values()) + COLUMN_GAP * (len(kept) - 1)
        if total > width and wrapping is not None and wrapping in widths:
            widths[wrapping] = max(1, widths[wrapping] - (total - width))
            total = width

        def lines(row: Sequence[str], *, header: bool = False) -> list[str]:
            """One row as its lines: the wrapping cell, or a header, over several."""
            stacked = {i: _cell_lines(row[i], widths[i], wrap=i == wrapping) for i in kept}
            height = max(len(c) for c in stacked.values())
            out = []
            for n in range(height):
                parts = []
                for i in kept:
                    cell = stacked[i]
                    # Headers sit at the bottom of their cell, values at the top.
                    top = height - len(cell) if header else 0
                    text = cell[n - top] if top <= n < top + len(cell) else ""
                    parts.append(text.rjust(widths[i]) if i in numeric else text.ljust(widths[i]))
                out.append("  ".join(parts).rstrip())
            return out

        for line in lines(columns, header=True):
            self.console.print(Text(line, style="bold"))
        self.console.print(Text("─" * min(width, total)))
        indent = widths[kept[0]] + COLUMN_GAP
        folded = [i for i in range(len(columns)) if i not in kept]
        for row in cells:
            for line in lines(row):
                self.console.print(Text(line))
            second = "  ".join(f"{' '.join(columns[i].split())} {row[i]}" for i in folded if row[i])
            if second:
                for part in _wrapped(" " * indent + second, width, indent):
                    self.console.print(Text(part, style="dim"))

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


def _cell_lines(text: str, width: int, *, wrap: bool) -> list[str]:
    """A cell's lines: its own line breaks (headers), and for the wrapping
    column the text wrapped to `width`, a word too long cut rather than lost."""
    import textwrap  # noqa: PLC0415

    lines = text.split("\n")
    if not wrap:
        return lines
    return [
        part
        for line in lines
        for part in (textwrap.wrap(line, width=width, break_on_hyphens=False) or [""])
    ]


def _wrapped(text: str, width: int, hang: int) -> list[str]:
    """`text` in lines of at most `width` (a word longer than that stays whole),
    the lines after the first indented by `hang` spaces."""
    import textwrap  # noqa: PLC0415

    lead = len(text) - len(text.lstrip(" "))
    return textwrap.wrap(
        text.lstrip(" "),
        width=max(width, hang + 10),
        initial_indent=" " * lead,
        subsequent_indent=" " * hang,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [text]


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


MIN_WRAPPED_WIDTH: Final = 16
"""A wrapping column narrower than this reads as a column of word fragments."""


def _column_width(name: str, cells: list[list[str]], index: int) -> int:
    return max([*(len(part) for part in name.split("\n")), *(len(r[index]) for r in cells)])


def _fitting(
    columns: Sequence[str],
    cells: list[list[str]],
    wrapping: int | None,
    fold: Sequence[int],
    width: int,
) -> list[int]:
    """The columns that stay in the row on a screen `width` wide: all when they
    fit (the wrapping one needing only enough room to wrap readably), else all
    but the first `fold` columns that make them fit."""
    keep = list(range(len(columns)))

    def needed() -> int:
        widths = [
            min(_column_width(columns[i], cells, i), MIN_WRAPPED_WIDTH)
            if i == wrapping
            else _column_width(columns[i], cells, i)
            for i in keep
        ]
        return sum(widths) + COLUMN_GAP * (len(keep) - 1)

    for index in fold:
        if needed() <= width:
            break
        keep.remove(index)
    return keep


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


TRANSITION_FOLDED_FIRST: Final = (7, 6)
"""On a narrow screen the rule, then the threshold, go to a second line under
the row: the time, the device, the change and its value stay in the row."""


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
        threshold_text(t),
        t.rule,
    ]


def threshold_text(t: Transition) -> str:
    """The level crossed; for a no-data alert, its window (`60s silent`), which
    is a time, not a level of the reading."""
    if t.direction == NODATA and t.threshold is not None:
        return f"{duration_text(round(t.threshold * 1000))} silent"
    return number_text(t.threshold)


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
    screen.table(columns, rows, numeric=(5, 6), fold=TRANSITION_FOLDED_FIRST)
