"""The notification budget end to end, on a local AWS: holds, digests, races, failures.

With the shipped rules and no `notifications`, the default budget applies: one
group for the whole fleet, 5 messages one by one in any 10 minutes, the rest
held for a digest the sweep sends at most 2 minutes after the first held one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from telemetry import actions, handler
from telemetry.adapters.aws import make_client
from telemetry.adapters.groups import DIGEST_SHARD, group_key
from telemetry.adapters.state_store import (
    DUE_INDEX,
    MAX_ITEM_BYTES,
    DynamoStateStore,
    due_shard,
    item_bytes,
)
from telemetry.core.notify import GroupState
from telemetry.errors import DependencyError
from telemetry.local.streams import kinesis_event
from tests.localaws import LocalAws, before, fail, local_stack, message, record_calls
from tests.test_delivery import Context, long_id
from tests.test_nodata import scheduled
from tests.test_requests import validation_problems

NOW = 1_764_237_600_000  # 2025-11-27T10:00:00Z
MINUTE = 60_000
PUMPS = [f"pump-{i}" for i in range(12)]
FLEET_GROUP = group_key(())
DAY_MS = 86_400_000


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    with local_stack(PUMPS, NOW) as stack:
        yield stack


def breach(devices: list[str], at_ms: int = NOW, value: float = 95) -> dict[str, Any]:
    """One Kinesis batch: each device's temp-1 past its critical level."""
    return kinesis_event([message(d, at_ms, ("temp-1", value)) for d in devices])


def group_item(aws: LocalAws, key: str = FLEET_GROUP) -> dict[str, Any] | None:
    return aws.state_item(key)


def group_state(aws: LocalAws, key: str = FLEET_GROUP) -> GroupState:
    item = group_item(aws, key)
    assert item is not None
    return GroupState.from_json(json.loads(item["state"]["S"]))


