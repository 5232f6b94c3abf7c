"""The replay's output written without its general encoder says the same bytes.

`--format jsonl` writes the common transition field by field (the hot path of a
replay's output); every line must be what `json.dumps(to_json())` gives.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace

from hypothesis import given, settings

from telemetry.backtest import jsonl_line, write_jsonl
from telemetry.core.alerts import Severity, Status, Transition
from tests.strategies import NOW_MS, wire_transitions


def _encoded(t: Transition) -> str:
    return json.dumps(t.to_json(), separators=(",", ":")) + "\n"


@settings(max_examples=400)
@given(wire_transitions())
def test_a_transition_line_is_what_the_encoder_writes(transition: Transition) -> None:
    # Given any transition
    # When it is written as a jsonl line
    line = jsonl_line(transition)
    # Then the line is the encoder's, byte for byte
    assert line == _encoded(transition)


def test_the_common_transition_is_written_as_the_encoder_would() -> None:
    # Given a level's change with every common field, text to escape among them
    raised = Transition(
        alert_id="a" * 32,
        status=Status.RAISED,
        severity=Severity.WARNING,
        previous_severity=Severity.OK,
        device_id="pump-7",
        sensor_id="temp:1",
        rule='temp\u00e9-"high"',
        value=75.25,
        threshold=75.0,
        time_ms=NOW_MS + 123,
        since_ms=NOW_MS,
        direction="above",
        type="temperature",
        location="hall \u2603",
        unit="\u00b0C",
        rules_version="sha256:" + "f" * 64,
    )
    # When it and its resolution are written
    resolved = replace(raised, status=Status.RESOLVED, value=None)
    out = io.StringIO()
    write_jsonl([raised, resolved], out)
    # Then each line is the encoder's
    assert out.getvalue() == _encoded(raised) + _encoded(resolved)
    assert json.loads(out.getvalue().splitlines()[0])["rule"] == 'temp\u00e9-"high"'
