"""`telemetry backtest --from influxdb`: the readings the function wrote, read back from
a real influxd through InfluxQL in chunks, replayed as the files would be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, Any

import pytest

from telemetry.adapters.influxdb import InfluxRecords
from telemetry.core.messages import Reading, iso_utc
from telemetry.local import influx_history
from telemetry.local.influx_history import HistoryQuery, StoreError
from tests.influxdb_server import Influxd, QuietHTTPServer
from tests.test_cli import ROOT, T0, WORKED_RULE, WORKED_VALUES, assert_user_error
from tests.test_cli import messages as worked_messages

MINUTE = 60_000
HOUR = 60 * MINUTE
STORE = ["--from", "influxdb", "--influxdb-url", "http://h:8086", "--database", "t"]


def telemetry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


def reading(device: str, time_ms: int, value: float, **labels: str) -> Reading:
    return Reading(device, "temp-1", value, time_ms, labels.get("type", "temperature"), "C")


def store(influxd: Influxd, database: str, readings: list[Reading]) -> None:
    """Write readings as the function writes them: its own record factory's points."""
    records = InfluxRecords()
    status, said = influxd.write(database, "\n".join(records.reading(r).line for r in readings))
    assert status == 204, said


def from_store(influxd: Influxd, database: str, *args: str) -> list[str]:
    return ["--from", "influxdb", "--influxdb-url", influxd.url, "--database", database, *args]


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "hot.yaml"
    path.write_text(WORKED_RULE)
    return path


def test_the_store_replays_as_the_same_history_in_a_file_does(
    influxd: Influxd, database: str, rules: Path, tmp_path: Path
) -> None:
    # Given the worked example for two devices, in a file and in the store as the
    # function writes it (messages of different devices interleaved)
    devices = ("pump-17", "fan-2")
    lines = [
        m
        for i in range(len(WORKED_VALUES))
        for d in devices
        for m in [worked_messages(WORKED_VALUES, device=d)[i]]
    ]
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(lines) + "\n")
    store(influxd, database, [
        reading(d, T0 + i * MINUTE, v) for i, v in enumerate(WORKED_VALUES) for d in devices
    ])  # fmt: skip

    # When both are backtested
    from_file = telemetry("backtest", "--rules", str(rules), "--format", "jsonl", str(history))
    from_influx = telemetry(
        "backtest", "--rules", str(rules), "--format", "jsonl",
        *from_store(influxd, database, "--since", iso_utc(T0), "--until", iso_utc(T0 + HOUR)),
    )  # fmt: skip

    # Then the same transitions come out, byte for byte (the unit and type too)
    assert from_influx.returncode == 0, from_influx.stderr
    assert from_influx.stdout == from_file.stdout
    assert len(from_influx.stdout.splitlines()) == 8
    # and the summary says where they came from
    assert f"Input: InfluxDB {influxd.url} database {database}, " in from_influx.stderr
    assert "18 readings from 2 devices" in from_influx.stderr


@pytest.mark.parametrize(
    "names",
    [["--influxdb-database"], ["--database", "--influxdb-database"]],
    ids=["alias", "both"],
)
def test_influxdb_database_names_the_database_as_database_does(
    influxd: Influxd, database: str, rules: Path, names: list[str]
) -> None:
    # Given hot readings in the store
    store(influxd, database, [reading("pump-17", T0 + i * MINUTE, 80) for i in range(3)])
    span = ["--since", iso_utc(T0), "--until", iso_utc(T0 + HOUR)]

    # When the database is named --influxdb-database (as `demo` names it), or both ways
    given = [word for name in names for word in (name, database)]
    result = telemetry(
        "backtest", "--rules", str(rules), "--format", "jsonl", "--from", "influxdb",
        "--influxdb-url", influxd.url, *given, *span,
    )  # fmt: skip

    # Then that database is replayed, as with --database
    assert result.returncode == 0, result.stderr
    assert f"Input: InfluxDB {influxd.url} database {database}, " in result.stderr
    assert [json.loads(x)["status"] for x in result.stdout.splitlines()] == ["RAISED"]


