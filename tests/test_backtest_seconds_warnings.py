"""`telemetry backtest --warnings FILE`: every timestamp that looks like epoch seconds,
with its file and line, however many lines have one (stderr shows the first 20)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry import backtest
from telemetry.core.rules import load_rules
from telemetry.core.timestamps import seconds_suspects
from telemetry.local.seconds_warnings import SecondsWarningWriter
from tests.strategies import messages, messages_with_seconds, mutated_messages
from tests.test_backtest_rejections import ENTRY_FIELDS, SECONDS, entries, line, reading
from tests.test_cli import RULES, T0, WORKED_RULE, telemetry

WARNING_FIELDS = ENTRY_FIELDS | {"replayed"}


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "hot.yaml"
    path.write_text(WORKED_RULE)
    return path


def test_every_line_in_seconds_is_in_the_file_past_the_twenty_on_stderr(
    tmp_path: Path, rules: Path
) -> None:
    # Given a history of 25 lines written in epoch seconds
    history = tmp_path / "history.jsonl"
    history.write_text(
        "\n".join(line([reading(70)], timestamp=SECONDS + 60 * i) for i in range(25)) + "\n"
    )
    warned = tmp_path / "warned.jsonl"

    # When it is backtested with --warnings
    result = telemetry(
        "backtest", "--rules", str(rules), "--format", "jsonl", "--warnings", str(warned),
        str(history),
    )  # fmt: skip

    # Then stderr still shows 20 and says where the rest are
    assert result.returncode == 0, result.stderr
    assert sum(": warning: " in x for x in result.stderr.splitlines()) == 20
    assert (
        f"(further lines with such timestamps are counted, not shown) every one is in {warned}"
        in result.stderr
    )
    # and the file has every one of the 25, with its line, field and the same sentence
    found = entries(warned)
    assert [set(e) for e in found] == [WARNING_FIELDS] * 25
    assert [(e["file"], e["line"], e["code"], e["field"]) for e in found] == [
        (str(history), n, "epoch_seconds", "timestamp") for n in range(1, 26)
    ]
    first = next(x for x in result.stderr.splitlines() if x.startswith(f"{history}:1: warning: "))
    assert found[0]["warning"] == first.split(": warning: ", 1)[1]
    assert all(e["detail"] == e["warning"] for e in found)
    assert all(e["reason"] == f"epoch_seconds: timestamp: {e['warning']}" for e in found)
    # and each was replayed (as milliseconds), the payload the message as written
    assert all(e["replayed"] is True and e["deviceId"] == "pump-17" for e in found)
    assert found[3]["payload"] == json.loads(history.read_text().splitlines()[3])
    assert f"Epoch-seconds warnings written to {warned}: on 25 lines " in result.stderr


def test_without_the_flag_the_note_names_it(tmp_path: Path, rules: Path) -> None:
    # Given 21 lines in seconds
    history = tmp_path / "history.jsonl"
    history.write_text(
        "\n".join(line([reading(70)], timestamp=SECONDS + 60 * i) for i in range(21)) + "\n"
    )

    # When it is backtested without --warnings
    result = telemetry("backtest", "--rules", str(rules), "--format", "jsonl", str(history))

    # Then the note says how to list them all, and no file is mentioned
    assert "counted, not shown) --warnings FILE lists every one" in result.stderr
    assert "Epoch-seconds warnings written" not in result.stderr


def test_replayed_says_whether_what_the_timestamp_dates_was_replayed(
    tmp_path: Path, rules: Path
) -> None:
    # Given a line rejected whole (no deviceId) in seconds, a reading rejected for its
    # fractional second, its neighbour in seconds and accepted, and one good line
    history = tmp_path / "history.jsonl"
    history.write_text(
        "\n".join([
            json.dumps({"device": "pump-17", "timestamp": SECONDS, "data": [reading(70)]}),
            line([reading(71, timestamp=SECONDS + 0.5), reading(72, timestamp=SECONDS)],
                 timestamp=T0),
            line([reading(73)], timestamp=T0),
        ]) + "\n"
    )  # fmt: skip
    warned = tmp_path / "warned.jsonl"

    # When it is backtested with --warnings
    result = telemetry(
        "backtest", "--rules", str(rules), "--format", "jsonl", "--warnings", str(warned),
        str(history),
    )  # fmt: skip

    # Then one entry per timestamp, each saying whether it was replayed
    assert result.returncode == 0, result.stderr
    assert [(e["line"], e["field"], e["replayed"], e["deviceId"]) for e in entries(warned)] == [
        (1, "timestamp", False, None),
        (2, "data[0].timestamp", False, "pump-17"),
        (2, "data[1].timestamp", True, "pump-17"),
    ]
    # and the payload is what the timestamp dates: the message, or the one reading
    payloads = [e["payload"] for e in entries(warned)]
    assert payloads[0]["device"] == "pump-17"
    assert payloads[1:] == [
        reading(71, timestamp=SECONDS + 0.5),
        reading(72, timestamp=SECONDS),
    ]


def test_one_file_for_rejections_and_warnings(tmp_path: Path, rules: Path) -> None:
    # Given a line in seconds and a line with a bad value
    history = tmp_path / "history.jsonl"
    history.write_text(
        line([reading(70)], timestamp=SECONDS) + "\n" + line([reading("x")], timestamp=T0) + "\n"
    )
    both = tmp_path / "both.jsonl"

    # When --rejections and --warnings name the same file
    result = telemetry(
        "backtest", "--rules", str(rules), "--format", "jsonl",
        "--rejections", str(both), "--warnings", str(both), str(history),
    )  # fmt: skip

    # Then it holds both, in line order, told apart by code and by `replayed`
    assert result.returncode == 0, result.stderr
    found = entries(both)
    assert [(e["line"], e["code"], e.get("replayed")) for e in found] == [
        (1, "epoch_seconds", True),
        (2, "wrong_type", None),
    ]
    assert set(found[1]) == ENTRY_FIELDS
    assert f"Rejections written to {both}: 1 " in result.stderr
    assert f"Epoch-seconds warnings written to {both} too: on 1 line " in result.stderr


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--warnings", "-"], "--warnings takes a file"),
        (["--warnings", "{history}"], "--warnings {history} is an input file"),
        (["--warnings", ""], "an empty path names no file"),
    ],
)
def test_a_warnings_file_that_cannot_be_written_is_refused(
    tmp_path: Path, rules: Path, extra: list[str], says: str
) -> None:
    # Given a history
    history = tmp_path / "history.jsonl"
    text = line([reading(70)], timestamp=SECONDS) + "\n"
    history.write_text(text)

    # When --warnings names stdout, the input or nothing
    args = [x.format(history=history) for x in extra]
    result = telemetry("backtest", "--rules", str(rules), *args, str(history))

    # Then one line says why, exit 2, and the input is untouched
    assert result.returncode == 2
    assert says.format(history=history) in result.stderr.splitlines()[-1]
    assert result.stdout == ""
    assert history.read_text() == text


def test_warnings_go_with_files_not_the_store(rules: Path, tmp_path: Path) -> None:
    # When --warnings is given with --from influxdb
    result = telemetry(
        "backtest", "--rules", str(rules), "--from", "influxdb",
        "--influxdb-url", "http://127.0.0.1:9", "--database", "db", "--since", "1d",
        "--warnings", str(tmp_path / "w.jsonl"),
    )  # fmt: skip

    # Then it is refused in one line
    assert result.returncode == 2
    assert "--warnings lists the lines of files" in result.stderr
    assert not (tmp_path / "w.jsonl").exists()


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(
        st.one_of(
            messages().map(json.dumps),
            messages_with_seconds().map(lambda case: json.dumps(case[0])),
            mutated_messages().map(json.dumps),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_the_file_has_one_entry_per_timestamp_in_seconds(lines: list[str]) -> None:
    # Given lines of any kind, When they are replayed with a warnings writer
    out = io.StringIO()
    writer = SecondsWarningWriter(out)
    result = backtest.run(
        ["-"], load_rules(RULES), order="event",
        stdin=io.BytesIO(("\n".join(lines) + "\n").encode()),
        on_bad_line=lambda bad: None, on_seconds=writer,
    )  # fmt: skip

    # Then the entries are every suspect of every line, in order, as JSON
    expected: list[tuple[int, str]] = []
    for number, text in enumerate(lines, start=1):
        expected += [(number, s.field) for s in seconds_suspects(json.loads(text))]
    written: list[dict[str, Any]] = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [(e["line"], e["field"]) for e in written] == expected
    assert writer.lines == result.seconds_lines
