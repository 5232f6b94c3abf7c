"""Rules in force without a deploy: the function reads them from AWS AppConfig
through the extension's local endpoint (a stand-in here), puts a new version in
force within the poll interval, keeps a bad one out, and keeps the last good one
across cold starts in the state table."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from telemetry import actions, handler
from telemetry.adapters.appconfig import (
    ITEM_LIMIT_BYTES,
    Configuration,
    LastGoodRules,
)
from telemetry.adapters.influxdb import InfluxRecords
from telemetry.adapters.state_store import DynamoStateStore
from telemetry.adapters.timestream import alert_record
from telemetry.core.alerts import Severity, Status, Transition
from telemetry.core.rule_specs import write_compiled
from telemetry.core.rules import load_rules, sources_digest
from telemetry.errors import ConfigurationError
from tests.appconfig_extension import StandInExtension, stand_in_extension
from tests.localaws import LocalAws, local_stack, message

NOW = 1_764_237_600_000  # 2025-11-27T10:00:00Z
SECOND = 1000
DEVICE = "boiler-1"


def rules(warning: float, critical: float, name: str = "boiler-temperature") -> str:
    """One rule file as `telemetry rules deploy` uploads it: JSON."""
    rule = {
        "name": name,
        "match": {"type": "temperature"},
        "above": {"warning": warning, "critical": critical},
        "hysteresis": 1,
    }
    return json.dumps({"rules": [rule]})


BAD_RULES = json.dumps(
    {"rules": [{"name": "boiler-temperature", "above": {"warning": 90, "critical": 75}}]}
)


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    with local_stack([DEVICE], NOW) as stack:
        yield stack


@pytest.fixture
def extension() -> Iterator[StandInExtension]:
    with stand_in_extension() as stand_in:
        yield stand_in


def cold_start(aws: LocalAws, extension: StandInExtension, **more: str) -> handler.Runtime:
    runtime, _ = aws.runtime(
        **extension.environment(), AWS_APPCONFIG_EXTENSION_POLL_INTERVAL_SECONDS="45", **more
    )
    return runtime


def send(aws: LocalAws, runtime: handler.Runtime, value: float) -> list[dict[str, Any]]:
    """One reading of the boiler at the stack's clock; the alerts operators received."""
    handler.handle(message(DEVICE, aws.now_ms, ("temp-1", value)), runtime)
    return aws.alerts()


def kept_item(aws: LocalAws) -> dict[str, Any] | None:
    return aws.state_item("$rules#telemetry-rules/production/rules")


def emitted(capsys: pytest.CaptureFixture[str], name: str) -> float:
    handler.metrics.flush()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "{" in line]
    return sum(sum(line.get(name, [])) for line in lines if "_aws" in line)


def test_a_cold_start_evaluates_with_the_deployed_version_and_says_which(
    aws: LocalAws, extension: StandInExtension
) -> None:
    # Given version 1 of the rules deployed to AppConfig
    extension.deploy("1", rules(75, 90))

    # When the function starts and a reading breaches the warning level
    runtime = cold_start(aws, extension)
    alerts = send(aws, runtime, 80)

    # Then the alert carries the configuration version, in SNS and in the history
    assert [(a["status"], a["severity"], a["rulesVersion"]) for a in alerts] == [
        ("RAISED", "WARNING", "1")
    ]
    history = aws.records("alert")
    assert [
        m["Value"] for r in history for m in r["MeasureValues"] if m["Name"] == "rulesVersion"
    ] == ["1"]
    # and the version in force is kept in the state table for later cold starts
    item = kept_item(aws)
    assert item is not None
    assert item["version"]["S"] == "1"


def test_a_new_version_is_in_force_within_the_poll_interval_and_not_before(
    aws: LocalAws, extension: StandInExtension
) -> None:
    # Given a warm function evaluating with version 1 (warning at 75)
    extension.deploy("1", rules(75, 90))
    runtime = cold_start(aws, extension)
    asked = len(extension.requests)

    # When version 2 (warning at 85) is deployed, and readings arrive within 45 s
    extension.deploy("2", rules(85, 95))
    aws.now_ms += 44 * SECOND
    before = send(aws, runtime, 80)
    # Then the warm invocation reuses version 1 without asking the extension
    assert [(a["status"], a["rulesVersion"]) for a in before] == [("RAISED", "1")]
    assert len(extension.requests) == asked

    # When the poll interval has passed
    aws.now_ms += 1 * SECOND
    after = send(aws, runtime, 80)

    # Then version 2 is in force: 80 no longer breaches its warning level
    assert [(a["status"], a["severity"], a["rulesVersion"]) for a in after] == [
        ("RESOLVED", "OK", "2")
    ]
    assert kept_item(aws)["version"]["S"] == "2"  # type: ignore[index]


