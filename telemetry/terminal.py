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


class Screen:
    """Human-readable output on one stream: rich when it is installed (and
    `plain` is not asked for), aligned plain text otherwise."""

    def __init__(self, stream: TextIO, *, plain: bool = False) -> None:
        self.stream = stream
        self.console: Any = None
        self._started = False
        if plain:
            return
        try:
            from rich.console import Console  # noqa: PLC0415 - optional, and slow to import
        except ImportError:
            return
        terminal = stream.isatty()
        self.console = Console(
            file=stream, width=None if terminal else 120, highlight=False, soft_wrap=not terminal
        )

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
    ) -> None:
        """A table; `numeric` columns (by index) are right-aligned; only the
        last column wraps when the screen is too narrow."""
        cells = [["" if c is None else str(c) for c in row] for row in rows]
        self._started = True
        if self.console is None:
            self._plain_table(columns, cells, numeric)
            return
        from rich import box  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
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


def transition_row(t: Transition) -> list[str]:
    return [
        time_text(t.time_ms),
        t.device_id,
        t.sensor_id,
        t.status.value,
        t.severity.name,
        number_text(t.value),
        number_text(t.threshold),
        t.rule,
    ]
