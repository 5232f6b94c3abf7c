"""`telemetry backtest --from timestream`: the readings the function wrote to
Timestream for LiveAnalytics, read back with the query API page by page and
replayed. moto answers `Query` only with results queued for the exact statement
(it has no time-series engine); Stubber checks the paging shape and errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.timestreamquery.models import timestreamquery_backends

from telemetry import backtest, cli
from telemetry.adapters import aws
from telemetry.core.rules import RuleSet, parse_rule_file
from telemetry.local import timestream_history
from telemetry.local.timestream_history import TimestreamHistory, TimestreamHistoryError
from tests.test_cli import telemetry

T0 = 1_764_237_600_000  # 2025-11-27T10:00:00Z
HOUR = 3_600_000
REGION = "eu-west-1"
RULES = RuleSet(
    parse_rule_file(
        "rules:\n  - name: hot\n    match: {type: temperature}\n    above: {warning: 75}\n",
        "hot.yaml",
    )
)
COLUMNS = [
    {"Name": name, "Type": {"ScalarType": kind}}
    for name, kind in [
        ("deviceId", "VARCHAR"), ("sensorId", "VARCHAR"), ("type", "VARCHAR"),
        ("location", "VARCHAR"), ("unit", "VARCHAR"), ("time", "TIMESTAMP"), ("value", "DOUBLE"),
    ]
]  # fmt: skip


def row(device: str, minute: int, value: float, unit: str | None = "C") -> dict[str, Any]:
    clock = f"2025-11-27 10:{minute:02d}:00.000000000"
    cells = [device, "temp-1", "temperature", None, unit, clock, str(value)]
    return {"Data": [{"NullValue": True} if c is None else {"ScalarValue": c} for c in cells]}


def page(rows: list[dict[str, Any]], token: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"QueryId": "q", "Rows": rows, "ColumnInfo": COLUMNS}
    if token is not None:
        out["NextToken"] = token
    return out


@pytest.fixture
def local_timestream() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("timestream-query", region_name=REGION)


def test_readings_come_back_page_by_page_and_window_by_window_in_time(
    local_timestream: Any,
) -> None:
    # Given two windows of an hour: the first answered in two pages, the second in one
    history = TimestreamHistory("telemetry", "readings", T0, T0 + 2 * HOUR, window_ms=HOUR)
    queued = timestreamquery_backends[DEFAULT_ACCOUNT_ID][REGION].query_result_queue
    first, second = timestream_history.statement(history, T0, T0 + HOUR), None
    second = timestream_history.statement(history, T0 + HOUR, T0 + 2 * HOUR)
    queued[first] = [page([row("pump-1", 0, 70), row("pump-1", 1, 80)], token="more"),
                     page([row("pump-1", 2, 90, unit=None)])]  # fmt: skip
    queued[second] = [page([])]

    # When they are read back and replayed
    found = list(timestream_history.messages(history, local_timestream))
    result = backtest.replay(found, RULES, wall_ms=T0 + 3 * HOUR)

    # Then each row is a message of one reading, in time, labels as stored, and replayed
    assert [m["timestamp"] for m in found] == [T0, T0 + 60_000, T0 + 120_000]
    assert found[0] == {
        "deviceId": "pump-1",
        "timestamp": T0,
        "data": [{"sensorId": "temp-1", "value": 70.0, "type": "temperature", "unit": "C"}],
    }
    assert "unit" not in found[2]["data"][0]
    assert [(t.status.value, t.value) for t in result.transitions] == [("RAISED", 80.0)]


def test_the_statement_reads_one_window_of_readings_by_time() -> None:
    # Given a history of the devices a glob names
    history = TimestreamHistory('tele"metry', "readings", T0, T0 + HOUR, device="pump_1*")

    # When its statement is made
    text = timestream_history.statement(history, T0, T0 + HOUR)

    # Then it names the table quoted, the measure, the window and the glob's literal prefix
    assert text == (
        'SELECT deviceId, sensorId, type, location, unit, time, value FROM "tele""metry".'  # noqa: S608
        "\"readings\" WHERE measure_name = 'reading' AND time >= from_milliseconds("
        f"{T0}) AND time < from_milliseconds({T0 + HOUR}) AND deviceId LIKE 'pump\\_1%' "
        "ESCAPE '\\' ORDER BY time"
    )


def test_paging_sends_the_token_back_and_an_error_is_one_sentence() -> None:
    # Given a client whose first page says there is more, then an access error
    client = boto3.client("timestream-query", region_name=REGION,
                          aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    history = TimestreamHistory("db", "t", T0, T0 + HOUR, page_rows=2)
    text = timestream_history.statement(history, T0, T0 + HOUR)
    with Stubber(client) as stub:
        stub.add_response("query", page([row("pump-1", 0, 70)], token="t1"),
                          {"QueryString": text, "MaxRows": 2})  # fmt: skip
        stub.add_response("query", page([]), {"QueryString": text, "MaxRows": 2, "NextToken": "t1"})
        rows = list(timestream_history.messages(history, client))
        stub.add_client_error("query", "AccessDeniedException", "not allowed")
        # Then the rows come, and an error is one TimestreamHistoryError
        assert len(rows) == 1
        with pytest.raises(TimestreamHistoryError, match="AccessDeniedException: not allowed"):
            list(timestream_history.messages(history, client))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--table", "t", "x.jsonl"], "--table goes with --from timestream"),
        (["--from", "timestream", "--since", "1d"], "--from timestream needs --database, --table"),
        (["--from", "timestream", "--database", "d", "--table", "t", "--since", "1d",
          "--influxdb-url", "http://h:8086"], "--influxdb-url goes with --from influxdb"),
        (["--from", "influxdb", "--influxdb-url", "http://h:8086", "--database", "d",
          "--since", "1d", "--table", "t"], "--table goes with --from timestream"),
    ],
)  # fmt: skip
def test_timestream_flags_go_with_timestream_only(args: list[str], says: str) -> None:
    # When the backtest is given flags of another source
    result = telemetry("backtest", "--rules", "rules", *args)

    # Then it is one line and exit 2
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_the_replay_queries_with_the_shared_client_settings_and_a_query_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a local AWS in AWS_REGION and AWS_ENDPOINT_URL, its Query answered empty
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    rules = tmp_path / "hot.yaml"
    rules.write_text(
        "rules:\n  - name: hot\n    match: {type: temperature}\n    above: {warning: 75}\n"
    )
    built: list[Any] = []
    asked: list[dict[str, Any]] = []
    shared = aws.make_client

    def recorded(service: str, **options: Any) -> Any:
        client = shared(service, **options)
        built.append(client)
        client.meta.events.register(
            "provide-client-params.timestream-query.Query", lambda params, **_: asked.append(params)
        )
        client.meta.events.register(
            "before-call.timestream-query.Query", lambda **_: (_Answered(), page([]))
        )
        return client

    monkeypatch.setattr(aws, "make_client", recorded)

    # When the backtest replays an hour of the table
    status = cli.main(["backtest", "--rules", str(rules), "--from", "timestream", "--database",
                       "telemetry", "--table", "readings", "--since", "1h"])  # fmt: skip

    # Then the one client is the function's (retries, timeouts) but for the read timeout
    assert "no reading to replay: Timestream telemetry.readings" in capsys.readouterr().err
    assert status == 2
    (client,) = built
    config = client.meta.config
    assert config.read_timeout == timestream_history.QUERY_READ_TIMEOUT_S > 60
    assert config.connect_timeout == aws.CLIENT_CONFIG.connect_timeout
    assert config.retries == aws.CLIENT_CONFIG.retries
    # in AWS_REGION, at AWS_ENDPOINT_URL, asking what the service model allows
    assert client.meta.region_name == REGION
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    query = client.meta.service_model.operation_model("Query").input_shape
    assert asked
    for params in asked:
        assert not ParamValidator().validate(params, query).has_errors()


def test_a_read_timeout_given_replaces_only_that_of_the_shared_settings() -> None:
    # When clients are made with and without a read timeout
    default = aws.make_client("sqs", region="eu-west-1").meta.config
    longer = aws.make_client("sqs", region="eu-west-1", read_timeout=70).meta.config

    # Then the default is the function's, and the other differs in that only
    assert default.read_timeout == aws.CLIENT_CONFIG.read_timeout == 10
    assert longer.read_timeout == 70
    for name in ("connect_timeout", "retries", "tcp_keepalive"):
        assert getattr(longer, name) == getattr(default, name) == getattr(aws.CLIENT_CONFIG, name)


class _Answered:
    status_code = 200


def row_without_location(minute: int, value: float) -> dict[str, Any]:
    clock = f"2025-11-27 10:{minute:02d}:00.000000000"
    cells = ["pump-1", "temp-1", "temperature", "C", clock, str(value)]
    return {"Data": [{"ScalarValue": c} for c in cells]}


def page_without_location(rows: list[dict[str, Any]]) -> dict[str, Any]:
    columns = [c for c in COLUMNS if c["Name"] != "location"]
    return {"QueryId": "q", "Rows": rows, "ColumnInfo": columns}


def test_a_label_the_table_never_had_is_left_out_of_the_statements() -> None:
    # Given a table whose records never had a location (Timestream has no such column)
    client = boto3.client("timestream-query", region_name=REGION,
                          aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    history = TimestreamHistory("db", "t", T0, T0 + 2 * HOUR, window_ms=HOUR)
    without = ["type", "unit"]
    with Stubber(client) as stub:
        stub.add_client_error(
            "query", "ValidationException", "line 1:36: Column 'location' does not exist",
            expected_params={"QueryString": timestream_history.statement(history, T0, T0 + HOUR),
                             "MaxRows": 1_000},
        )  # fmt: skip
        for start, rows in ((T0, [row_without_location(0, 80)]), (T0 + HOUR, [])):
            text = timestream_history.statement(history, start, start + HOUR, without)
            stub.add_response(
                "query", page_without_location(rows), {"QueryString": text, "MaxRows": 1_000}
            )

        # When the history is read back
        found = list(timestream_history.messages(history, client))

        # Then the statements are made without the location, from the first window on,
        # and the readings come without one
        stub.assert_no_pending_responses()
    assert found == [
        {
            "deviceId": "pump-1",
            "timestamp": T0,
            "data": [{"sensorId": "temp-1", "value": 80.0, "type": "temperature", "unit": "C"}],
        }
    ]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ValidationException", "line 1:8: Column 'deviceId' does not exist"),
        ("ValidationException", "Requested database 'db' not found"),
        ("ThrottlingException", "Column 'location' does not exist"),
    ],
)
def test_a_refused_statement_that_is_not_a_missing_label_is_one_error(
    code: str, message: str
) -> None:
    # Given a table refusing the statement for something else than a label it lacks
    client = boto3.client("timestream-query", region_name=REGION,
                          aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    history = TimestreamHistory("db", "t", T0, T0 + HOUR)
    with Stubber(client) as stub:
        stub.add_client_error("query", code, message)

        # When it is read back, then it is one TimestreamHistoryError saying so
        with pytest.raises(TimestreamHistoryError, match=f"{code}: "):
            list(timestream_history.messages(history, client))