def test_a_device_glob_keeps_the_rules_glob_semantics(
    influxd: Influxd, database: str, rules: Path
) -> None:
    # Given hot readings from devices whose names share prefixes
    names = ["pump-17", "pump-18", "pump-1", "pumpX", "fan-2", "line3:a_b"]
    store(influxd, database, [reading(d, T0, 80) for d in names])

    def raised(glob: str) -> list[str]:
        result = telemetry(
            "backtest", "--rules", str(rules), "--format", "jsonl",
            *from_store(influxd, database, "--since", iso_utc(T0), "--until", iso_utc(T0 + 1),
                        "--device", glob),
        )  # fmt: skip
        return sorted(json.loads(x)["deviceId"] for x in result.stdout.splitlines())

    # When the backtest names devices by glob, Then exactly those a rule's glob would match
    assert raised("pump-1?") == ["pump-17", "pump-18"]
    assert raised("pump-*") == ["pump-1", "pump-17", "pump-18"]
    assert raised("pump[-X]*") == ["pump-1", "pump-17", "pump-18", "pumpX"]
    assert raised("*-2") == ["fan-2"]
    assert raised("line3:a.b") == []  # a dot is a dot, not any character
    assert raised("line3:a_b") == ["line3:a_b"]
    assert raised("line3:*") == ["line3:a_b"]  # a prefix with punctuation, escaped
    assert raised("pump-17") == ["pump-17"]


def test_since_is_inclusive_and_until_exclusive_across_windows_and_chunks(
    influxd: Influxd, database: str
) -> None:
    # Given readings every 10 minutes for 5 hours, 3 devices at each instant
    times = [T0 + i * 10 * MINUTE for i in range(31)]
    store(influxd, database, [reading(f"d-{n}", t, 1.0 + n) for t in times for n in range(3)])
    since, until = T0 + HOUR, T0 + 4 * HOUR

    # When they are read back in windows of 45 minutes, in chunks of 4 rows
    query = HistoryQuery(influxd.url, database, since, until, window_ms=45 * MINUTE, chunk_size=4)
    found = list(influx_history.messages(query))

    # Then every reading from since to before until, once each, in time order
    expected = [t for t in times if since <= t < until]
    assert [m["timestamp"] for m in found] == [t for t in expected for _ in range(3)]
    assert {(m["deviceId"], m["timestamp"]) for m in found} == {
        (f"d-{n}", t) for t in expected for n in range(3)
    }
    assert found[0] == {
        "deviceId": "d-0",
        "timestamp": since,
        "data": [{"sensorId": "temp-1", "value": 1.0, "type": "temperature", "unit": "C"}],
    }


def test_readings_stream_chunk_by_chunk(influxd: Influxd, database: str) -> None:
    # Given 50 readings in one window, and an opener that counts the chunks read
    store(influxd, database, [reading("pump-17", T0 + i * 1000, float(i)) for i in range(50)])
    read: list[int] = []

    class Counting:
        def __init__(self, answer: IO[bytes]) -> None:
            self.answer = answer

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *_: object) -> None:
            self.answer.close()

        def __iter__(self) -> Iterator[bytes]:
            for line in self.answer:
                read.append(len(line))
                yield line

    def opener(request: Any, timeout: float) -> Any:
        return Counting(influx_history._open(request, timeout))

    query = HistoryQuery(influxd.url, database, T0, T0 + HOUR, chunk_size=10)

    # When the first readings are taken
    stream = influx_history.messages(query, opener)
    first = [next(stream)["data"][0]["value"] for _ in range(10)]

    # Then only the first chunk has been read; the rest follows on demand
    assert first == [float(i) for i in range(10)]
    assert len(read) == 1
    assert [m["data"][0]["value"] for m in stream] == [float(i) for i in range(10, 50)]
    assert len(read) == 5


