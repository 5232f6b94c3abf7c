"""`telemetry demo --store influxdb`, driven as a user drives it: a subprocess."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.influxdb_server import Influxd, require_influxd

ROOT = Path(__file__).resolve().parent.parent


def telemetry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
        env=env,
    )


def count(output: str, label: str) -> int:
    match = re.search(rf"^{label}\s+([\d,]+)", output, re.MULTILINE)
    assert match, f"{label!r} not in the output"
    return int(match.group(1).replace(",", ""))


@pytest.mark.slow
def test_demo_with_influxdb_starts_its_own_and_prints_what_it_holds() -> None:
    # Given influxd on PATH
    require_influxd()
    # When the demo runs with InfluxDB as the store
    done = telemetry("demo", "--store", "influxdb", "--devices", "4", "--duration", "90s")
    # Then it started its own influxd, and what InfluxDB holds, read back, is what was stored
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"^InfluxDB: http://127\.0\.0\.1:\d+ \(started for this run\)", done.stdout, re.MULTILINE
    )
    assert "Read back from InfluxDB" in done.stdout
    assert count(done.stdout, "reading") == count(done.stdout, "readings stored")
    published = int(re.search(r"\(published: (\d+);", done.stdout).group(1))  # type: ignore[union-attr]
    assert count(done.stdout, "alert") == published
    assert "Timestream writes" not in done.stdout


@pytest.mark.slow
def test_demo_writes_to_an_influxdb_already_running(influxd: Influxd) -> None:
    given = ("--influxdb-url", influxd.url, "--influxdb-database", "demo_given")
    done = telemetry("demo", *given, "--devices", "2", "--duration", "30s")
    assert done.returncode == 0, done.stderr
    assert f"InfluxDB: {influxd.url} (already running), v1 API, database demo_given" in done.stdout
    stored = influxd.rows("demo_given", 'SELECT count("value") FROM "reading"')
    assert stored[0]["count"] == count(done.stdout, "readings stored")


def test_demo_without_any_influxdb_says_in_one_line_how_to_get_one(tmp_path: Path) -> None:
    # Given a PATH where influxd cannot be found (python itself still can)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": str(bin_dir)}
    assert shutil.which("influxd", path=str(bin_dir)) is None
    # When the demo is asked for InfluxDB
    done = telemetry("demo", "--store", "influxdb", env=env)
    # Then it fails with one line saying how to get one, no traceback
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "apt-get install influxdb" in done.stderr
    assert "--influxdb-url" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_influxdb_url_with_the_timestream_store_is_a_usage_error() -> None:
    done = telemetry("demo", "--store", "timestream", "--influxdb-url", "http://127.0.0.1:1")
    assert done.returncode == 2
    assert done.stderr.strip() == "telemetry: error: --influxdb-url goes with --store influxdb"