def split(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The operators' queue: single alerts, digests."""
    digests = [m for m in messages if m["status"] == "DIGEST"]
    return [m for m in messages if m["status"] != "DIGEST"], digests


def sweep(aws: LocalAws, rt: handler.Runtime, at_ms: int) -> dict[str, Any]:
    aws.now_ms = at_ms
    return handler.handle(scheduled(at_ms), rt)


# ---------------------------------------------------------------- holds and digests


def test_the_sixth_change_in_ten_minutes_is_held_and_sent_in_a_digest(aws: LocalAws) -> None:
    # Given seven pumps overheating at once, with the default budget
    rt, _ = aws.runtime()

    # When their messages arrive in one batch
    assert handler.handle(breach(PUMPS[:7]), rt) == {"batchItemFailures": []}

    # Then five alerts go out one by one, and two are held
    singles, digests = split(aws.alerts())
    assert len(singles) == 5
    assert digests == []
    held = set(PUMPS[:7]) - {a["deviceId"] for a in singles}
    assert len(held) == 2
    # and the held ones are committed, in the alert history and the shadow as usual
    assert len(aws.records("alert")) == 7
    for device in held:
        assert aws.shadow(device)["alerts"]["temp-1"]["severity"] == "CRITICAL"
        assert "outbox" not in (aws.state_item(device) or {})
    # and the group remembers what it counted and gathers the digest
    state = group_state(aws)
    assert len(state.sent) == 5
    assert state.pending is not None
    assert state.pending.held == 2

    # When the sweep runs before the digest is due, then when it is
    sweep(aws, rt, NOW + 2 * MINUTE - 1)
    assert aws.alerts() == []
    answer = sweep(aws, rt, NOW + 2 * MINUTE)

    # Then one digest says what was held, as documented
    assert answer["digests"] == 1
    (digest,) = aws.alerts()
    attributes = digest.pop("_attributes")
    assert attributes == {"status": "DIGEST", "severity": "CRITICAL"}
    assert digest["status"] == "DIGEST"
    assert digest["group"] == {}
    assert digest["counts"] == {"RAISED": 2}
    assert digest["severities"] == {"CRITICAL": 2, "WARNING": 0}
    assert digest["omitted"] == 0
    assert sorted(a["deviceId"] for a in digest["alerts"]) == sorted(held)
    assert set(digest["alerts"][0]) == {
        "deviceId",
        "sensorId",
        "rule",
        "alertId",
        "status",
        "severity",
        "time",
    }
    # and the group has nothing left to do: off the sweep's index
    item = group_item(aws)
    assert item is not None
    assert "dueShard" not in item
    assert "outbox" not in item

    # When the sweep runs again, nothing more is sent
    sweep(aws, rt, NOW + 10 * MINUTE)
    assert aws.alerts() == []


def test_a_digest_says_which_rules_decided_what_it_holds(aws: LocalAws) -> None:
    # Given the function with the shipped rules, and seven pumps overheating at once
    rt, _ = aws.runtime()
    handler.handle(breach(PUMPS[:7]), rt)
    singles, _ = split(aws.alerts())
    history = {
        m["Value"]
        for r in aws.records("alert")
        for m in r["MeasureValues"]
        if m["Name"] == "rulesVersion"
    }

    # When the sweep sends the digest of the two held
    sweep(aws, rt, NOW + 2 * MINUTE)
    (digest,) = aws.alerts()

    # Then it carries the rulesVersion its held changes, and every single message, carry
    (version,) = {a["rulesVersion"] for a in singles}
    assert version.startswith("sha256:")
    assert history == {version}
    assert digest["status"] == "DIGEST"
    assert digest["rulesVersion"] == version
    assert "rulesVersions" not in digest


def test_a_digest_subject_reads_as_people_say_it(aws: LocalAws, tmp_path: Path) -> None:
    # Given rules that group by location, and seven pumps of line-3 overheating
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: hot\n"
        "    match: {type: temperature}\n"
        "    above: {warning: 75, critical: 90}\n"
        "notifications:\n"
        "  groupBy: [location, rule]\n",
        encoding="utf-8",
    )
    rt, clients = aws.runtime(RULES_PATH=str(rules))
    calls = record_calls(clients)
    batch = [message(d, NOW, ("temp-1", 95)) for d in PUMPS[:7]]
    for item in batch:
        item["data"][0]["location"] = "line-3"
    handler.handle(kinesis_event(batch), rt)

    # When the digest is sent
    sweep(aws, rt, NOW + 2 * MINUTE)

    # Then its subject, group and attributes name the group
    _, (digest,) = split(aws.alerts())
    assert digest["group"] == {"location": "line-3", "rule": "hot"}
    assert digest["_attributes"] == {"status": "DIGEST", "severity": "CRITICAL", "rule": "hot"}
    (publish,) = [p for p in calls.params("sns", "Publish") if "DIGEST" in p["Message"]]
    assert (
        publish["Subject"]
        == "[CRITICAL] 2 alert changes in location line-3, rule hot (10:00-10:00)"
    )


def test_nothing_held_costs_one_group_write_per_invocation_and_none_without_alerts(
    aws: LocalAws,
) -> None:
    # Given three pumps overheating in one batch
    rt, clients = aws.runtime()
    calls = record_calls(clients)

    # When it is processed
    handler.handle(breach(PUMPS[:3]), rt)

    # Then the group is read once and written once: no write per message, no transaction
    group_reads = [
        p
        for p in calls.params("dynamodb", "BatchGetItem")
        if any(
            k["deviceId"]["S"] == FLEET_GROUP for t in p["RequestItems"].values() for k in t["Keys"]
        )
    ]
    assert len(group_reads) == 1
    group_writes = [
        p for p in calls.params("dynamodb", "PutItem") if p["Item"]["deviceId"]["S"] == FLEET_GROUP
    ]
    assert len(group_writes) == 1
    assert calls.count("dynamodb", "TransactWriteItems") == 0

    # When more readings come that change nothing
    calls.calls.clear()
    handler.handle(breach(PUMPS[:3], NOW + 1000, value=96), rt)

    # Then the group is neither read nor written
    touched = json.dumps([p for _, _, p in calls.calls])
    assert FLEET_GROUP not in touched