def test_an_error_answer_is_one_line_and_exit_1(
    influxd: Influxd, database: str, rules: Path
) -> None:
    # When the database does not exist, or nothing listens at the URL
    missing = telemetry(
        "backtest", "--rules", str(rules),
        *from_store(influxd, "no_such_db", "--since", "30d"),
    )  # fmt: skip
    unreachable = telemetry(
        "backtest", "--rules", str(rules), "--from", "influxdb",
        "--influxdb-url", "http://127.0.0.1:9", "--database", database, "--since", "1d",
    )  # fmt: skip

    # Then one line each, naming the store and what it said, exit 1
    assert_user_error(missing, code=1, says="database not found: no_such_db")
    assert_user_error(unreachable, code=1, says="cannot read InfluxDB at http://127.0.0.1:9")
    assert len(missing.stderr.splitlines()) == len(unreachable.stderr.splitlines()) == 1


def test_an_empty_range_is_a_user_error(influxd: Influxd, database: str, rules: Path) -> None:
    # Given readings a year ago only
    store(influxd, database, [reading("pump-17", T0, 80.0)])

    # When the last hour is asked for
    result = telemetry(
        "backtest", "--rules", str(rules), *from_store(influxd, database, "--since", "1h")
    )

    # Then one line says there is nothing to replay, and where it looked
    assert_user_error(result, code=2, says=f"no reading to replay: InfluxDB {influxd.url}")


# --- the token, and an error in the middle of the answer: a server of our own ---------


class Query:
    """A /query endpoint answering `chunks` (one JSON line each) or `status`, and
    recording each request's Authorization header."""

    def __init__(self, chunks: list[dict[str, Any]], status: int = 200) -> None:
        self.chunks, self.status = chunks, status
        self.authorization: list[str | None] = []

    def __enter__(self) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.authorization.append(self.headers.get("Authorization"))
                body = b"".join(json.dumps(c).encode() + b"\n" for c in owner.chunks)
                if owner.status != 200:
                    body = b'{"error":"authorization failed"}'
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def chunk(*rows: tuple[int, str, float]) -> dict[str, Any]:
    columns = ["time", "value", "deviceId", "sensorId", "type", "unit", "location"]
    values = [[t, v, d, "temp-1", "temperature", "C", None] for t, d, v in rows]
    series = {"name": "reading", "columns": columns, "values": values}
    return {"results": [{"statement_id": 0, "series": [series]}]}


def store_args(url: str) -> list[str]:
    return ["--from", "influxdb", "--influxdb-url", url, "--database", "telemetry",
            "--since", iso_utc(T0), "--until", iso_utc(T0 + MINUTE)]  # fmt: skip


def test_the_token_comes_from_the_flag_or_the_environment(rules: Path) -> None:
    # Given two stores answering one reading each
    first, second = Query([chunk((T0, "pump-17", 80.0))]), Query([chunk((T0, "pump-17", 80.0))])
    with first as url, second as other:
        # When the token is given as a flag (beside the variable), then only in INFLUXDB_TOKEN
        by_flag = telemetry(
            "backtest", "--rules", str(rules), *store_args(url), "--influxdb-token", "s3cret",
            env={"INFLUXDB_TOKEN": "ignored"},
        )  # fmt: skip
        by_env = telemetry(
            "backtest", "--rules", str(rules), *store_args(other),
            env={"INFLUXDB_TOKEN": "fr0m-env"},
        )  # fmt: skip

    # Then each replays, its request carrying the token, the flag's first
    assert by_flag.returncode == 0, by_flag.stderr
    assert by_env.returncode == 0, by_env.stderr
    assert first.authorization == ["Token s3cret"]
    assert second.authorization == ["Token fr0m-env"]


