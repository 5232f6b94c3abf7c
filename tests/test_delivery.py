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
from telemetry.core.alerts import AlertState, Severity
from telemetry.core.state import SHADOW_REPAIR_DELAY_MS, DeviceRecord
from telemetry.errors import DependencyError
from telemetry.local.demo import scheduled_event
from tests.localaws import (
    Context,
    LocalAws,
    before,
    fail,
    generous_rules,
    local_stack,
    lose_response,
    message,
    record_calls,
)

NOW = 1_764_237_600_000  # 2025-11-27T10:00:00Z
MINUTE = 60_000


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    with local_stack(["pump-17", "pump-18"], NOW + 10 * MINUTE) as stack:
        yield stack


def statuses(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["status"], a["severity"]) for a in alerts]


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


def test_a_change_committed_between_anothers_commit_and_its_clear_is_kept(aws: LocalAws) -> None:
    # Given a device whose temp-2 is already in WARNING (its state item exists), and
    # invocation A, which has committed its alert and is about to publish it, when B,
    # with a reading of another sensor, runs to the end
    rt, _ = aws.runtime()
    handler.handle(message("pump-17", NOW, ("temp-2", 80)), rt)
    assert statuses(aws.alerts()) == [("RAISED", "WARNING")]
    a, a_clients = aws.runtime()
    b, _ = aws.runtime()
    before(
        a_clients.sns,
        "Publish",
        lambda: handler.handle(message("pump-17", NOW + 1000, ("temp-3", 95)), b, Context("b")),
    )
    calls = record_calls(a_clients)

    # When A publishes its alert and clears it from the outbox
    handler.handle(message("pump-17", NOW + 1000, ("temp-1", 95)), a, Context("a"))

    # Then B left A's claimed entry to A; A's clear lost the race to B's writes and
    # re-read (three writes of the device: its commit, the lost clear, the clear;
    # beside them, one of the notification group counting A's alert)
    device_puts = [
        p for p in calls.params("dynamodb", "PutItem") if p["Item"]["deviceId"]["S"] == "pump-17"
    ]
    assert len(device_puts) == 3
    assert calls.count("dynamodb", "PutItem") == 4
    assert [(x["status"], x["sensorId"]) for x in aws.alerts()] == [
        ("RAISED", "temp-3"),
        ("RAISED", "temp-1"),
    ]
    # and the state keeps B's change beside A's and the older alert, nothing to deliver
    record = DynamoStateStore(aws.stack.state_table, boto3.client("dynamodb")).load("pump-17")
    assert severities(record, ["temp-1", "temp-2", "temp-3"]) == {
        "temp-1": Severity.CRITICAL,
        "temp-2": Severity.WARNING,
        "temp-3": Severity.CRITICAL,
    }
    assert record.outbox == []


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


# ---------------------------------------------------------------- a lost answer


def test_a_retry_of_a_request_whose_commit_answer_was_lost_delivers_at_once(
    aws: LocalAws,
) -> None:
    # Given a run whose commit reached DynamoDB but whose answer was lost, so that it
    # failed without knowing it holds claims (and so could not release them)
    rt, clients = aws.runtime()
    lose_response(clients.dynamodb, "PutItem")
    event = message("pump-17", NOW, ("temp-1", 95))
    with pytest.raises(DependencyError):
        handler.handle(event, rt, Context("request-1"))
    assert "outbox" in (aws.state_item("pump-17") or {})

    # When Lambda retries the same request (the same request id), at once
    handler.handle(event, rt, Context("request-1"))

    # Then the retry delivered what its first attempt claimed, once, and nothing is left
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]
    assert "outbox" not in (aws.state_item("pump-17") or {})
    assert aws.shadow("pump-17")["alerts"]["temp-1"]["severity"] == "CRITICAL"


