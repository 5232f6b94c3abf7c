"""`telemetry backtest --rejections FILE`: every line it did not replay, with where and why;
and timestamps that are plainly epoch seconds, warned about with their line number."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from telemetry import backtest
from telemetry.core.messages import LATEST_MS, MessageRejectedError, parse_message_carefully
from telemetry.core.rules import load_rules
from telemetry.core.timestamps import seconds_suspects
from tests.strategies import json_values, messages, messages_with_seconds, mutated_messages
from tests.test_cli import RULES, T0, WORKED_RULE, telemetry
from tests.test_cli import messages as worked_messages

MISTAKES = Path(__file__).resolve().parent.parent / "telemetry" / "samples" / "mistakes.jsonl"
ENTRY_FIELDS = {
    "file",
    "line",
    "code",
    "field",
    "reason",
    "detail",
    "deviceId",
    "payload",
    "warning",
}
SECONDS = 1_764_237_660  # 2025-11-27T10:01:00Z, in seconds


def reading(value: Any, **fields: Any) -> dict[str, Any]:
    return {"sensorId": "temp-1", "type": "temperature", "value": value, **fields}


def line(data: list[dict[str, Any]], **envelope: Any) -> str:
    return json.dumps({"deviceId": "pump-17", **envelope, "data": data})


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(text) for text in path.read_text().splitlines()]


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "hot.yaml"
    path.write_text(WORKED_RULE)
    return path


# --- the command line ---------------------------------------------------------------


def test_every_rejected_line_and_reading_is_written_with_file_line_and_reason(
    tmp_path: Path, rules: Path
) -> None:
    # Given a hand-written history: a good line, a value as text, a broken line, a
    # message without deviceId, and a message with one good and one bad reading
    history = tmp_path / "history.jsonl"
    lines = [
        line([reading(70)], timestamp=T0),
        line([reading("80")], timestamp=T0 + 60_000),
        '{"deviceId": "pump-17", "data": [}',
        json.dumps({"device": "pump-17", "timestamp": T0, "data": []}),
        "",
        line([reading(90), {"sensorID": "temp-2", "value": 1}], timestamp=T0 + 120_000),
    ]
    history.write_text("\n".join(lines) + "\n")
    rejected = tmp_path / "rejected.jsonl"

    # When it is backtested with --rejections
    result = telemetry(
        "backtest", "--rules", str(rules), "--format", "jsonl", "--rejections", str(rejected),
        str(history),
    )  # fmt: skip

    # Then each rejection is one JSON line, with exactly the documented fields,
    # naming the file, the line (blank lines counted) and the reason
    assert result.returncode == 0, result.stderr
    found = entries(rejected)
    assert [set(e) for e in found] == [ENTRY_FIELDS] * 4
    assert [(e["file"], e["line"], e["code"], e["field"]) for e in found] == [
        (str(history), 2, "wrong_type", "data[0].value"),
        (str(history), 3, "not_json", "$"),
        (str(history), 4, "missing", "deviceId"),
        (str(history), 6, "missing", "data[1].sensorId"),
    ]
    assert all(e["reason"] == f"{e['code']}: {e['field']}: {e['detail']}" for e in found)
    # and the payload is what was rejected: the reading, the line's text, the message
    assert found[0]["payload"] == reading("80")
    assert found[1]["payload"] == lines[2]
    assert found[2]["payload"] == json.loads(lines[3])
    assert [e["deviceId"] for e in found] == ["pump-17", None, None, "pump-17"]
    assert all(e["warning"] is None for e in found)
    # and the replay itself is the same as without the flag, the summary saying where
    without = telemetry("backtest", "--rules", str(rules), "--format", "jsonl", str(history))
    assert result.stdout == without.stdout
    assert [json.loads(x)["value"] for x in result.stdout.splitlines()] == [90]
    assert f"Rejections written to {rejected}: 4 " in result.stderr
    assert "Rejections written" not in without.stderr


def test_a_timestamp_in_epoch_seconds_is_a_warning_with_its_line_number(
    tmp_path: Path, rules: Path
) -> None:
    # Given a history whose second line's timestamp is epoch seconds, and whose
    # third holds a reading at a fractional second (which validation rejects)
    history = tmp_path / "history.jsonl"
    history.write_text(
        "\n".join([
            line([reading(70)], timestamp=T0),
            line([reading(72)], timestamp=SECONDS),
            line([reading(71, timestamp=SECONDS + 60.5), reading(73)], timestamp=T0 + 120_000),
        ]) + "\n"
    )  # fmt: skip
    rejected = tmp_path / "rejected.jsonl"

    # When it is backtested
    result = telemetry(
        "backtest", "--rules", str(rules), "--rejections", str(rejected), str(history)
    )

    # Then stderr warns about lines 2 and 3, naming the field, and the instant meant
    assert result.returncode == 0, result.stderr
    warnings = [x for x in result.stderr.splitlines() if ": warning: " in x]
    assert warnings == [
        (
            f"{history}:2: warning: timestamp 1764237660 read as epoch milliseconds is "
            "1970-01-21T10:03:57.660Z, before 2001: epoch seconds (2025-11-27T10:01:00.000Z)? "
            "Timestamps are epoch milliseconds or ISO-8601"
        ),
        (
            f"{history}:3: warning: data[0].timestamp 1764237720.5 read as epoch milliseconds is "
            "1970-01-21T10:03:57.720Z, before 2001: epoch seconds (2025-11-27T10:02:00.500Z)? "
            "Timestamps are epoch milliseconds or ISO-8601"
        ),
    ]
    # and the reading rejected for it carries the warning in the rejections file
    [entry] = entries(rejected)
    assert (entry["line"], entry["code"], entry["field"]) == (
        3,
        "invalid_timestamp",
        "data[0].timestamp",
    )
    assert entry["warning"] == warnings[1].split(": warning: ", 1)[1]
    # and the line in seconds is replayed all the same, in 1970, as the function would take it
    assert "3 readings from 1 device, 1970-01-21T10:03:57Z to 2025-11-27T10:02:00Z" in result.stdout
    assert "Timestamps that look like epoch seconds: on 2 lines" in result.stdout


def test_a_history_in_milliseconds_warns_of_nothing(tmp_path: Path, rules: Path) -> None:
    # Given the worked example, in epoch milliseconds and ISO-8601
    history = tmp_path / "history.jsonl"
    lines = worked_messages([70, 80, 95])
    lines.append(line([reading(96)], timestamp="2025-11-27T10:03:00Z"))
    history.write_text("\n".join(lines) + "\n")
    rejected = tmp_path / "rejected.jsonl"
    rejected.write_text("left from an earlier run\n")

    # When it is backtested with --rejections
    result = telemetry(
        "backtest", "--rules", str(rules), "--rejections", str(rejected), str(history)
    )

    # Then no warning, no seconds line in the summary, and the file is emptied
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "epoch seconds" not in result.stdout
    assert rejected.read_text() == ""
    assert f"Rejections written to {rejected}: 0 " in result.stdout


def test_warnings_past_twenty_lines_are_counted_not_shown(tmp_path: Path, rules: Path) -> None:
    # Given 25 lines in epoch seconds
    history = tmp_path / "history.jsonl"
    history.write_text(
        "\n".join(line([reading(70)], timestamp=SECONDS + 60 * i) for i in range(25)) + "\n"
    )

    # When it is backtested
    result = telemetry("backtest", "--rules", str(rules), "--format", "jsonl", str(history))

    # Then 20 warnings, a note, and the count of all 25 in the summary
    assert result.returncode == 0, result.stderr
    assert sum(": warning: " in x for x in result.stderr.splitlines()) == 20
    assert f"{history}:20: warning: " in result.stderr
    assert f"{history}:21: warning: " not in result.stderr
    assert "(further lines with such timestamps are counted, not shown)" in result.stderr
    assert "Timestamps that look like epoch seconds: on 25 lines" in result.stderr


def test_a_line_with_many_times_in_seconds_is_one_warning(tmp_path: Path, rules: Path) -> None:
    # Given one message whose own time and three readings' times are in seconds
    data = [reading(70 + i, timestamp=SECONDS + i) for i in range(3)]

    # When it is backtested from stdin
    result = telemetry(
        "backtest", "--rules", str(rules), "--format", "jsonl", "-",
        stdin=line(data, timestamp=SECONDS) + "\n",
    )  # fmt: skip

    # Then one warning names the first and counts the others
    warnings = [x for x in result.stderr.splitlines() if ": warning: " in x]
    assert len(warnings) == 1
    assert warnings[0].startswith("<stdin>:1: warning: timestamp 1764237660 ")
    assert warnings[0].endswith(" (and 3 other timestamps on this line)")


def test_rejections_from_stdin_and_several_files_name_each_source(
    tmp_path: Path, rules: Path
) -> None:
    # Given one bad line on stdin and one in a file
    history = tmp_path / "history.jsonl"
    history.write_text(line([reading(70)], timestamp=T0) + "\n" + line([reading(None)]) + "\n")
    rejected = tmp_path / "rejected.jsonl"

    # When both are backtested, stdin first
    result = telemetry(
        "backtest", "--rules", str(rules), "--rejections", str(rejected), "-", str(history),
        stdin=line([reading(70)], timestamp=T0) + "\n[oops\n",
    )  # fmt: skip

    # Then each entry names its own source and line
    assert result.returncode == 0, result.stderr
    assert [(e["file"], e["line"], e["code"]) for e in entries(rejected)] == [
        ("<stdin>", 2, "not_json"),
        (str(history), 2, "wrong_type"),
    ]


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("history", "is an input file: writing it would erase it"),
        ("missing", "cannot write: No such file or directory"),
        ("-", "--rejections takes a file"),
        ("", "an empty path names no file"),
    ],
)
def test_a_rejections_file_that_cannot_be_written_is_refused_before_replaying(
    tmp_path: Path, rules: Path, target: str, says: str
) -> None:
    # Given a history
    history = tmp_path / "history.jsonl"
    text = "\n".join(worked_messages([70, 80])) + "\n"
    history.write_text(text)
    path = {"history": str(history), "missing": str(tmp_path / "missing" / "r.jsonl")}.get(
        target, target
    )

    # When --rejections names the input itself, a missing directory, stdout or nothing
    result = telemetry("backtest", "--rules", str(rules), "--rejections", path, str(history))

    # Then one line says why, exit 2, nothing replayed, and the input is untouched
    assert result.returncode == 2
    assert says in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert history.read_text() == text


def test_the_shipped_history_of_mistakes_shows_each_kind(tmp_path: Path) -> None:
    # Given the sample history a newcomer might have written by hand
    rejected = tmp_path / "rejected.jsonl"
    rules = tmp_path / "hot.yaml"
    rules.write_text(WORKED_RULE)

    # When it is backtested with --rejections
    result = telemetry(
        "backtest", "--rules", str(rules), "--rejections", str(rejected), str(MISTAKES)
    )

    # Then every mistake is in the file with its line, and seconds are warned about
    assert result.returncode == 0, result.stderr
    assert [(e["line"], e["code"], e["warning"] is not None) for e in entries(rejected)] == [
        (3, "wrong_type", False),
        (4, "not_json", False),
        (5, "missing", False),
        (6, "missing", False),
        (7, "invalid_timestamp", True),
    ]
    assert [x.split(": warning: ")[0] for x in result.stderr.splitlines() if "warning" in x] == [
        f"{MISTAKES}:2",
        f"{MISTAKES}:7",
    ]


# --- in process: what is reported is what validation decided ------------------------


def lines_of_any_kind() -> st.SearchStrategy[str]:
    return st.one_of(
        messages().map(json.dumps),
        messages_with_seconds().map(lambda case: json.dumps(case[0])),
        mutated_messages().map(json.dumps),
        json_values().map(json.dumps),
        st.sampled_from(["{oops", '{"deviceId": "pump-17",}', "\x00"]),
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@example(  # a reading's own time in seconds, in a message whose times are all fine
    first=line([reading(70)], timestamp=T0),
    rest=[line([reading(70, timestamp=SECONDS)], timestamp=T0, receivedAt=T0)],
)
@example(first=line([reading(70)]), rest=[line([reading(70)], receivedAt=SECONDS)])
@given(first=messages().map(json.dumps), rest=st.lists(lines_of_any_kind(), max_size=8))
def test_the_reports_are_validations_rejections_and_every_line_in_seconds(
    first: str, rest: list[str]
) -> None:
    # Given lines of any kind after a first good one
    lines = [first, *rest]
    found: list[backtest.RejectedLine] = []
    warned: list[backtest.SecondsWarning] = []

    # When they are replayed
    result = backtest.run(
        ["-"], load_rules(RULES), order="event",
        stdin=io.BytesIO(("\n".join(lines) + "\n").encode()),
        on_bad_line=lambda bad: None, on_rejected=found.append, on_seconds=warned.append,
    )  # fmt: skip

    # Then per line: a line that is not JSON is one `not_json` entry; any other, one
    # entry per rejection of the reference validation, with its code and field
    expected: list[tuple[int, str, str]] = []
    in_seconds: list[int] = []
    for number, text in enumerate(lines, start=1):
        try:
            decoded = json.loads(text)
        except ValueError:
            expected.append((number, "not_json", "$"))
            continue
        try:
            rejections = parse_message_carefully(decoded, LATEST_MS + 1).rejections
        except MessageRejectedError as exc:
            rejections = [exc.rejection]
        expected += [(number, r.code, r.field) for r in rejections]
        if seconds_suspects(decoded):
            in_seconds.append(number)
    assert [(r.line, r.rejection.code, r.rejection.field) for r in found] == expected
    assert sum(result.rejected.values()) + result.bad_lines == len(found)
    # and every line with a time in seconds is warned about, no other
    assert [w.line for w in warned] == in_seconds
    assert result.seconds_lines == len(in_seconds)
