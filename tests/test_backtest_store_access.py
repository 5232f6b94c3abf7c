"""`telemetry backtest --from influxdb|timestream` reaches the store with the
function's own options: the InfluxDB token from the flag, INFLUXDB_TOKEN or the
secret INFLUXDB_TOKEN_SECRET_ARN names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from telemetry.local import store_access
from telemetry.local.store_access import StoreAccessError
from tests.test_backtest_influxdb import Query, chunk, store_args, telemetry
from tests.test_cli import T0, WORKED_RULE, assert_user_error, local_aws  # noqa: F401

REGION = "eu-west-1"
GONE = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gone-AbCdEf"
FAKE = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


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