def test_operators_actions_are_never_held(aws: LocalAws) -> None:
    # Given a group whose budget is spent
    rt, _ = aws.runtime()
    handler.handle(breach(PUMPS[:6]), rt)
    singles, _ = split(aws.alerts())
    assert len(singles) == 5
    alert_id = singles[0]["alertId"]

    # When an operator acknowledges an alert
    answer = actions.handle_action(
        {
            "action": "acknowledge",
            "deviceId": singles[0]["deviceId"],
            "sensorId": "temp-1",
            "rule": "temperature-high",
            "by": "maria@plant.example",
        },
        rt,
    )

    # Then the acknowledgement is published at once
    assert answer["applied"] is True
    (acked,) = aws.alerts()
    assert (acked["status"], acked["alertId"]) == ("ACKNOWLEDGED", alert_id)


# ---------------------------------------------------------------- races and retries


def test_two_invocations_racing_for_the_last_slot_publish_it_once(aws: LocalAws) -> None:
    # Given a group with four of its five slots taken
    first, first_clients = aws.runtime()
    second, _ = aws.runtime()
    handler.handle(breach(PUMPS[:4]), first)
    aws.alerts()

    # When two invocations each bring one more alert, the second running whole
    # between the first's read of the group and its write
    ran = [0]

    def second_runs_now(params: dict[str, Any], **_: Any) -> None:
        if params.get("Item", {}).get("deviceId", {}).get("S") == FLEET_GROUP and not ran[0]:
            ran[0] += 1
            handler.handle(message("pump-5", NOW + 1000, ("temp-1", 95)), second)

    first_clients.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.PutItem", second_runs_now
    )
    handler.handle(message("pump-4", NOW + 1000, ("temp-1", 95)), first)

    # Then exactly one of them was published; the other lost the race and is held
    assert ran == [1]
    published = [a["deviceId"] for a in aws.alerts()]
    assert published == ["pump-5"]
    state = group_state(aws)
    assert len(state.sent) == 5
    assert state.pending is not None
    assert state.pending.held == 1
    assert "outbox" not in (aws.state_item("pump-4") or {})

    # and the digest carries it
    sweep(aws, first, NOW + 1000 + 2 * MINUTE)
    _, (digest,) = split(aws.alerts())
    assert [a["deviceId"] for a in digest["alerts"]] == ["pump-4"]


def test_a_retry_publishes_what_it_counted_without_counting_it_again(aws: LocalAws) -> None:
    # Given an invocation that counted three alerts, then could not publish any
    rt, clients = aws.runtime()
    fail(clients.sns, "Publish", "InternalError", times=3)
    answer = handler.handle(breach(PUMPS[:3]), rt)
    assert len(answer["batchItemFailures"]) == 3
    assert aws.alerts() == []
    counted = group_state(aws).sent

    # When Lambda retries the batch
    assert handler.handle(breach(PUMPS[:3]), rt) == {"batchItemFailures": []}

    # Then the three go out, counted once: two slots are left
    assert len(aws.alerts()) == 3
    assert group_state(aws).sent == counted
    handler.handle(breach(PUMPS[3:6], NOW + 1000), rt)
    singles, _ = split(aws.alerts())
    assert len(singles) == 2
    state = group_state(aws)
    assert state.pending is not None
    assert state.pending.held == 1


def test_a_failure_between_holding_and_the_digest_loses_nothing_and_doubles_nothing(
    aws: LocalAws,
) -> None:
    # Given an invocation whose hold was written, but whose answer was lost (the
    # transaction committed, the call failed), so that the whole invocation fails
    rt, clients = aws.runtime()
    lost = [0]

    def answer_lost(**_: Any) -> None:
        if not lost[0]:
            lost[0] += 1
            raise ConnectionError("connection reset after the transaction committed")

    clients.dynamodb.meta.events.register("after-call.dynamodb.TransactWriteItems", answer_lost)
    with pytest.raises(ConnectionError):
        handler.handle(breach(PUMPS[:7]), rt)
    assert aws.alerts() == []

    # When Lambda retries the batch, and the sweep sends the digest when due
    assert handler.handle(breach(PUMPS[:7]), rt) == {"batchItemFailures": []}
    sweep(aws, rt, NOW + 2 * MINUTE)

    # Then five went alone and two in one digest: each pump once
    singles, digests = split(aws.alerts())
    assert len(singles) == 5
    (digest,) = digests
    assert digest["counts"] == {"RAISED": 2}
    told = [a["deviceId"] for a in singles] + [a["deviceId"] for a in digest["alerts"]]
    assert sorted(told) == sorted(PUMPS[:7])


