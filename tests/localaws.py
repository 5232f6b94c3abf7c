"""Shared helpers for tests that run the function against moto.

- `LocalAws`: a provisioned stack in moto plus a way to build runtimes
  (each runtime is one execution environment, with its own clients) and to
  read back what the stack holds.
- `fail(client, operation, code)`: inject an AWS error moto cannot produce.
- `lose_response(client, operation)`: the call takes effect, its answer is lost.
- `Context`: what Lambda hands an invocation (its request id, its remaining time).
- `record_calls(clients)`: every AWS operation a runtime makes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from moto import mock_aws

from telemetry.adapters.state_store import DynamoStateStore
from telemetry.handler import Clients, Runtime, build_runtime
from telemetry.local.provision import Stack, provision
from telemetry.settings import Settings

ACCOUNT = "123456789012"
REGION = "us-east-1"


def service_event_name(client: Any) -> str:
    return str(client.meta.service_model.service_id.hyphenize())


def fail(
    client: Any,
    operation: str,
    code: str,
    *,
    times: int = 1,
    status: int = 500,
    extra: dict[str, Any] | None = None,
    before: Callable[[], None] | None = None,
) -> list[int]:
    """Make the next `times` calls of `operation` on `client` fail with `code`.

    Returns a one-item list counting the failures injected so far. `before`
    runs just before each injected failure (to interleave another invocation).
    """
    injected = [0]

    def hook(**_: Any) -> None:
        if injected[0] >= times:
            return
        injected[0] += 1
        if before is not None:
            before()
        response: dict[str, Any] = {
            "Error": {"Code": code, "Message": f"injected {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        response.update(extra or {})
        raise ClientError(response, operation)  # type: ignore[arg-type]

    client.meta.events.register(f"before-call.{service_event_name(client)}.{operation}", hook)
    return injected


def lose_response(client: Any, operation: str, *, times: int = 1) -> list[int]:
    """Let the next `times` successful calls of `operation` on `client` take effect,
    then lose their answers: the caller sees a read timeout after the SDK's
    retries (the write was made; the function cannot know it).

    Returns a one-item list counting the answers lost so far."""
    lost = [0]

    def hook(http_response: Any, **_: Any) -> None:
        if lost[0] >= times or http_response.status_code >= 300:
            return
        lost[0] += 1
        raise ReadTimeoutError(endpoint_url=f"https://{service_event_name(client)}.local/")

    client.meta.events.register(f"after-call.{service_event_name(client)}.{operation}", hook)
    return lost


class Context:
    """What Lambda hands an invocation: its request id (the same for every retry
    of an asynchronous invocation) and its remaining time."""

    def __init__(self, request_id: str, remaining_ms: int = 120_000) -> None:
        self.aws_request_id = request_id
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


def before(client: Any, operation: str, action: Callable[[], None], *, times: int = 1) -> None:
    """Run `action` just before the next `times` calls of `operation`."""
    done = [0]

    def hook(**_: Any) -> None:
        if done[0] < times:
            done[0] += 1
            action()

    client.meta.events.register(f"before-call.{service_event_name(client)}.{operation}", hook)


@dataclass
class CallLog:
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def count(self, service: str, operation: str) -> int:
        return sum(1 for s, o, _ in self.calls if s == service and o == operation)

    def params(self, service: str, operation: str) -> list[dict[str, Any]]:
        return [p for s, o, p in self.calls if s == service and o == operation]


def record_calls(clients: Clients) -> CallLog:
    log = CallLog()
    for client in vars_of(clients):
        service = client.meta.service_model.service_name

        def hook(params: dict[str, Any], model: Any, _service: str = service, **_: Any) -> None:
            log.calls.append((_service, model.name, params))

        client.meta.events.register(f"before-parameter-build.{service_event_name(client)}", hook)
    return log


def vars_of(clients: Clients) -> list[Any]:
    """The runtime's boto3 clients (no Timestream client with InfluxDB as the store)."""
    every = (clients.timestream, clients.sns, clients.dynamodb, clients.iot_data, clients.sqs)
    return [c for c in (*every, clients.secretsmanager) if c is not None]


