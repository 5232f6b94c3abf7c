"""Tables for people: every column a person needs is readable at 80 columns on a
terminal, and plain output for pipes has no trailing padding."""

from __future__ import annotations

import io

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
    lines = out.getvalue().splitlines()
    assert all(len(line) <= width for line in lines)
    assert "…" not in out.getvalue()
    rows = [line for line in lines if "compressor-0002" in line]
    assert len(rows) == 3
    for row, status in zip(rows, ("RAISED", "DEESCALATED", "RESOLVED"), strict=True):
        assert status in row
        assert "temperature-high" in row
        assert "temp-1" in row


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