def test_a_digest_sns_did_not_take_is_sent_by_a_later_sweep_once(aws: LocalAws) -> None:
    # Given two held alerts, and a sweep whose digest SNS fails to take
    rt, clients = aws.runtime()
    handler.handle(breach(PUMPS[:7]), rt)
    aws.alerts()
    fail(clients.sns, "Publish", "InternalError")
    with pytest.raises(Exception, match="InternalError"):
        sweep(aws, rt, NOW + 2 * MINUTE)
    assert aws.alerts() == []
    # (the digest waits in the group's outbox, released for the next sweep)
    item = group_item(aws)
    assert item is not None
    assert "outbox" in item
    assert item["dueShard"]["S"] == DIGEST_SHARD

    # When the next sweep runs
    sweep(aws, rt, NOW + 3 * MINUTE)

    # Then the digest goes out once, and no second digest is taken
    _, (digest,) = split(aws.alerts())
    assert digest["counts"] == {"RAISED": 2}
    sweep(aws, rt, NOW + 6 * MINUTE)
    assert aws.alerts() == []


def test_a_digest_whose_sweep_crashed_is_sent_once_its_lease_ends(aws: LocalAws) -> None:
    # Given a sweep that took the digest and crashed before publishing it (its
    # release failed too)
    rt, _ = aws.runtime()
    handler.handle(breach(PUMPS[:7]), rt)
    aws.alerts()
    crashed, crashed_clients = aws.runtime()
    fail(crashed_clients.sns, "Publish", "InternalError")
    writes = [0]

    def release_fails(params: dict[str, Any], **_: Any) -> None:
        if params["Item"]["deviceId"]["S"] == FLEET_GROUP:
            writes[0] += 1
            if writes[0] == 2:
                raise DependencyError(
                    "dynamodb", "PutItem", "InternalServerError", "x", transient=True
                )

    crashed_clients.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.PutItem", release_fails
    )
    aws.now_ms = NOW + 2 * MINUTE
    with pytest.raises(Exception, match="InternalError"):
        handler.handle(scheduled(NOW + 2 * MINUTE), crashed, Context("crashed", 60_000))

    # When a sweep runs while its claim holds, and another once it has run out
    sweep(aws, rt, NOW + 2 * MINUTE + 1000)
    early = aws.alerts()
    sweep(aws, rt, NOW + 5 * MINUTE)

    # Then the first left it alone, the second sent it once
    assert writes == [2]
    assert early == []
    _, (digest,) = split(aws.alerts())
    assert digest["counts"] == {"RAISED": 2}


def test_a_duplicate_sweep_overlapping_the_first_leaves_the_digest_to_it(aws: LocalAws) -> None:
    # Given two held alerts, and a duplicate of the sweep that runs while the first is
    # publishing the digest, reading an index that still lists the group as due
    first, first_clients = aws.runtime()
    duplicate, duplicate_clients = aws.runtime()
    handler.handle(breach(PUMPS[:7]), first)
    aws.alerts()

    shard = [""]

    def asking(params: dict[str, Any], **_: Any) -> None:
        shard[0] = params["ExpressionAttributeValues"][":s"]["S"]

    def stale_index(parsed: dict[str, Any], **_: Any) -> None:
        if shard[0] == DIGEST_SHARD:
            parsed["Items"] = [{"deviceId": {"S": FLEET_GROUP}}]

    events = duplicate_clients.dynamodb.meta.events
    events.register("before-parameter-build.dynamodb.Query", asking)
    events.register("after-call.dynamodb.Query", stale_index)
    ran: list[dict[str, Any]] = []
    before(
        first_clients.sns,
        "Publish",
        lambda: ran.append(handler.handle(scheduled(NOW + 2 * MINUTE), duplicate)),
    )

    # When the first sweep runs
    sweep(aws, first, NOW + 2 * MINUTE)

    # Then the duplicate found the digest claimed and sent nothing: one digest
    assert [r["digests"] for r in ran] == [0]
    _, digests = split(aws.alerts())
    assert len(digests) == 1