def test_a_duplicate_with_another_request_id_leaves_a_lost_answers_claims_to_their_lease(
    aws: LocalAws,
) -> None:
    # Given a run whose commit answer was lost, with a minute left when it started
    rt, clients = aws.runtime()
    lose_response(clients.dynamodb, "PutItem")
    event = message("pump-17", NOW, ("temp-1", 95))
    with pytest.raises(DependencyError):
        handler.handle(event, rt, Context("request-1", remaining_ms=MINUTE))

    # When the same event is delivered again as another request while the claim holds,
    # and once more after the lease (the deadline and its margin) has ended
    duplicate, _ = aws.runtime()
    handler.handle(event, duplicate, Context("request-2"))
    held = aws.alerts()
    aws.now_ms += 2 * MINUTE
    handler.handle(event, duplicate, Context("request-3"))

    # Then the duplicate published nothing; the alert went out once, after the lease
    assert held == []
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]
    assert "outbox" not in (aws.state_item("pump-17") or {})


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
    assert dead["reason"] == "sns_rejected: InvalidParameter: injected InvalidParameter"
    assert dead["detail"] == "InvalidParameter: injected InvalidParameter"
    assert (dead["deviceId"], dead["field"]) == ("pump-17", "transition")
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
        parsed["Failed"] = [
            {
                "Id": refused[-1],
                "Code": "InvalidParameter",
                "Message": "Invalid parameter: Message",
                "SenderFault": True,
            }
        ]

    events = clients.sns.meta.events
    events.register("before-parameter-build.sns.PublishBatch", withhold_second)
    events.register("after-call.sns.PublishBatch", report_it_failed)
    event = message("pump-17", NOW, ("temp-1", 95), ("temp-2", 96), ("temp-3", 97))

    # When the three alerts are raised
    handler.handle(event, rt)

    # Then two reach operators, the refused one is dead-lettered with SNS's reason,
    # nothing is retried
    assert sorted(a["sensorId"] for a in aws.alerts()) == ["temp-1", "temp-3"]
    (dead,) = aws.dead_letters()
    assert (dead["code"], dead["reason"]) == (
        "sns_rejected",
        "sns_rejected: InvalidParameter: Invalid parameter: Message",
    )
    assert (dead["payload"]["sensorId"], dead["payload"]["status"]) == ("temp-2", "RAISED")
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
        assert kept
        assert store.load("pump-17").state == saved.state
        # and as many of them as fit: with the next older one, the same are kept
        older = (f"quiet-{199 - len(kept):03d}", "r")
        again = store.save(DeviceRecord("pump-18", state=saved.state | {older: state[older]}))
        assert again.state == saved.state


def test_a_record_too_large_for_one_item_is_split_and_read_back_whole() -> None:
    # Given a state store whose item budget is small, and a record that needs several parts
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
        items = client.scan(TableName=aws.stack.state_table)["Items"]
        loaded = store.load("pump-17")
        smaller = dict(list(state.items())[:10])
        store.save(DeviceRecord("pump-17", loaded.version, smaller, parts=loaded.parts))
        again = store.load_many(["pump-17"])["pump-17"]

        # Then the whole state came back each time, each part within the budget, and
        # the smaller record is one item again: the parts no longer needed are gone
        assert saved.parts > 2
        assert len(items) == 1 + saved.parts
        assert max(item_bytes(i) for i in items) <= 4_000
        assert loaded.state == state
        assert again.state == smaller
        assert again.parts == 0
        keys = {i["deviceId"]["S"] for i in client.scan(TableName=aws.stack.state_table)["Items"]}
        assert keys == {"pump-17"}


SPLIT_BUDGET = 4_000
"""An item budget small enough that forty active alerts split over several items."""


def stored_record(aws: LocalAws, device_id: str) -> DeviceRecord:
    store = DynamoStateStore(
        aws.stack.state_table, boto3.client("dynamodb"), item_budget=SPLIT_BUDGET
    )
    return store.load(device_id)


def severities(record: DeviceRecord, sensors: list[str]) -> dict[str, Severity]:
    """Each sensor's severity under the default temperature rule (OK when the record
    no longer keeps the sensor: a quiet entry it dropped to fit)."""
    quiet = AlertState()
    return {s: record.state.get((s, "temperature-high"), quiet).severity for s in sensors}


def test_two_invocations_racing_on_a_split_record_lose_nothing_and_double_nothing(
    aws: LocalAws, tmp_path: Path
) -> None:
    # Given a device whose forty WARNING alerts make a record split over several items
    # (under a budget that publishes each of them)
    sensors = [f"temp-{i:03d}" for i in range(40)]
    rules = generous_rules(tmp_path)
    first, _ = aws.runtime(item_budget=SPLIT_BUDGET, RULES_PATH=rules)
    handler.handle(message("pump-17", NOW, *[(s, 80.0) for s in sensors]), first)
    assert stored_record(aws, "pump-17").parts > 1
    assert len(aws.alerts()) == 40
    # and invocation A, which has read it, about to commit when B runs to the end
    a, a_clients = aws.runtime(item_budget=SPLIT_BUDGET, RULES_PATH=rules)
    b, _ = aws.runtime(item_budget=SPLIT_BUDGET, RULES_PATH=rules)
    b_event = message("pump-17", NOW + 1000, (sensors[1], 50.0))
    before(
        a_clients.dynamodb,
        "TransactWriteItems",
        lambda: handler.handle(b_event, b, Context("b")),
    )
    calls = record_calls(a_clients)

    # When A, escalating another sensor, commits after B resolved one
    handler.handle(message("pump-17", NOW + 2000, (sensors[0], 95.0)), a, Context("a"))

    # Then A lost the race, re-read and committed again (three transactions: the lost
    # commit, the commit, the outbox clear), and each change went out once
    assert calls.count("dynamodb", "TransactWriteItems") == 3
    assert [(x["status"], x["sensorId"]) for x in aws.alerts()] == [
        ("RESOLVED", sensors[1]),
        ("ESCALATED", sensors[0]),
    ]
    # and the split record holds both changes, and nothing left to deliver
    record = stored_record(aws, "pump-17")
    assert record.parts > 1
    assert record.outbox == []
    assert severities(record, sensors) == {
        sensors[0]: Severity.CRITICAL,
        sensors[1]: Severity.OK,
        **dict.fromkeys(sensors[2:], Severity.WARNING),
    }
    # and the next readings of both sensors, unchanged, publish nothing again
    handler.handle(
        message("pump-17", NOW + 3000, (sensors[0], 95.0), (sensors[1], 50.0)), a, Context("c")
    )
    assert aws.alerts() == []


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