def test_a_refused_token_says_how_to_give_one(rules: Path) -> None:
    # Given a store that refuses the request
    server = Query([], status=401)
    with server as url:
        # When the backtest reads it without a token
        result = telemetry(
            "backtest", "--rules", str(rules), *store_args(url), env={"INFLUXDB_TOKEN": ""}
        )

    # Then one line with the store's answer and the way to give a token, exit 1
    assert_user_error(result, code=1, says='answered 401: {"error":"authorization failed"}')
    assert "--influxdb-token" in result.stderr
    assert server.authorization == [None]


def test_an_error_in_a_later_chunk_stops_the_replay(rules: Path) -> None:
    # Given an answer whose second chunk is an error (a query killed midway)
    error = {"results": [{"statement_id": 0, "error": "query interrupted"}]}
    with Query([chunk((T0, "pump-17", 80.0)), error]) as url:
        # When it is replayed
        result = telemetry("backtest", "--rules", str(rules), *store_args(url))

    # Then the replay fails with the store's words, nothing half-reported
    assert_user_error(result, code=1, says="query interrupted")


def test_a_chunk_that_is_not_json_is_a_store_error() -> None:
    # Given a chunk that is not JSON, Then reading it is a StoreError naming the store
    query = HistoryQuery("http://store", "telemetry", T0, T0 + 1)

    class Broken:
        def __enter__(self) -> Broken:
            return self

        def __exit__(self, *_: object) -> None:
            pass

        def __iter__(self) -> Iterator[bytes]:
            yield b"<html>proxy error</html>\n"

    with pytest.raises(StoreError, match="cannot read InfluxDB at http://store"):
        list(influx_history.messages(query, lambda request, timeout: Broken()))  # type: ignore[arg-type,return-value]


# --- flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--since", "30d", "x.jsonl"], "--since goes with --from influxdb"),
        (["--device", "pump-*", "x.jsonl"], "--device goes with --from influxdb"),
        (["--influxdb-token", "t", "x.jsonl"], "--influxdb-token goes with --from influxdb"),
        ([*STORE, "--since", "1d", "x.jsonl"], "no FILE to give"),
        (["--from", "influxdb", "--influxdb-url", "http://h:8086"], "needs --database, --since"),
        ([*STORE, "--since", "1d", "--rejections", "r.jsonl"], "--rejections lists the lines"),
        ([*STORE, "--since", "1d", "--until", "2d"], "--until must be later than --since"),
    ],
)  # fmt: skip
def test_store_flags_and_files_do_not_mix(args: list[str], says: str) -> None:
    # When the store's flags and files are mixed up, Then one line says which, exit 2
    result = telemetry("backtest", "--rules", "rules", *args)
    assert_user_error(result, code=2, says=says)
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([*STORE, "--influxdb-database", "other", "--since", "1d"],
         "--database t and --influxdb-database other name two databases: give one"),
        (["--influxdb-database", "t", "x.jsonl"], "--influxdb-database goes with --from influxdb"),
        (["--from", "timestream", "--influxdb-database", "t", "--table", "r", "--since", "1d"],
         "--influxdb-database goes with --from influxdb"),
    ],
)  # fmt: skip
def test_influxdb_database_is_one_database_of_influxdb(args: list[str], says: str) -> None:
    # When --influxdb-database differs from --database, or goes with files or Timestream
    result = telemetry("backtest", "--rules", "rules", *args)

    # Then one line says so, exit 2
    assert_user_error(result, code=2, says=says)
    assert len(result.stderr.splitlines()) == 1


def test_a_since_that_is_no_time_is_a_usage_error() -> None:
    # When --since is neither a duration nor an ISO-8601 time
    result = telemetry("backtest", "--rules", "rules", "--from", "influxdb", "--since", "last week")

    # Then argparse's usage and the reason, exit 2
    assert_user_error(result, code=2, says="'last week' is neither a time ago")