def test_a_digest_sns_refuses_for_good_goes_to_the_dead_letter_queue(aws: LocalAws) -> None:
    # Given two held alerts, and SNS refusing the digest itself
    rt, clients = aws.runtime()
    handler.handle(breach(PUMPS[:7]), rt)
    aws.alerts()
    fail(clients.sns, "Publish", "InvalidParameter", status=400)

    # When the sweep sends it
    sweep(aws, rt, NOW + 2 * MINUTE)

    # Then it is dead-lettered with its reason, and not tried again
    (dead,) = aws.dead_letters()
    assert dead["code"] == "sns_rejected"
    assert dead["field"] == "digest"
    assert "InvalidParameter" in dead["reason"]
    assert dead["payload"]["status"] == "DIGEST"
    assert dead["payload"]["counts"] == {"RAISED": 2}
    item = group_item(aws)
    assert item is not None
    assert "outbox" not in item
    sweep(aws, rt, NOW + 6 * MINUTE)
    assert aws.alerts() == []


# ---------------------------------------------------------------- AWS's limits


def test_holding_many_devices_takes_transactions_of_at_most_100_actions(aws: LocalAws) -> None:
    # Given 150 devices overheating in one batch
    rt, clients = aws.runtime()
    calls = record_calls(clients)
    devices = [f"line3-{i:03d}" for i in range(150)]

    # When it is processed
    assert handler.handle(breach(devices), rt) == {"batchItemFailures": []}

    # Then 145 were held, in transactions within DynamoDB's limits, each writing
    # the group at its next version
    transactions = calls.params("dynamodb", "TransactWriteItems")
    assert len(transactions) == 2
    versions = []
    for transaction in transactions:
        actions = transaction["TransactItems"]
        assert len(actions) <= 100
        assert sum(item_bytes(a["Put"]["Item"]) for a in actions) <= 4 * 1024 * 1024
        (group,) = [a["Put"] for a in actions if a["Put"]["Item"]["deviceId"]["S"] == FLEET_GROUP]
        versions.append(int(group["Item"]["version"]["N"]))
    assert versions == [versions[0], versions[0] + 1]
    state = group_state(aws)
    assert state.pending is not None
    assert state.pending.held == 145
    assert not [d for d in devices if "outbox" in (aws.state_item(d) or {})]

    # and the digest lists 100 of them and counts the rest
    sweep(aws, rt, NOW + 2 * MINUTE)
    _, (digest,) = split(aws.alerts())
    assert digest["counts"] == {"RAISED": 145}
    assert len(digest["alerts"]) == 100
    assert digest["omitted"] == 45


@pytest.mark.slow
def test_a_device_split_over_parts_gives_up_its_held_entries_in_one_transaction(
    aws: LocalAws,
) -> None:
    # Given a device whose 900 sensors, with 128-character ids, breach in one message
    rt, clients = aws.runtime()
    calls = record_calls(clients)
    sensors = [long_id("temp", i) for i in range(900)]

    # When it is processed
    handler.handle(message("pump-1", NOW, *[(s, 95.0) for s in sensors]), rt)

    # Then 895 are held, moved from its record (split over parts with its outbox) in one
    # transaction, which also deletes the parts the smaller record no longer needs
    (transaction,) = [
        p for p in calls.params("dynamodb", "TransactWriteItems") if FLEET_GROUP in json.dumps(p)
    ]
    keys = [a["Put"]["Item"]["deviceId"]["S"] for a in transaction["TransactItems"] if "Put" in a]
    assert sorted(keys) == sorted(["pump-1", FLEET_GROUP])
    deleted = [
        a["Delete"]["Key"]["deviceId"]["S"] for a in transaction["TransactItems"] if "Delete" in a
    ]
    assert deleted
    assert all(k.startswith("pump-1#part#") for k in deleted)
    sizes = [item_bytes(a["Put"]["Item"]) for a in transaction["TransactItems"] if "Put" in a]
    assert max(sizes) <= MAX_ITEM_BYTES
    store = DynamoStateStore(aws.stack.state_table, boto3.client("dynamodb"))
    record = store.load("pump-1")
    assert record.outbox == []
    assert record.parts == 0
    assert len(record.state) == 900
    state = group_state(aws)
    assert state.pending is not None
    assert state.pending.held == 895