@dataclass
class LocalAws:
    stack: Stack
    settings: Settings
    now_ms: int

    def runtime(
        self, *, item_budget: int | None = None, **overrides: str
    ) -> tuple[Runtime, Clients]:
        """A fresh execution environment (cold start) with its own clients.

        `item_budget`: the bytes one state item may take (DynamoStateStore's
        `item_budget`), small to make records split over several items."""
        settings = Settings.from_env({**self.stack.environment(), **overrides})
        clients = Clients.create(settings)
        runtime = build_runtime(settings, clients, clock=lambda: self.now_ms)
        if item_budget is not None:
            store = DynamoStateStore(
                settings.state_table, clients.dynamodb, item_budget=item_budget
            )
            # The pipeline commits and the delivery clears: both through the small items.
            runtime.pipeline._store = store
            runtime.pipeline.delivery._store = store
        return runtime, clients

    # --- reading back what the stack holds ---------------------------------
    def records(self, measure: str | None = None) -> list[dict[str, Any]]:
        from moto.timestreamwrite.models import timestreamwrite_backends

        backend = timestreamwrite_backends[ACCOUNT][REGION]
        table = backend.databases[self.stack.database].tables[self.stack.table]
        return [r for r in table.records if measure is None or r["MeasureName"] == measure]

    def _drain(self, url: str) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        out: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            )
            messages = answer.get("Messages", [])
            if not messages:
                return out
            for message in messages:
                out.append(message)
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def alerts(self) -> list[dict[str, Any]]:
        """Alert messages the operators' queue received, bodies parsed, with
        their attributes under `_attributes`, in arrival order."""
        out = []
        for message in self._drain(self.stack.operator_queue_url):
            body = json.loads(message["Body"])
            body["_attributes"] = {
                k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()
            }
            out.append(body)
        return out

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in self._drain(self.stack.dead_letter_queue_url)]

    def shadow(self, thing: str, name: str = "alerts") -> dict[str, Any]:
        iot = boto3.client("iot-data", region_name=REGION)
        kwargs = {"thingName": thing, **({"shadowName": name} if name else {})}
        payload = iot.get_thing_shadow(**kwargs)["payload"].read()
        return json.loads(payload)["state"]["reported"]  # type: ignore[no-any-return]

    def state_item(self, device_id: str) -> dict[str, Any] | None:
        ddb = boto3.client("dynamodb", region_name=REGION)
        return ddb.get_item(  # type: ignore[no-any-return]
            TableName=self.stack.state_table, Key={"deviceId": {"S": device_id}}
        ).get("Item")


@contextmanager
def local_stack(things: list[str], now_ms: int) -> Iterator[LocalAws]:
    """A provisioned stack in moto, with fake credentials and no endpoint override."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            stack = provision(things=things)
            yield LocalAws(stack, Settings.from_env(stack.environment()), now_ms)


def message(
    device_id: str, time_ms: int, *readings: tuple[str, float], **extra: Any
) -> dict[str, Any]:
    """A seed-format message as the topic rule hands it over."""
    data = []
    for sensor_id, value in readings:
        kind = "temperature" if sensor_id.startswith("temp") else "pressure"
        data.append({"sensorId": sensor_id, "type": kind, "value": value, "unit": "C"})
    return {
        "deviceId": device_id,
        "timestamp": time_ms,
        "receivedAt": time_ms + 50,
        "data": data,
        **extra,
    }


def iterate(items: list[Any]) -> Iterator[Any]:
    yield from items


GENEROUS_BUDGET = """\
notifications:
  window: 1m
  maxPerWindow: 1000
  digestEvery: 1m
"""


def generous_rules(directory: Path) -> str:
    """The shipped rules with a notification budget of 1,000 messages a minute,
    in `directory`: for tests that pin one message per transition (the default
    budget holds a group's 6th message in 10 minutes for a digest)."""
    from telemetry.core.rules import rule_files
    from telemetry.settings import DEFAULT_RULES_PATH

    for source in rule_files(DEFAULT_RULES_PATH):
        (directory / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    (directory / "zz-generous-budget.yaml").write_text(
        "rules: []\n" + GENEROUS_BUDGET, encoding="utf-8"
    )
    return str(directory)