def test_changing_a_rules_levels_mid_episode_continues_the_episode_under_the_new_levels(
    aws: LocalAws, extension: StandInExtension
) -> None:
    # Given an open WARNING episode raised under version 1 (critical at 90)
    extension.deploy("1", rules(75, 90))
    runtime = cold_start(aws, extension)
    raised = send(aws, runtime, 80)

    # When version 2 lowers the critical level to 78, and the same value arrives
    extension.deploy("2", rules(70, 78))
    aws.now_ms += 45 * SECOND
    changed = send(aws, runtime, 80)

    # Then the same episode (same alertId) escalates, as after a deploy of the files
    assert [(a["status"], a["severity"], a["rulesVersion"]) for a in changed] == [
        ("ESCALATED", "CRITICAL", "2")
    ]
    assert changed[0]["alertId"] == raised[0]["alertId"]


def test_a_bad_version_never_replaces_the_rules_in_force(
    aws: LocalAws,
    extension: StandInExtension,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a warm function evaluating with version 1
    extension.deploy("1", rules(75, 90))
    runtime = cold_start(aws, extension)
    capsys.readouterr()

    # When version 2, whose critical level is below its warning level, is deployed
    extension.deploy("2", BAD_RULES)
    aws.now_ms += 45 * SECOND
    alerts = send(aws, runtime, 80)

    # Then version 1 still decides, the rejection is logged with its problems and counted
    assert [(a["status"], a["rulesVersion"]) for a in alerts] == [("RAISED", "1")]
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rejected = [line for line in logs if line.get("message", "").startswith("rules: config")]
    assert [line["rejectedVersion"] for line in rejected] == ["2"]
    assert rejected[0]["rulesVersion"] == "1"
    assert any("critical" in problem for problem in rejected[0]["problems"])
    assert "above" not in json.dumps(rejected[0]) or "AppConfig version 2" in json.dumps(
        rejected[0]
    )
    assert kept_item(aws)["version"]["S"] == "1"  # type: ignore[index]

    # When the next poll sees the same bad version
    aws.now_ms += 45 * SECOND
    send(aws, runtime, 80)

    # Then it is not checked, logged or counted again
    assert emitted(capsys, "RulesRejected") == 1


def test_the_rejection_is_counted_in_the_metric_the_template_alarms_on(
    aws: LocalAws, extension: StandInExtension, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a warm function and a bad version deployed
    extension.deploy("1", rules(75, 90))
    runtime = cold_start(aws, extension)
    extension.deploy("2", BAD_RULES)
    aws.now_ms += 45 * SECOND
    capsys.readouterr()

    # When an invocation polls and its metrics are flushed
    send(aws, runtime, 70)

    # Then RulesRejected is 1, under the function's namespace and service dimension
    handler.metrics.flush()
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    counted = [b for b in blobs if "RulesRejected" in b]
    assert counted[0]["RulesRejected"] == [1.0]
    (directive,) = counted[0]["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "IoTTelemetry"
    assert directive["Dimensions"] == [["service"]]


def test_a_cold_start_after_a_bad_version_was_deployed_keeps_the_last_good_one(
    aws: LocalAws, extension: StandInExtension
) -> None:
    # Given version 1 accepted by an earlier execution environment
    extension.deploy("1", rules(75, 90))
    cold_start(aws, extension)

    # When a bad version 2 is deployed and a new execution environment starts
    extension.deploy("2", BAD_RULES)
    runtime = cold_start(aws, extension)
    alerts = send(aws, runtime, 80)

    # Then it evaluates with version 1, kept in the state table
    assert [(a["status"], a["rulesVersion"]) for a in alerts] == [("RAISED", "1")]


def test_a_cold_start_while_the_extension_cannot_answer_uses_the_last_good_one(
    aws: LocalAws, extension: StandInExtension
) -> None:
    # Given version 1 accepted earlier, and an extension that now answers 500
    extension.deploy("1", rules(75, 90))
    cold_start(aws, extension)
    extension.failing = True

    # When a new execution environment starts
    runtime = cold_start(aws, extension)

    # Then it evaluates with version 1
    assert [a["rulesVersion"] for a in send(aws, runtime, 80)] == ["1"]


@pytest.mark.parametrize("deployed", [BAD_RULES, None, json.dumps({"rules": []})])
def test_a_cold_start_with_no_good_configuration_fails_loudly(
    aws: LocalAws, extension: StandInExtension, deployed: str | None
) -> None:
    # Given nothing kept, and a bad version, no configuration, or one with no rule
    if deployed is not None:
        extension.deploy("7", deployed)

    # When the function starts, then it refuses to evaluate with no rules
    with pytest.raises(ConfigurationError, match="no rules to evaluate with"):
        cold_start(aws, extension)


def test_a_kept_configuration_the_function_no_longer_accepts_fails_loudly(
    aws: LocalAws, extension: StandInExtension
) -> None:
    # Given a kept version this function's check refuses, and a bad one deployed
    settings = aws.settings
    kept = LastGoodRules(
        settings.state_table,
        boto3.client("dynamodb"),
        "telemetry-rules/production/rules",
    )
    kept.save(Configuration("3", BAD_RULES.encode()))
    extension.deploy("4", BAD_RULES)

    # When the function starts, then it names the version kept and why
    with pytest.raises(ConfigurationError, match=r"version kept \(3\)"):
        cold_start(aws, extension)


def test_the_kept_configuration_is_bounded_by_the_item_limit(aws: LocalAws) -> None:
    # Given the state table, and the largest configuration that fits in one item
    # (random bytes: they do not compress)
    kept = LastGoodRules(aws.settings.state_table, boto3.client("dynamodb"), "a/e/p")
    noise = random.Random(7).randbytes(ITEM_LIMIT_BYTES)
    low, high = 0, len(noise)
    while low < high:
        middle = (low + high + 1) // 2
        if kept.fits(Configuration("1", noise[:middle])):
            low = middle
        else:
            high = middle - 1
    largest = Configuration("1", noise[:low])
    assert low > 290_000

    # When it is saved, and then one 3 bytes larger (one more base64 quantum)
    saved = kept.save(largest), kept.save(Configuration("2", noise[: low + 3]))

    # Then the largest is written (DynamoDB accepts it) and read back whole; the other is refused
    assert saved == (True, False)
    assert kept.load() == Configuration("1", largest.content)


def test_the_packaged_rules_carry_the_files_digest(aws: LocalAws) -> None:
    # Given the function with the packaged rules (RULES_SOURCE unset)
    runtime, _ = aws.runtime()

    # When a reading breaches a shipped level
    handler.handle(message(DEVICE, aws.now_ms, ("temp-1", 500)), runtime)

    # Then its transitions carry sha256: and the digest of the rule files
    versions = {a["rulesVersion"] for a in aws.alerts()}
    assert versions == {runtime.pipeline.rules.version}
    assert str(runtime.pipeline.rules.version).startswith("sha256:")


def test_rules_version_is_in_every_wire_form_of_a_transition() -> None:
    # Given a transition decided by version 7 of the deployed rules
    transition = Transition(
        alert_id="a" * 32,
        status=Status.RAISED,
        severity=Severity.WARNING,
        previous_severity=Severity.OK,
        device_id=DEVICE,
        sensor_id="temp-1",
        rule="boiler-temperature",
        value=80.0,
        threshold=75.0,
        time_ms=NOW,
        since_ms=NOW,
        direction="above",
        rules_version="7",
    )

    # Then the SNS body (and the outbox) carries it and reads it back, and so do
    # both alert histories
    body = transition.to_json()
    assert body["rulesVersion"] == "7"
    assert Transition.from_json(body) == transition
    measures = {m["Name"]: m["Value"] for m in alert_record(transition)["MeasureValues"]}
    assert measures["rulesVersion"] == "7"
    assert ',rulesVersion="7",' in InfluxRecords().alert(transition).line
    # and a transition of rules built in code (no version) says nothing of it
    bare = replace(transition, rules_version=None)
    assert "rulesVersion" not in bare.to_json()
    assert "rulesVersion" not in InfluxRecords().alert(bare).line


def test_a_rule_set_loaded_from_files_is_versioned_by_their_digest(tmp_path: Path) -> None:
    # Given a rule file, loaded, then changed by one byte
    (tmp_path / "rules.yaml").write_text(rules(75, 90))
    before = load_rules(tmp_path).version
    (tmp_path / "rules.yaml").write_text(rules(75, 91))

    # Then its version is the files' digest, and changes with them
    assert str(before).startswith("sha256:")
    assert load_rules(tmp_path).version != before
    # and the compiled set the build ships carries the same version as the files
    write_compiled(tmp_path)
    assert load_rules(tmp_path).version == f"sha256:{sources_digest([tmp_path / 'rules.yaml'])}"


def test_the_kept_rules_are_no_device_to_the_operators_tools(
    aws: LocalAws, extension: StandInExtension
) -> None:
    # Given a version put in force and kept in the state table
    extension.deploy("1", rules(75, 90))
    runtime = cold_start(aws, extension)
    send(aws, runtime, 80)
    assert kept_item(aws) is not None

    # When the state table is scanned, as `telemetry alerts list` does
    store = DynamoStateStore(aws.settings.state_table, boto3.client("dynamodb"))

    # Then only the device is listed
    assert [record.device_id for record in store.scan()] == [DEVICE]


def test_the_actions_function_puts_a_new_version_in_force_too(
    aws: LocalAws, extension: StandInExtension
) -> None:
    # Given an alert raised under version 1, then version 2 deployed
    extension.deploy("1", rules(75, 90))
    runtime = cold_start(aws, extension)
    send(aws, runtime, 80)
    extension.deploy("2", rules(76, 90))
    aws.now_ms += 45 * SECOND

    # When an operator acknowledges it through the actions function
    answer = actions.handle_action(
        {
            "action": "acknowledge",
            "deviceId": DEVICE,
            "sensorId": "temp-1",
            "rule": "boiler-temperature",
            "by": "maria@plant.example",
        },
        runtime,
    )

    # Then the acknowledgement says the version in force when it was decided
    assert answer["applied"] is True
    assert [(a["status"], a["rulesVersion"]) for a in aws.alerts()] == [("ACKNOWLEDGED", "2")]
