"""Delivery promises at their edges: overlapping duplicates, refusals, AWS's size limits.

Each story is one the adversarial review found broken: a duplicate delivery
running beside the first, a transition SNS refuses for good, a device whose
record outgrows a DynamoDB item, a BatchGetItem that keeps leaving keys
unprocessed, and a shadow that cannot hold every active alert.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from telemetry import handler
from telemetry.adapters.state_store import MAX_ITEM_BYTES, DynamoStateStore, item_bytes
from telemetry.errors import DependencyError
from tests.localaws import LocalAws, before, fail, generous_rules, local_stack, message

NOW = 1_764_237_600_000  # 2025-11-27T10:00:00Z
MINUTE = 60_000


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    with local_stack(["pump-17", "pump-18"], NOW + 10 * MINUTE) as stack:
        yield stack


def statuses(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["status"], a["severity"]) for a in alerts]


class Context:
    """What Lambda hands an invocation: its id and its remaining time."""

    def __init__(self, request_id: str, remaining_ms: int = 120_000) -> None:
        self.aws_request_id = request_id
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


# ---------------------------------------------------------------- duplicates


def test_a_duplicate_delivery_overlapping_the_first_run_publishes_once(aws: LocalAws) -> None:
    # Given the first run has committed its alert and is about to publish it
    first, first_clients = aws.runtime()
    duplicate, _ = aws.runtime()
    event = message("pump-17", NOW, ("temp-1", 95))
    results: list[dict[str, Any]] = []
    before(
        first_clients.sns,
        "Publish",
        lambda: results.append(handler.handle(event, duplicate, Context("dup"))),
    )

    # When the same event, delivered again, runs to the end in another environment
    handler.handle(event, first, Context("first"))

    # Then exactly one of them published the alert
    assert len(results) == 1
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]
    assert "outbox" not in (aws.state_item("pump-17") or {})


def test_duplicate_deliveries_on_real_threads_publish_each_transition_once(
    aws: LocalAws,
) -> None:
    # Given one event delivered to three execution environments at the same time,
    # each slow to publish (so that their runs overlap)
    runtimes = [aws.runtime() for _ in range(3)]
    for _, clients in runtimes:
        before(clients.sns, "Publish", lambda: time.sleep(0.2), times=5)
    event = message("pump-17", NOW, ("temp-1", 95))
    start = threading.Barrier(len(runtimes))
    errors: list[Exception] = []

    def deliver(rt: handler.Runtime, name: str) -> None:
        start.wait()
        try:
            handler.handle(event, rt, Context(name))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    # When they all run
    threads = [
        threading.Thread(target=deliver, args=(rt, f"env-{i}"))
        for i, (rt, _) in enumerate(runtimes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then the alert went out once and nothing is left to deliver
    assert errors == []
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]
    assert "outbox" not in (aws.state_item("pump-17") or {})


def test_an_entry_whose_claimant_crashed_is_delivered_once_its_lease_ends(aws: LocalAws) -> None:
    # Given a run that committed an alert, failed to publish it, and could not even
    # release its claim (its state write failed too)
    rt, clients = aws.runtime()
    fail(clients.sns, "Publish", "InternalError")
    puts = [0]

    def release_fails(params: dict[str, Any], **_: Any) -> None:
        if params["Item"]["deviceId"]["S"] != "pump-17":
            return  # the notification group's write
        puts[0] += 1
        if puts[0] == 2:
            raise DependencyError("dynamodb", "PutItem", "InternalServerError", "x", transient=True)

    clients.dynamodb.meta.events.register("before-parameter-build.dynamodb.PutItem", release_fails)
    with pytest.raises(DependencyError):
        handler.handle(message("pump-17", NOW, ("temp-1", 95)), rt, Context("crashed", 60_000))

    # When a newer message arrives while its lease still holds, and another after it
    other, _ = aws.runtime()
    handler.handle(message("pump-17", NOW + 1000, ("temp-1", 96)), other, Context("a"))
    held = aws.alerts()
    aws.now_ms += 2 * MINUTE
    handler.handle(message("pump-17", NOW + 2000, ("temp-1", 96)), other, Context("b"))

    # Then the first left it to its claimant; the second, after the lease, delivered it
    assert held == []
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]
    assert "outbox" not in (aws.state_item("pump-17") or {})


def test_a_failed_run_releases_its_claims_so_its_retry_delivers_at_once(aws: LocalAws) -> None:
    # Given a run that committed an alert and then failed to publish it
    rt, clients = aws.runtime()
    fail(clients.sns, "Publish", "InternalError")
    event = message("pump-17", NOW, ("temp-1", 95))
    with pytest.raises(DependencyError):
        handler.handle(event, rt, Context("first"))

    # When Lambda retries it at once, well within the first run's lease
    handler.handle(event, rt, Context("retry"))

    # Then the retry delivered it
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]


# ---------------------------------------------------------------- refusals


def test_a_transition_sns_refuses_for_good_is_dead_lettered_and_the_device_goes_on(
    aws: LocalAws,
) -> None:
    # Given SNS refuses the device's next message as an invalid parameter
    rt, clients = aws.runtime()
    fail(clients.sns, "Publish", "InvalidParameter", status=400)

    # When the alert is raised
    summary = handler.handle(message("pump-17", NOW, ("temp-1", 95)), rt)

    # Then the invocation succeeds, the transition is in the dead-letter queue with
    # its reason, and it is not kept in the outbox to wedge the device
    assert [t["status"] for t in summary["transitions"]] == ["RAISED"]
    (dead,) = aws.dead_letters()
    assert dead["source"] == "sns"
    assert dead["code"] == "sns_rejected"
    assert "InvalidParameter" in dead["reason"]
    assert dead["payload"]["status"] == "RAISED"
    assert dead["payload"]["alertId"]
    assert "outbox" not in (aws.state_item("pump-17") or {})

    # and the next change of the device is published as usual
    handler.handle(message("pump-17", NOW + 1000, ("temp-1", 50)), rt)
    assert statuses(aws.alerts()) == [("RESOLVED", "OK")]


def test_a_batch_entry_refused_for_good_leaves_its_siblings_published(aws: LocalAws) -> None:
    # Given SNS takes a batch but refuses one entry for good (a sender fault)
    rt, clients = aws.runtime()

    refused: list[str] = []

    def withhold_second(params: dict[str, Any], **_: Any) -> None:
        entries = params["PublishBatchRequestEntries"]
        refused.append(entries[1]["Id"])
        params["PublishBatchRequestEntries"] = [entries[0], *entries[2:]]

    def report_it_failed(parsed: dict[str, Any], **_: Any) -> None:
        parsed["Failed"] = [{"Id": refused[-1], "Code": "InvalidParameter", "SenderFault": True}]

    events = clients.sns.meta.events
    events.register("before-parameter-build.sns.PublishBatch", withhold_second)
    events.register("after-call.sns.PublishBatch", report_it_failed)
    event = message("pump-17", NOW, ("temp-1", 95), ("temp-2", 96), ("temp-3", 97))

    # When the three alerts are raised
    handler.handle(event, rt)

    # Then two reach operators, one is dead-lettered, nothing is retried
    assert len(aws.alerts()) == 2
    assert [d["code"] for d in aws.dead_letters()] == ["sns_rejected"]
    assert "outbox" not in (aws.state_item("pump-17") or {})


# ---------------------------------------------------------------- DynamoDB item size


def long_id(prefix: str, i: int) -> str:
    return f"{prefix}-{i:05d}-" + "x" * (128 - len(prefix) - 7)


def published(clients: Any) -> list[dict[str, Any]]:
    """Every alert body the function hands SNS. The operators' queue is unsubscribed:
    moto's SQS slows quadratically with hundreds of messages waiting."""
    sns = boto3.client("sns")
    for subscription in sns.list_subscriptions()["Subscriptions"]:
        sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
    bodies: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        entries = params.get("PublishBatchRequestEntries", [params])
        bodies.extend(json.loads(entry["Message"]) for entry in entries)

    events = clients.sns.meta.events
    events.register("before-parameter-build.sns.Publish", record)
    events.register("before-parameter-build.sns.PublishBatch", record)
    return bodies


