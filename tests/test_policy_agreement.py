"""Template and code agree: every AWS call the function makes is allowed.

The calls are not a hand-kept list: they are recorded while the function runs
every path (direct and stream events, rejections, transitions, a conflicting
commit, the shadow) under moto, then each is checked against the function
role's policy after the SAM transform, on the resource the template grants.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from moto import mock_aws

from telemetry import handler
from telemetry.local.provision import provision
from telemetry.local.streams import kinesis_event, sqs_event
from telemetry.settings import Settings
from tests.iam import ACTIONS, allowed, required_grant
from tests.localaws import CallLog, LocalAws, before, message, record_calls

NOW = 1_764_237_600_000

# Which request parameter names the resource, per service, and the setting it must equal.
RESOURCE_PARAMS = {
    "dynamodb": ("TableName", "state_table"),
    "sns": ("TopicArn", "alerts_topic_arn"),
    "sqs": ("QueueUrl", "dead_letter_queue_url"),
    "timestream-write": ("TableName", "timestream_table"),
}


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[CallLog, Settings]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            stack = provision(things=["pump-1", "pump-2"])
            aws = LocalAws(stack, Settings.from_env(stack.environment()), NOW + 60_000)
            yield exercise(aws), aws.settings


def exercise(aws: LocalAws) -> CallLog:
    """Run the function through every path that talks to AWS."""
    rt, clients = aws.runtime()
    log = record_calls(clients)
    other, _ = aws.runtime()
    # a conflicting commit: another invocation writes between our read and write
    before(
        clients.dynamodb,
        "PutItem",
        lambda: handler.handle(message("pump-2", NOW - 5000, ("temp-1", 50)), other),
    )
    bad = message("pump-1", NOW, ("temp-1", 95), ("temp-2", 96))
    bad["data"].append({"sensorId": "x", "value": "NaN"})
    handler.handle(bad, rt)  # rejection, two transitions (PublishBatch), shadow
    handler.handle(message("pump-2", NOW, ("temp-1", 95)), rt)  # conflict, single Publish
    handler.handle(kinesis_event([message("pump-1", NOW + 1000, ("temp-1", 20))]), rt)
    handler.handle(sqs_event([message("pump-2", NOW + 1000, ("temp-1", 20))]), rt)
    sweep = {
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": "2025-11-27T10:01:00Z",
    }
    handler.handle(sweep, rt)  # the due index
    return log


def exercise_actions(aws: LocalAws) -> CallLog:
    """Run the actions function through every path that talks to AWS: an action
    applied (state, history, SNS, shadow), one refused, one malformed from the topic."""
    from telemetry import actions

    rt, clients = aws.runtime()
    handler.handle(message("pump-1", NOW, ("temp-1", 95)), rt)
    log = record_calls(clients)
    act = {"deviceId": "pump-1", "sensorId": "temp-1", "rule": "temperature-high", "by": "ops"}
    actions.handle_action(act | {"action": "acknowledge"}, rt)
    actions.handle_action(act | {"action": "acknowledge"}, rt)  # refused: already acknowledged
    actions.handle_action(
        act | {"action": "snooze", "until": "1h", "via": "ops/alerts/actions"}, rt
    )
    actions.handle_action({"action": "reset", "via": "ops/alerts/actions"}, rt)  # dead-lettered
    return log


@pytest.fixture(scope="module")
def recorded_actions() -> Iterator[CallLog]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            stack = provision(things=["pump-1"], prefix="actions")
            aws = LocalAws(stack, Settings.from_env(stack.environment()), NOW + 60_000)
            yield exercise_actions(aws)


def test_every_call_of_the_actions_function_is_allowed_to_it(recorded_actions: CallLog) -> None:
    # Given the calls the actions function made on every path
    operations = {(service, operation) for service, operation, _ in recorded_actions.calls}
    assert {("sns", "Publish"), ("iot-data", "UpdateThingShadow"), ("sqs", "SendMessageBatch")} <= (
        operations
    )
    # Then its own role allows each of them
    refused = [op for op in operations if not allowed(*required_grant(*op), function=ACTIONS)]
    assert refused == []


def test_every_recorded_call_is_allowed_on_its_resource(
    recorded: tuple[CallLog, Settings],
) -> None:
    # Given the calls the function made on every path
    log, _ = recorded
    operations = {(service, operation) for service, operation, _ in log.calls}
    assert len(operations) >= 7  # sanity: the paths above were all taken

    # When each is mapped to the IAM action and resource kind it needs
    needed = {op: required_grant(*op) for op in operations}

    # Then the deployed role allows every one of them
    refused = [op for op, grant in needed.items() if not allowed(*grant)]
    assert refused == []


def test_calls_target_the_resources_named_by_the_environment(
    recorded: tuple[CallLog, Settings],
) -> None:
    # Given the calls and the settings the template sets
    log, settings = recorded

    # When each call's resource parameter is read
    mismatches: list[tuple[str, str, Any]] = []
    for service, operation, params in log.calls:
        if service not in RESOURCE_PARAMS or operation in {"BatchGetItem", "DescribeEndpoints"}:
            continue
        key, setting = RESOURCE_PARAMS[service]
        if params.get(key) != getattr(settings, setting):
            mismatches.append((service, operation, params.get(key)))
    batch_tables = {
        table for p in log.params("dynamodb", "BatchGetItem") for table in p["RequestItems"]
    }

    # Then each goes to the table, topic or queue of the stack, and nothing else
    assert mismatches == []
    assert batch_tables == {settings.state_table}
    assert {p["thingName"] for p in log.params("iot-data", "UpdateThingShadow")} <= {
        "pump-1",
        "pump-2",
    }


# ---------------------------------------------------------------- InfluxDB as the store


@dataclass
class InfluxAws(LocalAws):
    """The stack with InfluxDB as the store: every runtime gets these variables."""

    store: dict[str, str] = field(default_factory=dict)

    def runtime(self, **overrides: str) -> Any:
        return super().runtime(**(self.store | overrides))


@pytest.fixture(scope="module")
def recorded_influxdb() -> Iterator[tuple[CallLog, Settings]]:
    """The same paths with TIMESERIES_STORE=influxdb, the token in Secrets Manager."""
    import boto3

    from tests.influxdb_server import FakeInflux

    with pytest.MonkeyPatch.context() as patch, FakeInflux(flavor="v3") as influx:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            stack = provision(things=["pump-1", "pump-2"], prefix="influx")
            secrets = boto3.client("secretsmanager")
            arn = secrets.create_secret(Name="influx", SecretString="write-token")["ARN"]
            store = {
                "TIMESERIES_STORE": "influxdb",
                "INFLUXDB_URL": influx.url,
                "INFLUXDB_DATABASE": "telemetry",
                "INFLUXDB_TOKEN_SECRET_ARN": arn,
            }
            settings = Settings.from_env(stack.environment() | store)
            aws = InfluxAws(stack, settings, NOW + 60_000, store)
            yield exercise(aws), settings


def test_with_influxdb_every_recorded_call_is_allowed_and_none_is_timestream(
    recorded_influxdb: tuple[CallLog, Settings],
) -> None:
    # Given the calls the function made on every path with InfluxDB as the store
    log, settings = recorded_influxdb
    operations = {(service, operation) for service, operation, _ in log.calls}
    # Then each is allowed, the token's secret was read, and Timestream was never called
    assert [op for op in operations if not allowed(*required_grant(*op))] == []
    assert ("secretsmanager", "GetSecretValue") in operations
    assert not [op for op in operations if op[0].startswith("timestream")]
    secret_ids = {p["SecretId"] for p in log.params("secretsmanager", "GetSecretValue")}
    assert secret_ids == {settings.influxdb_token_secret_arn}
