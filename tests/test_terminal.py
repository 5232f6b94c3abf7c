"""Tables for people: every column a person needs is readable at 80 columns on a
terminal, and plain output for pipes has no trailing padding."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from rich.console import Console

from telemetry.core.alerts import Severity, Status, Transition
from telemetry.terminal import TRANSITION_COLUMNS, Screen, render_transition_table

NOW = 1_764_237_600_000


def transition(device: str, status: Status, value: float, minute: int) -> Transition:
    return Transition(
        alert_id="dbbd7dc4a8e510e50479dbf9bca3ce58",
        status=status,
        severity=Severity.WARNING if status is Status.RAISED else Severity.OK,
        previous_severity=Severity.OK if status is Status.RAISED else Severity.WARNING,
        device_id=device,
        sensor_id="temp-1",
        rule="temperature-high",
        value=value,
        threshold=75.0 if status is Status.RAISED else 73.0,
        time_ms=NOW + minute * 60_000,
        since_ms=NOW,
        direction="above",
    )


TRANSITIONS = [
    transition("compressor-0002", Status.RAISED, 85.47, 1),
    transition("compressor-0002", Status.DEESCALATED, 86.0, 2),
    transition("compressor-0002", Status.RESOLVED, 58.6, 3),
]


def on_terminal(width: int) -> tuple[Screen, io.StringIO]:
    out = io.StringIO()
    screen = Screen(out)
    screen.console = Console(file=out, width=width, force_terminal=True, color_system=None)
    return screen, out


@pytest.mark.parametrize("width", [80, 100])
def test_the_alerts_table_is_readable_on_a_narrow_terminal(width: int) -> None:
    # Given a terminal of 80 or 100 columns
    screen, out = on_terminal(width)

    # When transitions are shown
    render_transition_table(TRANSITIONS, screen)

    # Then no line is wider than the terminal, and no cell a person needs is cut
    # or dropped: the value and the level crossed stay in the row
    lines = out.getvalue().splitlines()
    assert all(len(line) <= width for line in lines)
    assert "…" not in out.getvalue()
    rows = [i for i, line in enumerate(lines) if "compressor-0002" in line]
    assert len(rows) == 3
    for i, status, value, threshold in zip(
        rows,
        ("RAISED", "DEESCALATED", "RESOLVED"),
        ("85.47", "86", "58.6"),
        ("75", "73", "73"),
        strict=True,
    ):
        cells = lines[i].split()
        assert cells[1:4] == ["compressor-0002", "temp-1", status]
        assert cells[5:7] == [value, threshold]
        # and the rule is in the row when it fits (100), else alone on the line under it
        if width >= 100:
            assert lines[i].split()[-1] == "temperature-high"
        else:
            assert lines[i + 1].split() == ["rule", "temperature-high"]


def test_a_no_data_alert_shows_its_window_as_a_time_not_a_level() -> None:
    # Given a no-data transition (its threshold is the window, in seconds)
    silent = replace(TRANSITIONS[0], direction="nodata", threshold=300.0, rule="heartbeat")

    # When it is shown beside a threshold alert, in a pipe and on a terminal
    piped = io.StringIO()
    render_transition_table([TRANSITIONS[0], silent], Screen(piped))
    screen, shown = on_terminal(100)
    render_transition_table([TRANSITIONS[0], silent], screen)

    # Then its threshold cell says a silence of five minutes, the other a level
    for text in (piped.getvalue(), shown.getvalue()):
        rows = [line for line in text.splitlines() if "compressor-0002" in line]
        assert "5m silent  heartbeat" in rows[1]
        assert rows[0].split()[6] == "75"


@pytest.mark.parametrize("width", [60, 80, 100])
def test_a_table_on_a_terminal_cuts_nothing(width: int) -> None:
    # Given a cost table: a long unit column, two-line headers, long numbers
    columns = ("item", "unit", "per\nmessage", "USD per\nunit", "USD per 1M\nmessages")
    rows = [
        ["Kinesis on-demand data out", "GB read", "0.0000009601", "0.04", "0.0384"],
        ["DynamoDB index reads", "eventually consistent read (4 KB)", "1.1812", "0.0000000625",
         "0.0738"],
    ]  # fmt: skip
    screen, out = on_terminal(width)

    # When it is shown on a terminal of that width
    screen.table(columns, rows, numeric=(2, 3, 4), wrap=1, fold=(3, 2))

    # Then no line is wider than the terminal, nothing is cut, and every value is
    # there: each price in its row or on the line under it
    text = out.getvalue()
    assert all(len(line) <= width for line in text.splitlines())
    assert "…" not in text
    words = text.split()
    for row in rows:
        for cell in row:
            assert all(word in words for word in cell.split()), cell
    # and the values per million, the reason for the table, stay in the rows
    assert any(line.rstrip().endswith("0.0384") for line in text.splitlines())


def test_a_pipe_gets_every_column_in_full_whatever_the_width() -> None:
    # Given output to a pipe (a terminal's COLUMNS does not apply)
    out = io.StringIO()

    # When a table with two-line headers and a long cell is shown
    Screen(out).table(
        ("item", "USD per\nunit"), [["DynamoDB index reads " * 5, "0.0000000625"]], numeric=(1,)
    )

    # Then headers are one line, and every row is one line, however long
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["item", "USD", "per", "unit"]
    assert len(lines) == 3
    assert lines[2].endswith("0.0000000625")


def test_a_long_line_wraps_under_its_text_on_a_terminal_and_not_in_a_pipe() -> None:
    # Given a line longer than 80 columns, with a hanging indent
    text = "     expected: " + " ".join(["RAISED WARNING, ESCALATED CRITICAL"] * 4)
    screen, out = on_terminal(80)
    piped = io.StringIO()

    # When it is shown on a terminal and in a pipe
    screen.line(text, hang=15)
    Screen(piped).line(text, hang=15)

    # Then on the terminal the lines after the first start under the text, none
    # wider than the screen; in the pipe it is one line
    lines = out.getvalue().splitlines()
    assert len(lines) > 1
    assert all(len(line) <= 80 for line in lines)
    assert all(line.startswith(" " * 15) and line[15] != " " for line in lines[1:])
    assert " ".join(out.getvalue().split()) == " ".join(text.split())
    assert piped.getvalue() == text + "\n"


def test_plain_tables_for_pipes_have_no_trailing_padding() -> None:
    # Given output to a pipe
    out = io.StringIO()

    # When a table is shown
    render_transition_table(TRANSITIONS, Screen(out))

    # Then every column is there, and no line ends in spaces
    lines = out.getvalue().splitlines()
    assert lines[0] == "on 2025-11-27, times UTC"
    assert lines[1].split() == ["UTC", *TRANSITION_COLUMNS[1:]]
    assert all(line == line.rstrip() for line in lines)