def written_items(clients: Any) -> list[int]:
    sizes: list[int] = []

    def put(params: dict[str, Any], **_: Any) -> None:
        sizes.append(item_bytes(params["Item"]))

    def transact(params: dict[str, Any], **_: Any) -> None:
        sizes.extend(item_bytes(a["Put"]["Item"]) for a in params["TransactItems"] if "Put" in a)

    events = clients.dynamodb.meta.events
    events.register("before-parameter-build.dynamodb.PutItem", put)
    events.register("before-parameter-build.dynamodb.TransactWriteItems", transact)
    return sizes


@pytest.mark.slow
def test_nine_hundred_sensors_breaching_at_once_are_all_alerted(
    aws: LocalAws, tmp_path: Path
) -> None:
    # Given a device whose 900 sensors, with 128-character ids, breach in one message,
    # and a notification budget of 1,000 messages a minute
    rt, clients = aws.runtime(RULES_PATH=generous_rules(tmp_path))
    sizes = written_items(clients)
    alerts = published(clients)
    readings = [(long_id("temp", i), 95.0) for i in range(900)]

    # When it is processed, and then (a minute later) every sensor recovers
    handler.handle(message("pump-17", NOW, *readings), rt)
    aws.now_ms += MINUTE
    handler.handle(message("pump-17", NOW + 1000, *[(s, 50.0) for s, _ in readings]), rt)

    # Then every alert was raised and resolved, and no item written exceeded 400 KB
    assert Counter(a["status"] for a in alerts) == {"RAISED": 900, "RESOLVED": 900}
    assert sizes
    assert max(sizes) <= MAX_ITEM_BYTES
    assert "outbox" not in (aws.state_item("pump-17") or {})


