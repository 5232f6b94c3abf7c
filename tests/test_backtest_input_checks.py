"""`telemetry backtest` checks every input before it writes anything: a rejections
or warnings file left from an earlier run is not emptied by a run that cannot start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_backtest_rejections import SECONDS, line, reading
from tests.test_cli import T0, WORKED_RULE, telemetry


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "hot.yaml"
    path.write_text(WORKED_RULE)
    return path


@pytest.mark.parametrize(
    ("second", "says"),
    [("missing.jsonl", "missing.jsonl: no such file"), ("folder", "is a directory")],
)
@pytest.mark.parametrize("flag", ["--rejections", "--warnings"])
def test_an_unreadable_input_leaves_the_earlier_file_as_it_was(
    tmp_path: Path, rules: Path, second: str, says: str, flag: str
) -> None:
    # Given a readable history, an input that is missing or a directory, and the
    # rejections (or warnings) file of an earlier run
    history = tmp_path / "history.jsonl"
    history.write_text(line([reading(70)], timestamp=SECONDS) + "\n" + line([reading("x")]) + "\n")
    (tmp_path / "folder").mkdir()
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text('{"kept": true}\n')

    # When both inputs are backtested
    result = telemetry(
        "backtest", "--rules", str(rules), flag, str(earlier), str(history),
        str(tmp_path / second),
    )  # fmt: skip

    # Then one line names the input, exit 2, and the earlier file is untouched
    assert result.returncode == 2
    assert says in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert earlier.read_text() == '{"kept": true}\n'


@pytest.mark.parametrize("where", ["file", "stdin"])
def test_a_byte_order_mark_at_the_start_is_not_part_of_the_first_line(
    tmp_path: Path, rules: Path, where: str
) -> None:
    # Given a history saved by an editor that starts files with a UTF-8 BOM
    text = "\n".join(line([reading(v)], timestamp=T0 + i * 60_000) for i, v in enumerate([70, 80]))
    history = tmp_path / "history.jsonl"
    history.write_bytes(b"\xef\xbb\xbf" + text.encode() + b"\n")
    plain = tmp_path / "plain.jsonl"
    plain.write_text(text + "\n")

    # When it is backtested (from the file, or from stdin)
    args = ["backtest", "--rules", str(rules), "--format", "jsonl"]
    if where == "file":
        result = telemetry(*args, str(history))
    else:
        result = telemetry(*args, "-", stdin=history.read_bytes().decode("utf-8"))

    # Then the first line is replayed as without the mark, nothing skipped
    expected = telemetry(*args, str(plain))
    assert result.returncode == 0, result.stderr
    assert ": skipped: " not in result.stderr
    assert result.stdout == expected.stdout
    assert "2 messages, 2 readings" in result.stderr


def test_a_byte_order_mark_elsewhere_is_still_a_bad_line(tmp_path: Path, rules: Path) -> None:
    # Given a BOM at the start of the second line (two files joined by hand)
    history = tmp_path / "history.jsonl"
    history.write_bytes(
        (line([reading(70)], timestamp=T0) + "\n").encode()
        + b"\xef\xbb\xbf"
        + (line([reading(80)], timestamp=T0 + 60_000) + "\n").encode()
    )

    # When it is backtested, Then that line is reported, not silently changed
    result = telemetry("backtest", "--rules", str(rules), "--format", "jsonl", str(history))
    assert f"{history}:2: skipped: not valid JSON" in result.stderr


def test_history_is_never_in_the_future(tmp_path: Path, rules: Path) -> None:
    # Given a reading stamped centuries ahead (a digit too many) beside a good one
    history = tmp_path / "history.jsonl"
    history.write_text(
        line([reading(70)], timestamp=T0 * 10) + "\n" + line([reading(71)], timestamp=T0) + "\n"
    )
    rejected = tmp_path / "rejected.jsonl"

    # When it is backtested with --rejections
    result = telemetry(
        "backtest", "--rules", str(rules), "--format", "jsonl", "--rejections", str(rejected),
        str(history),
    )  # fmt: skip

    # Then nothing is rejected as in_future (as docs/cli.md says): both are replayed
    assert result.returncode == 0, result.stderr
    assert rejected.read_text() == ""
    assert "2 messages, 2 readings" in result.stderr
    assert "Rejected by validation: 0;" in result.stderr
