"""`telemetry backtest --from influxdb|timestream` reaches the store with the
function's own options: the InfluxDB token from the flag, INFLUXDB_TOKEN or the
secret INFLUXDB_TOKEN_SECRET_ARN names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from telemetry.local import store_access
from telemetry.local.store_access import StoreAccessError
from tests.test_backtest_influxdb import Query, chunk, store_args, telemetry
from tests.test_cli import ROOT, T0, WORKED_RULE, assert_user_error, local_aws  # noqa: F401

REGION = "eu-west-1"
GONE = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gone-AbCdEf"
FAKE = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command with exactly `env` (no AWS_ variable of the test's own)."""
    return subprocess.run(
        [sys.executable, "-m", "telemetry", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False, env=env,
    )  # fmt: skip


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "hot.yaml"
    path.write_text(WORKED_RULE)
    return path


@pytest.fixture
def secrets() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


def clients(made: list[str]) -> Any:
    def make(region: str) -> Any:
        made.append(region)
        return boto3.client("secretsmanager", region_name=region)

    return make


@pytest.mark.parametrize("stored", ["plain-t0ken", json.dumps({"token": "plain-t0ken"})])
def test_the_secret_is_read_as_the_function_reads_it_in_its_own_region(
    secrets: Any, stored: str
) -> None:
    # Given a secret holding the token, as a string or as JSON with a `token` key
    arn = secrets.create_secret(Name="influx", SecretString=stored)["ARN"]
    made: list[str] = []

    # When neither the flag nor INFLUXDB_TOKEN gives one
    token = store_access.influxdb_token(
        None, {"INFLUXDB_TOKEN": " ", "INFLUXDB_TOKEN_SECRET_ARN": arn}, clients(made)
    )

    # Then the token is the secret's, read with a client of the secret's region
    assert token == "plain-t0ken"
    assert made == [REGION]


def test_the_flag_then_the_variable_come_before_the_secret(secrets: Any) -> None:
    # Given a secret and the other two ways
    arn = secrets.create_secret(Name="influx", SecretString="from-secret")["ARN"]
    made: list[str] = []
    env = {"INFLUXDB_TOKEN": "from-env", "INFLUXDB_TOKEN_SECRET_ARN": arn}

    # When the token is resolved with each
    by_flag = store_access.influxdb_token("from-flag", env, clients(made))
    by_env = store_access.influxdb_token(None, env, clients(made))
    none = store_access.influxdb_token(None, {}, clients(made))

    # Then the flag, then INFLUXDB_TOKEN win, the secret is not read, and none is none
    assert (by_flag, by_env, none) == ("from-flag", "from-env", None)
    assert made == []


@pytest.mark.parametrize(
    ("arn", "says"),
    [
        (GONE, f"cannot read the InfluxDB token from {GONE}: ResourceNotFoundException: "),
        ("influx-token", "INFLUXDB_TOKEN_SECRET_ARN 'influx-token' is not a Secrets Manager"),
    ],
)  # fmt: skip
def test_a_secret_that_cannot_be_read_is_one_sentence(secrets: Any, arn: str, says: str) -> None:
    # Given a secret ARN that names nothing, or is no ARN
    # When the token is resolved
    with pytest.raises(StoreAccessError) as raised:
        store_access.influxdb_token(None, {"INFLUXDB_TOKEN_SECRET_ARN": arn}, clients([]))

    # Then the error says which secret and why
    assert str(raised.value).startswith(says)


def test_the_backtest_sends_the_token_the_secret_holds(rules: Path, local_aws: str) -> None:  # noqa: F811
    # Given the local AWS holding the token's secret, as the deployed function has it
    client = boto3.client(
        "secretsmanager", endpoint_url=local_aws, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    arn = client.create_secret(Name="cli-influx", SecretString=json.dumps({"token": "s3cret"}))[
        "ARN"
    ]
    server = Query([chunk((T0, "pump-17", 80.0))])
    env = {**FAKE, "AWS_ENDPOINT_URL": local_aws, "INFLUXDB_TOKEN": "",
           "INFLUXDB_TOKEN_SECRET_ARN": arn}  # fmt: skip
    with server as url:
        # When the backtest reads the store with only the secret's ARN in the environment
        result = telemetry("backtest", "--rules", str(rules), *store_args(url), env=env)
        missing = telemetry(
            "backtest", "--rules", str(rules), *store_args(url),
            env={**env, "INFLUXDB_TOKEN_SECRET_ARN": arn + "-gone"},
        )  # fmt: skip

    # Then it replays, its request carrying the secret's token
    assert result.returncode == 0, result.stderr
    assert server.authorization == ["Token s3cret"]
    # and a secret that cannot be read is one line, exit 1, before the store is asked
    assert_user_error(missing, code=1, says="cannot read the InfluxDB token from ")


@pytest.mark.parametrize(
    ("environ", "region"),
    [
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-1"}, "eu-west-1"),
        ({"AWS_REGION": " ", "AWS_DEFAULT_REGION": "us-east-1"}, None),
        ({}, None),
    ],
)
def test_the_region_is_aws_region_else_the_sdks_choice(
    environ: dict[str, str], region: str | None
) -> None:
    # When the region is chosen, Then AWS_REGION (as Lambda sets it) or the SDK's default
    assert store_access.aws_region(environ) == region
    options = store_access.timestream_client_options(environ)
    assert options.get("region_name") == region
    assert "endpoint_url" not in options


def test_aws_endpoint_url_is_given_to_timestream_explicitly() -> None:
    # Given AWS_ENDPOINT_URL (a local AWS), When the client's options are chosen
    options = store_access.timestream_client_options({"AWS_ENDPOINT_URL": "http://127.0.0.1:5"})

    # Then the endpoint is explicit: else endpoint discovery names the real service
    assert options == {"endpoint_url": "http://127.0.0.1:5"}


def test_timestream_is_read_in_the_region_aws_region_names(
    rules: Path,
    local_aws: str,  # noqa: F811
) -> None:
    # Given only AWS_REGION (as Lambda and the docs have it), not AWS_DEFAULT_REGION
    bare = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env = {**bare, **FAKE, "AWS_ENDPOINT_URL": local_aws, "AWS_CONFIG_FILE": "/nonexistent"}
    store = ["backtest", "--rules", str(rules), "--from", "timestream", "--database",
             "telemetry", "--table", "readings", "--since", "1h"]  # fmt: skip

    # When the backtest reads Timestream, then again without any region
    result = run(store, {**env, "AWS_REGION": REGION})
    without = run(store, env)

    # Then the first reaches the (local, empty) table: nothing to replay, exit 2
    assert_user_error(result, code=2, says="no reading to replay: Timestream telemetry.readings")
    # and the second is refused for want of a region, exit 1
    assert_user_error(without, code=1, says="cannot use Timestream: You must specify a region.")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://admin:pw@127.0.0.1:9", "must not carry credentials"),
        ("http://admin@127.0.0.1:9", "must not carry credentials"),
        ("http://127.0.0.1:9?u=admin&p=pw", "must have no query string or fragment"),
        ("http://127.0.0.1:9/#x", "must have no query string or fragment"),
        ("ftp://127.0.0.1:9", "must be an http(s) URL"),
        ("http://127.0.0.1:99999", "has an invalid port"),
    ],
)
def test_a_store_url_with_credentials_or_a_query_is_refused_without_echoing_it(
    rules: Path, url: str, says: str
) -> None:
    # When the backtest is given such an --influxdb-url
    result = telemetry(
        "backtest", "--rules", str(rules), "--from", "influxdb", "--influxdb-url", url,
        "--database", "telemetry", "--since", "1h",
    )  # fmt: skip

    # Then one usage line says why, exit 2, and neither the password nor the URL is shown
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"telemetry backtest: error: argument --influxdb-url: {says}"
        + (" (give the token in INFLUXDB_TOKEN or INFLUXDB_TOKEN_SECRET_ARN)"
           if "credentials" in says else "")
        + (" such as http://127.0.0.1:8086" if "http(s)" in says else "")
    )  # fmt: skip
    assert "pw" not in result.stderr
    assert url not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_plain_store_url_is_taken_as_given() -> None:
    # When a URL with a path and a port is checked, Then it is kept as it is
    assert store_access.influxdb_url(" https://influx.example:8086/prefix ") == (
        "https://influx.example:8086/prefix"
    )


def test_a_missing_database_hints_at_influxdb_2s_mapping(rules: Path) -> None:
    # Given a store that has no such database (InfluxQL's answer for it)
    server = Query([{"results": [{"statement_id": 0, "error": "database not found: sensors"}]}])
    with server as url:
        # When the backtest reads it
        result = telemetry("backtest", "--rules", str(rules), *store_args(url))

    # Then one line with the store's own words, and where InfluxDB 2 keeps the name
    assert_user_error(
        result,
        code=1,
        says=f"InfluxDB at {url}, database telemetry: database not found: sensors (if this is "
        "InfluxDB 2: --database names a bucket's DBRP mapping, which `influx v1 dbrp create` "
        "makes)",
    )
    assert len(result.stderr.splitlines()) == 1


def test_other_errors_carry_no_such_hint(rules: Path) -> None:
    # Given a store answering another error, When the backtest reads it
    with Query([{"error": "query interrupted"}]) as url:
        result = telemetry("backtest", "--rules", str(rules), *store_args(url))

    # Then it is the store's words alone
    assert_user_error(result, code=1, says=f"InfluxDB at {url}: query interrupted")
    assert "dbrp" not in result.stderr