def test_quiet_entries_are_pruned_by_age_to_keep_the_item_under_its_limit(
    aws: LocalAws,
) -> None:
    # Given a device with 1,720 sensors of 128-character ids that each once counted a streak
    rt, clients = aws.runtime()
    sizes = written_items(clients)
    alerts = published(clients)
    sensors = [long_id("temp", i) for i in range(1_720)]
    handler.handle(message("pump-17", NOW, *[(s, 95.0) for s in sensors]), rt)
    handler.handle(message("pump-17", NOW + 1000, *[(s, 50.0) for s in sensors]), rt)
    del alerts[:]

    # When one of them breaches again, once the notification budget those spent is back
    aws.now_ms += 10 * MINUTE
    handler.handle(message("pump-17", NOW + 2000, (sensors[0], 95.0)), rt)

    # Then it is alerted, and every write stayed within the item limit
    assert [(a["status"], a["sensorId"]) for a in alerts] == [("RAISED", sensors[0])]
    assert max(sizes) <= MAX_ITEM_BYTES


def test_the_oldest_quiet_entries_go_first_when_an_item_must_shrink() -> None:
    # Given a state store with a small item budget, and a device with one alert and
    # many quiet entries of different ages
    from telemetry.core.alerts import AlertState, Severity
    from telemetry.core.state import DeviceRecord

    with local_stack([], NOW) as aws:
        client = boto3.client("dynamodb")
        store = DynamoStateStore(aws.stack.state_table, client, item_budget=4_000)
        state = {(f"quiet-{i:03d}", "r"): AlertState(last_ms=NOW + i) for i in range(200)}
        state[("hot", "r")] = AlertState(Severity.CRITICAL, "above", "a" * 32, NOW, 95.0, NOW)

        # When it is saved
        saved = store.save(DeviceRecord("pump-17", state=state))
        item = client.get_item(TableName=aws.stack.state_table, Key={"deviceId": {"S": "pump-17"}})

        # Then it fits in one item, keeps the alert and the newest quiet entries
        assert saved.parts == 0
        assert item_bytes(item["Item"]) <= 4_000
        assert ("hot", "r") in saved.state
        kept = sorted(k for k in saved.state if k[0].startswith("quiet"))
        assert kept == [(f"quiet-{i:03d}", "r") for i in range(200 - len(kept), 200)]
        assert 0 < len(kept) < 200
        assert store.load("pump-17").state == saved.state


def test_a_record_too_large_for_one_item_is_split_and_read_back_whole() -> None:
    # Given a state store whose item budget is small, and a record that needs three parts
    from telemetry.core.alerts import AlertState, Severity
    from telemetry.core.state import DeviceRecord

    with local_stack([], NOW) as aws:
        client = boto3.client("dynamodb")
        store = DynamoStateStore(aws.stack.state_table, client, item_budget=4_000)
        state = {
            (f"s{i:03d}", "r"): AlertState(Severity.WARNING, "above", "a" * 32, NOW, 80.0, NOW)
            for i in range(100)
        }

        # When it is saved, then shrunk, then read back
        saved = store.save(DeviceRecord("pump-17", state=state))
        loaded = store.load("pump-17")
        smaller = dict(list(state.items())[:10])
        store.save(DeviceRecord("pump-17", loaded.version, smaller, parts=loaded.parts))
        again = store.load_many(["pump-17"])["pump-17"]

        # Then the whole state came back each time, and the parts no longer needed are gone
        assert saved.parts > 2
        assert loaded.state == state
        assert again.state == smaller
        assert again.parts <= 1
        keys = {i["deviceId"]["S"] for i in client.scan(TableName=aws.stack.state_table)["Items"]}
        assert len(keys) == 1 + again.parts


# ---------------------------------------------------------------- BatchGetItem