def test_a_stale_mirror_of_a_device_that_sends_nothing_more_is_rewritten_by_the_sweep(
    aws: LocalAws,
) -> None:
    # Given a raised alert whose mirror update the shadow service throttled, and a
    # device that sends nothing more
    rt, clients = aws.runtime()
    fail(clients.iot_data, "UpdateThingShadow", "ThrottlingException", status=429)
    handler.handle(message("pump-17", NOW, ("temp-1", 95)), rt)
    failed_at = aws.now_ms
    assert (aws.state_item("pump-17") or {})["shadowStale"]["BOOL"] is True
    calls = record_calls(clients)

    # When the sweep runs before the mirror's retry delay has passed, and after it
    aws.now_ms = failed_at + SHADOW_REPAIR_DELAY_MS - 1000
    early = handler.handle(scheduled_event(aws.now_ms), rt)
    early_writes = calls.count("iot-data", "UpdateThingShadow")
    aws.now_ms = failed_at + SHADOW_REPAIR_DELAY_MS
    later = handler.handle(scheduled_event(aws.now_ms), rt)

    # Then the early sweep left the device alone; the later one rewrote the mirror
    # whole (published nothing), and the device is no longer due
    assert (early["swept"], early_writes) == (0, 0)
    assert later["swept"] == 1
    assert later["transitions"] == []
    assert aws.shadow("pump-17")["alerts"]["temp-1"]["severity"] == "CRITICAL"
    item = aws.state_item("pump-17") or {}
    assert item["shadowStale"]["BOOL"] is False
    assert "dueAt" not in item
    assert statuses(aws.alerts()) == [("RAISED", "CRITICAL")]
    aws.now_ms += 10 * MINUTE
    assert handler.handle(scheduled_event(aws.now_ms), rt)["swept"] == 0


def test_a_mirror_repair_that_fails_again_is_due_again_after_the_delay(aws: LocalAws) -> None:
    # Given a stale mirror, and the shadow service throttling the sweep's repair too
    rt, clients = aws.runtime()
    fail(clients.iot_data, "UpdateThingShadow", "ThrottlingException", status=429, times=2)
    handler.handle(message("pump-17", NOW, ("temp-1", 95)), rt)

    # When the sweep tries after the delay, and again after another delay
    aws.now_ms += SHADOW_REPAIR_DELAY_MS
    first = handler.handle(scheduled_event(aws.now_ms), rt)
    aws.now_ms += SHADOW_REPAIR_DELAY_MS - 1000
    too_soon = handler.handle(scheduled_event(aws.now_ms), rt)
    aws.now_ms += 1000
    second = handler.handle(scheduled_event(aws.now_ms), rt)

    # Then each failure put the repair off by the delay, and the second try mended it
    assert (first["swept"], too_soon["swept"], second["swept"]) == (1, 0, 1)
    assert aws.shadow("pump-17")["alerts"]["temp-1"]["severity"] == "CRITICAL"
    assert "dueAt" not in (aws.state_item("pump-17") or {})


def test_a_mirror_failure_that_will_not_heal_is_left_to_the_devices_next_message(
    aws: LocalAws,
) -> None:
    # Given a mirror update the shadow service refuses in a way retrying cannot mend
    rt, clients = aws.runtime()
    fail(clients.iot_data, "UpdateThingShadow", "InvalidRequestException", status=400)
    handler.handle(message("pump-17", NOW, ("temp-1", 95)), rt)

    # When the sweep runs well after the delay
    aws.now_ms += 10 * SHADOW_REPAIR_DELAY_MS
    summary = handler.handle(scheduled_event(aws.now_ms), rt)

    # Then the sweep does not retry it every minute; the mirror stays marked stale, for
    # the device's next invocation to rewrite
    assert summary["swept"] == 0
    assert (aws.state_item("pump-17") or {})["shadowStale"]["BOOL"] is True


def test_a_stale_mirror_recorded_before_its_time_was_kept_still_loads() -> None:
    # Given a device item written before the mirror's stale time was kept
    with local_stack([], NOW) as aws:
        client = boto3.client("dynamodb")
        item = {
            "deviceId": {"S": "pump-17"},
            "version": {"N": "4"},
            "alerts": {"S": "{}"},
            "shadowStale": {"BOOL": True},
        }
        client.put_item(TableName=aws.stack.state_table, Item=item)

        # When it is read
        record = DynamoStateStore(aws.stack.state_table, client).load("pump-17")

    # Then it loads as stale, its repair left to the device's next invocation
    assert (record.version, record.shadow_stale, record.shadow_stale_ms) == (4, True, None)
    assert record.due_ms() is None
