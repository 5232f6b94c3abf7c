"""The scheduled sweep in parallel: one invocation per shard of the due index,
each taking devices while its invocation has time.

A fleet incident (a gateway down, thousands of devices silent at once) must not
be raised device by device by one invocation; the schedule's invocation starts
one sweep per shard instead, and each sweep stops taking devices before its
deadline, leaving the rest due for the next sweep.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from telemetry import handler
from telemetry.adapters.fanout import SweepFanOut
from telemetry.adapters.state_store import DEVICE_SHARDS, due_shard
from telemetry.core.messages import iso_utc
from telemetry.errors import DependencyError
from telemetry.events import SWEEP_SHARD_SOURCE, sweep_shard, sweep_shard_event
from telemetry.pipeline import SWEEP_RESERVE_MS
from tests.localaws import LocalAws, local_stack, message

NOW = 1_764_237_600_000  # 2025-11-27T10:00:00Z
MINUTE = 60_000
RULES_TEXT = """
rules:
  - name: pump-heartbeat
    match: {deviceId: "pump-*"}
    nodata: 5m
notifications: {maxPerWindow: 1000}
"""
PUMPS = [f"pump-{n}" for n in range(6)]


@pytest.fixture
def aws(tmp_path: Path) -> Iterator[LocalAws]:
    (tmp_path / "rules.yaml").write_text(RULES_TEXT)
    with local_stack(PUMPS, NOW) as stack:
        stack.rules_path = str(tmp_path / "rules.yaml")  # type: ignore[attr-defined]
        yield stack


def runtime(aws: LocalAws) -> handler.Runtime:
    rt, _ = aws.runtime(RULES_PATH=aws.rules_path)  # type: ignore[attr-defined]
    return rt


def scheduled(at_ms: int) -> dict[str, Any]:
    return {
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": iso_utc(at_ms)[:19] + "Z",
        "detail": {},
    }


def silent_pumps(aws: LocalAws, rt: handler.Runtime) -> None:
    """Every pump reports once at 10:00, then falls silent."""
    for pump in PUMPS:
        handler.handle(message(pump, NOW, ("temp-1", 60.0)), rt)
    aws.now_ms = NOW + 8 * MINUTE


def with_fan_out(rt: handler.Runtime, client: Any) -> handler.Runtime:
    fan_out = SweepFanOut("telemetry-fn", client)
    return replace(rt, fan_out=lambda: fan_out)


def test_the_schedule_starts_one_sweep_per_shard_and_sweeps_nothing_itself(
    aws: LocalAws,
) -> None:
    # Given silent pumps and a function that fans its sweep out
    rt = runtime(aws)
    silent_pumps(aws, rt)
    client = boto3.client("lambda", region_name="us-east-1")
    stubber = Stubber(client)
    for shard in DEVICE_SHARDS:
        event = sweep_shard_event(shard, NOW + 8 * MINUTE)
        stubber.add_response(
            "invoke",
            {"StatusCode": 202},
            {
                "FunctionName": "telemetry-fn",
                "InvocationType": "Event",
                "Payload": json.dumps(event).encode(),
            },
        )

    # When the schedule's invocation runs
    with stubber:
        answer = handler.handle(scheduled(NOW + 8 * MINUTE), with_fan_out(rt, client))

    # Then it started the 16 shards as of the schedule's time, and raised nothing itself
    stubber.assert_no_pending_responses()
    assert answer == {"asOf": iso_utc(NOW + 8 * MINUTE), "shardsStarted": 16, "digests": 0}
    assert aws.alerts() == []


def test_a_shard_sweeps_only_the_devices_of_its_shard(aws: LocalAws) -> None:
    # Given silent pumps spread over several shards
    rt = runtime(aws)
    silent_pumps(aws, rt)
    shard = due_shard(PUMPS[0])
    mine = sorted(p for p in PUMPS if due_shard(p) == shard)
    assert len(mine) < len(PUMPS)

    # When the invocation for that shard runs
    answer = handler.handle(sweep_shard_event(shard, NOW + 8 * MINUTE), rt)

    # Then exactly its devices are raised
    assert answer["swept"] == len(mine)
    assert sorted(a["deviceId"] for a in aws.alerts()) == mine

    # and the other shards' sweeps raise the rest, once each
    for other in sorted({due_shard(p) for p in PUMPS} - {shard}):
        handler.handle(sweep_shard_event(other, NOW + 8 * MINUTE), rt)
    assert sorted(a["deviceId"] for a in aws.alerts()) == sorted(set(PUMPS) - set(mine))


def test_a_refused_fan_out_raises_so_that_the_schedule_is_retried(aws: LocalAws) -> None:
    # Given a Lambda service that throttles the second invocation
    rt = runtime(aws)
    client = boto3.client("lambda", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response(
        "invoke",
        {"StatusCode": 202},
        {
            "FunctionName": "telemetry-fn",
            "InvocationType": "Event",
            "Payload": ANY,
        },
    )
    stubber.add_client_error("invoke", "TooManyRequestsException", http_status_code=429)

    # When the schedule's invocation runs, then it fails as transient
    with stubber, pytest.raises(DependencyError) as caught:
        handler.handle(scheduled(NOW), with_fan_out(rt, client))
    assert caught.value.transient


def test_a_sweep_stops_taking_devices_before_its_deadline_and_the_next_takes_the_rest(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given six silent pumps, a sweep taking two at a time, and an invocation whose
    # time left each batch takes a minute of, leaving room for two batches
    monkeypatch.setattr("telemetry.pipeline.SWEEP_BATCH", 2)
    rt = runtime(aws)
    silent_pumps(aws, rt)
    left = [MINUTE + SWEEP_RESERVE_MS + 30_000]

    def time_left() -> int:
        now = left[0]
        left[0] -= MINUTE
        return now

    # When the sweep runs
    first = rt.pipeline.sweep(NOW + 8 * MINUTE, time_left_ms=time_left)

    # Then it raised four pumps, the most overdue first, and left two due
    assert first.swept == 4
    assert len({t.device_id for t in first.transitions}) == 4

    # and the next sweep, with time to spare, raises the two others and nothing twice
    rest = rt.pipeline.sweep(NOW + 9 * MINUTE)
    assert rest.swept == 2
    raised = [t.device_id for t in first.transitions + rest.transitions]
    assert sorted(raised) == sorted(PUMPS)
    assert len(aws.alerts()) == 6


def test_a_device_cannot_pass_its_message_off_as_a_shard_event() -> None:
    # Given a payload shaped like a shard event, as the telemetry rule hands it over
    forged = {**sweep_shard_event("3", NOW), "deviceId": "pump-1", "receivedAt": NOW}

    # Then it is the device's message, not a sweep
    assert sweep_shard(forged) is None
    assert sweep_shard({"source": SWEEP_SHARD_SOURCE, "shard": 3, "time": "x"}) is None
    assert sweep_shard(sweep_shard_event("3", NOW)) == ("3", NOW)


def test_the_sweep_fans_out_only_when_deployed_and_asked_to(aws: LocalAws) -> None:
    # Given the template's SWEEP_FAN_OUT, with and without Lambda's function name
    deployed, _ = aws.runtime(
        RULES_PATH=aws.rules_path,  # type: ignore[attr-defined]
        SWEEP_FAN_OUT="parallel",
        AWS_LAMBDA_FUNCTION_NAME="telemetry-fn",
    )
    local, _ = aws.runtime(
        RULES_PATH=aws.rules_path,  # type: ignore[attr-defined]
        SWEEP_FAN_OUT="parallel",
    )
    inline, _ = aws.runtime(
        RULES_PATH=aws.rules_path,  # type: ignore[attr-defined]
        AWS_LAMBDA_FUNCTION_NAME="telemetry-fn",
    )

    # Then only the deployed function that asks for it starts shards; a local run with
    # the template's environment sweeps inline
    assert deployed.fan_out is not None
    assert local.fan_out is None
    assert inline.fan_out is None