def test_unprocessed_keys_are_retried_with_backoff_then_raised_as_transient() -> None:
    # Given DynamoDB that keeps leaving the key unprocessed
    client = boto3.client("dynamodb", region_name="us-east-1")
    pauses: list[float] = []
    store = DynamoStateStore("state", client, sleep=pauses.append)
    unprocessed = {"state": {"Keys": [{"deviceId": {"S": "pump-17"}}], "ConsistentRead": True}}
    with Stubber(client) as stub:
        for _ in range(8):
            stub.add_response("batch_get_item", {"Responses": {}, "UnprocessedKeys": unprocessed})

        # When records are loaded, Then it gives up after a bounded number of attempts
        with pytest.raises(DependencyError) as raised:
            store.load_many(["pump-17"])

    # and it waited longer each time, without spinning
    assert raised.value.transient
    assert raised.value.code == "UnprocessedKeys"
    assert len(pauses) == 7
    assert pauses == sorted(pauses)
    assert pauses[0] > 0


def test_keys_left_unprocessed_once_are_read_on_the_next_attempt() -> None:
    # Given DynamoDB that leaves the key unprocessed once
    client = boto3.client("dynamodb", region_name="us-east-1")
    pauses: list[float] = []
    store = DynamoStateStore("state", client, sleep=pauses.append)
    key = {"deviceId": {"S": "pump-17"}}
    item = key | {"version": {"N": "3"}, "alerts": {"S": "{}"}}
    with Stubber(client) as stub:
        stub.add_response(
            "batch_get_item",
            {"Responses": {}, "UnprocessedKeys": {"state": {"Keys": [key]}}},
        )
        stub.add_response("batch_get_item", {"Responses": {"state": [item]}})

        # When records are loaded
        records = store.load_many(["pump-17"])

    # Then the record comes back after one pause
    assert records["pump-17"].version == 3
    assert len(pauses) == 1


# ---------------------------------------------------------------- shadow mirror


def mirror_failures(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        r.__dict__
        for r in caplog.records
        if r.getMessage().startswith("shadow mirror update failed")
    ]


def test_the_mirror_converges_after_more_alerts_than_it_holds_resolve(aws: LocalAws) -> None:
    # Given 120 sensors alerting at once (more than a shadow holds)
    rt, _ = aws.runtime()
    sensors = [f"temp-{i:03d}" for i in range(120)]
    handler.handle(message("pump-17", NOW, *[(s, 95.0) for s in sensors]), rt)
    full = aws.shadow("pump-17")

    # When 100 of them resolve
    handler.handle(message("pump-17", NOW + 1000, *[(s, 50.0) for s in sensors[20:]]), rt)

    # Then the mirror listed what fit and said how many it left out, and now lists
    # exactly the 20 still active
    assert 0 < len(full["alerts"]) < 120
    assert full["alertsOmitted"] == 120 - len(full["alerts"])
    now = aws.shadow("pump-17")
    assert sorted(k for k, v in now["alerts"].items() if v) == sensors[:20]
    assert "alertsOmitted" not in now


def test_a_throttled_mirror_update_is_logged_counted_and_repaired_later(
    aws: LocalAws, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given the shadow service throttles past the SDK's retries
    rt, clients = aws.runtime()
    fail(clients.iot_data, "UpdateThingShadow", "ThrottlingException", status=429)

    # When an alert is raised through the Lambda entry point
    with handler.observed() as outcomes:
        handler.handle(message("pump-17", NOW, ("temp-1", 95)), rt)
        handler.emit_metrics(outcomes)
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]

    # Then the failure has a log line with its reason and a metric saying it may heal
    (failed,) = mirror_failures(caplog)
    assert (failed["reason"], failed["retryable"]) == ("ThrottlingException", True)
    (metric,) = [x for x in emf if "ShadowMirrorFailures" in x]
    assert metric["Retryable"] == "true"
    assert aws.state_item("pump-17")["shadowStale"]["BOOL"] is True  # type: ignore[index]

    # and the next invocation rewrites the mirror
    handler.handle(message("pump-17", NOW + 1000, ("temp-1", 96)), rt)
    assert aws.shadow("pump-17")["alerts"]["temp-1"]["severity"] == "CRITICAL"


def test_a_mirror_the_function_may_not_write_fails_the_invocation_and_says_so(
    aws: LocalAws, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the shadow service refuses the function's credentials
    rt, clients = aws.runtime()
    fail(clients.iot_data, "UpdateThingShadow", "UnauthorizedException", status=401)

    # When an alert is raised, Then the invocation fails as misconfigured
    with pytest.raises(DependencyError) as raised:
        handler.handle(message("pump-17", NOW, ("temp-1", 95)), rt)
    assert not raised.value.transient

    # after the alert went out, with a log line classifying the failure as permanent
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]
    (failed,) = mirror_failures(caplog)
    assert (failed["reason"], failed["retryable"]) == ("UnauthorizedException", False)