def test_groups_are_never_listed_among_devices(aws: LocalAws) -> None:
    # Given a group with a digest pending
    rt, _ = aws.runtime()
    handler.handle(breach(PUMPS[:7]), rt)
    item = group_item(aws)
    assert item is not None
    assert item["dueShard"]["S"] == DIGEST_SHARD
    assert int(item["dueAt"]["N"]) == NOW + 2 * MINUTE

    # Then neither the devices' sweep nor the operators' listing sees it
    client = boto3.client("dynamodb")
    store = DynamoStateStore(aws.stack.state_table, client)
    assert FLEET_GROUP not in store.due_devices(NOW + DAY_MS, 10_000)
    assert FLEET_GROUP not in [r.device_id for r in store.scan()]
    assert DIGEST_SHARD not in {due_shard(d) for d in PUMPS}
    indexed = client.query(
        TableName=aws.stack.state_table,
        IndexName=DUE_INDEX,
        KeyConditionExpression="dueShard = :s",
        ExpressionAttributeValues={":s": {"S": DIGEST_SHARD}},
    )["Items"]
    assert [i["deviceId"]["S"] for i in indexed] == [FLEET_GROUP]


def test_every_request_of_holds_and_digests_satisfies_the_service_models(aws: LocalAws) -> None:
    # Given a runtime whose every AWS call is recorded
    rt, clients = aws.runtime()
    log = record_calls(clients)

    # When it holds alerts, races nobody, and sends a digest
    handler.handle(breach(PUMPS[:7]), rt)
    sweep(aws, rt, NOW + 2 * MINUTE)

    # Then every request satisfies its service model
    operations = Counter(operation for _, operation, _ in log.calls)
    assert operations["TransactWriteItems"] == 1
    assert operations["Query"] >= 17
    assert validation_problems(clients, log.calls) == []


def test_a_digest_on_a_fifo_topic_carries_valid_fifo_fields() -> None:
    # Given a stack whose topic is FIFO, and two held alerts
    with local_stack(PUMPS, NOW) as aws:
        topic = make_client("sns").create_topic(
            Name="alerts.fifo", Attributes={"FifoTopic": "true"}
        )
        rt, clients = aws.runtime(ALERTS_TOPIC_ARN=topic["TopicArn"])
        log = record_calls(clients)
        handler.handle(breach(PUMPS[:7]), rt)

        # When the digest is sent
        sweep(aws, rt, NOW + 2 * MINUTE)

    # Then it has a group and a deduplication id of its own, and a valid request
    (digest,) = [p for p in log.params("sns", "Publish") if '"DIGEST"' in p["Message"]]
    assert digest["MessageGroupId"].startswith("digest-")
    assert len(digest["MessageDeduplicationId"]) == 64
    assert validation_problems(clients, log.calls) == []


def test_a_group_every_shard_writes_at_once_backs_off_and_commits(aws: LocalAws) -> None:
    # Given a group whose conditional writes lose twelve races in a row (a fleet
    # incident: every shard's sweep admitting into the one group at once)
    rt, clients = aws.runtime()
    lost = [0]
    pauses: list[float] = []
    rt.pipeline.delivery._pause = pauses.append

    def race(params: dict[str, Any], **_: Any) -> None:
        if params["Item"]["deviceId"]["S"].startswith("$group#") and lost[0] < 12:
            lost[0] += 1
            raise clients.dynamodb.exceptions.ConditionalCheckFailedException(
                {"Error": {"Code": "ConditionalCheckFailedException", "Message": "raced"}},
                "PutItem",
            )

    clients.dynamodb.meta.events.register("before-parameter-build.dynamodb.PutItem", race)

    # When a pump overheats
    handler.handle(message(PUMPS[0], NOW, ("temp-1", 95)), rt)

    # Then its alert is published once, after twelve jittered pauses that grow and
    # stay under half a second, and the group counted it once
    assert [(a["deviceId"], a["status"]) for a in aws.alerts()] == [(PUMPS[0], "RAISED")]
    assert lost[0] == 12
    assert len(pauses) == 12
    assert all(0 <= p <= 0.5 for p in pauses)
    assert len(group_state(aws).sent) == 1
