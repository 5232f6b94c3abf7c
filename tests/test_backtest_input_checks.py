"""`telemetry backtest` checks every input before it writes anything: a rejections
or warnings file left from an earlier run is not emptied by a run that cannot start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_backtest_rejections import SECONDS, line, reading
from tests.test_cli import WORKED_RULE, telemetry


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
