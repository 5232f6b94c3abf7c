"""`telemetry rules deploy` and `telemetry rules status` against AppConfig.

moto holds applications, configuration profiles, tags and hosted configuration
versions; it implements neither deployments nor their listing, so those calls
are answered by event hooks on the session's clients (what AWS documents them to
answer), which also record what the command asked."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from telemetry.adapters.appconfig import Configuration
from telemetry.cli import main
from telemetry.core import rule_specs
from telemetry.core.rules import RuleSet, load_rules, rule_set_to_json
from telemetry.local.rules_deploy import STRATEGY_TAG
from telemetry.rules_source import rules_of

REGION = "us-east-1"
ENVIRONMENT = "env1234"
STRATEGY = "strat01"
TEMPERATURE = """\
rules:
  - name: boiler-temperature
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    hysteresis: 2
"""
PRESSURE = """\
rules:
  - name: line-pressure
    match: {type: pressure}
    below: {warning: 2.5, critical: 1.5}
notifications:
  window: 10m
  maxPerWindow: 20
  digestEvery: 5m
"""
INVALID = """\
rules:
  - name: boiler-temperature
    above: {warning: 90, critical: 75}
"""


@dataclass
class AppConfig:
    """The stack's application and profile in moto, and the calls moto lacks."""

    application: str
    profile: str
    started: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    start_error: str | None = None

    def where(self) -> list[str]:
        return [
            "--application",
            self.application,
            "--environment",
            ENVIRONMENT,
            "--profile",
            self.profile,
            "--region",
            REGION,
        ]

    def hosted(self, version: int) -> dict[str, Any]:
        client = boto3.client("appconfig", region_name=REGION)
        return client.get_hosted_configuration_version(  # type: ignore[no-any-return]
            ApplicationId=self.application,
            ConfigurationProfileId=self.profile,
            VersionNumber=version,
        )


class _Answer:
    status_code = 200


def _answering(appconfig: AppConfig) -> None:
    """Answer StartDeployment and ListDeployments on every client of the session."""
    session = boto3.DEFAULT_SESSION
    assert session is not None

    def record(params: dict[str, Any], **_: Any) -> None:
        appconfig.started.append(dict(params))

    def start(**_: Any) -> tuple[_Answer, dict[str, Any]]:
        if appconfig.start_error:
            error = {"Code": appconfig.start_error, "Message": "Deployment #2 is in progress."}
            raise ClientError({"Error": error}, "StartDeployment")
        number = len(appconfig.started)
        return _Answer(), {"DeploymentNumber": number, "State": "DEPLOYING"}

    def listing(**_: Any) -> tuple[_Answer, dict[str, Any]]:
        return _Answer(), {"Items": appconfig.deployments}

    session.events.register("provide-client-params.appconfig.StartDeployment", record)
    session.events.register("before-call.appconfig.StartDeployment", start)
    session.events.register("before-call.appconfig.ListDeployments", listing)


@pytest.fixture
def appconfig(monkeypatch: pytest.MonkeyPatch) -> Iterator[AppConfig]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        boto3.setup_default_session()
        client = boto3.client("appconfig", region_name=REGION)
        application = client.create_application(
            Name="telemetry-rules", Tags={STRATEGY_TAG: STRATEGY}
        )
        profile = client.create_configuration_profile(
            ApplicationId=application["Id"], Name="rules", LocationUri="hosted"
        )
        found = AppConfig(application["Id"], profile["Id"])
        _answering(found)
        yield found
    boto3.DEFAULT_SESSION = None


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "a-temperature.yaml").write_text(TEMPERATURE)
    (directory / "b-pressure.yaml").write_text(PRESSURE)
    return directory


def test_deploy_uploads_the_checked_files_as_one_json_rule_file_and_starts_its_deployment(
    appconfig: AppConfig, rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a directory of two rule files (one sets the notifications)
    # When it is deployed to the stack's profile
    status = main(["rules", "deploy", str(rules), *appconfig.where()])

    # Then the files are checked, and version 1 is uploaded and its deployment started
    out = capsys.readouterr()
    assert status == 0, out.err
    assert out.out.splitlines()[0] == f"{rules}: OK, 2 rules in 2 files"
    assert "deploying version 1 " in out.out
    hosted = appconfig.hosted(1)
    assert hosted["ContentType"] == "application/json"
    content = hosted["Content"].read()
    # as one JSON rule file that means to the function exactly what the files say
    deployed = rules_of(Configuration("1", content))
    assert rule_set_to_json(deployed) == rule_set_to_json(load_rules(rules))
    assert sorted(json.loads(content)) == ["notifications", "rules"]
    # with the strategy the template tagged the application with
    (started,) = appconfig.started
    assert started == started | {
        "ApplicationId": appconfig.application,
        "EnvironmentId": ENVIRONMENT,
        "ConfigurationProfileId": appconfig.profile,
        "ConfigurationVersion": "1",
        "DeploymentStrategyId": STRATEGY,
    }


def test_deploy_reads_the_rule_files_through_the_check_once(
    appconfig: AppConfig,
    rules: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the rule check counted
    checked: list[Any] = []
    check = rule_specs.load_rule_set

    def counted(paths: Any) -> RuleSet:
        checked.append(paths)
        return check(paths)

    monkeypatch.setattr(rule_specs, "load_rule_set", counted)

    # When a directory of rules is deployed
    status = main(["rules", "deploy", str(rules), *appconfig.where()])

    # Then the files were checked once, and what the check accepted was deployed
    assert status == 0, capsys.readouterr().err
    assert checked == [[rules]]
    assert [s["ConfigurationVersion"] for s in appconfig.started] == ["1"]


def test_a_strategy_given_replaces_the_stacks(
    appconfig: AppConfig, rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the rules are deployed twice, the second time with a strategy of AWS's
    main(["rules", "deploy", str(rules), *appconfig.where()])
    status = main(
        [
            "rules",
            "deploy",
            str(rules),
            *appconfig.where(),
            "--strategy",
            "AppConfig.Linear50PercentEvery30Seconds",
        ]
    )

    # Then version 2 goes out with that strategy
    assert status == 0, capsys.readouterr().err
    assert [(s["ConfigurationVersion"], s["DeploymentStrategyId"]) for s in appconfig.started] == [
        ("1", STRATEGY),
        ("2", "AppConfig.Linear50PercentEvery30Seconds"),
    ]


def test_invalid_rules_are_not_deployed(
    appconfig: AppConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a rule file whose critical level is below its warning level
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVALID)

    # When it is deployed
    status = main(["rules", "deploy", str(bad), *appconfig.where()])

    # Then the problem is reported as `rules check` reports it, and nothing is uploaded
    err = capsys.readouterr().err
    assert status == 1
    assert "boiler-temperature" in err
    assert "Traceback" not in err
    assert appconfig.started == []
    with pytest.raises(ClientError):
        appconfig.hosted(1)


def test_a_path_that_names_no_file_is_a_usage_error(
    appconfig: AppConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["rules", "deploy", str(tmp_path / "missing.yaml"), *appconfig.where()])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("telemetry: error: ")
    assert appconfig.started == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"profile": "nope123"}, "telemetry: error: not found in AppConfig (application "),
        (
            {"start_error": "ConflictException"},
            "telemetry: error: a deployment is already in progress in environment env1234: ",
        ),
    ],
)
def test_appconfig_refusals_are_one_line_in_the_users_words(
    appconfig: AppConfig,
    rules: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    message: str,
) -> None:
    # Given a profile that does not exist, or a deployment already in progress
    for name, value in change.items():
        setattr(appconfig, name, value)

    # When the rules are deployed
    status = main(["rules", "deploy", str(rules), *appconfig.where()])

    # Then the command fails with one line saying why, no traceback
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(message), err
    assert err.count("\n") == 1


def test_without_a_strategy_tag_or_option_it_says_what_to_pass(
    appconfig: AppConfig, rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an application the template did not make (no strategy tag)
    client = boto3.client("appconfig", region_name=REGION)
    untagged = client.create_application(Name="by-hand")["Id"]
    where = appconfig.where()
    where[1] = untagged

    # When rules are deployed there without --strategy
    status = main(["rules", "deploy", str(rules), *where])

    # Then it asks for --strategy
    err = capsys.readouterr().err
    assert status == 1
    assert err.rstrip().endswith("pass --strategy ID")


def test_without_a_region_it_says_so(
    appconfig: AppConfig,
    rules: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    boto3.setup_default_session()
    where = appconfig.where()[:-2]

    status = main(["rules", "deploy", str(rules), *where])

    assert status == 2
    assert (
        capsys.readouterr().err
        == "telemetry: error: no AWS region: pass --region or set AWS_REGION\n"
    )


def deployment(number: int, version: str, state: str, **more: Any) -> dict[str, Any]:
    return {
        "DeploymentNumber": number,
        "ConfigurationName": "rules",
        "ConfigurationVersion": version,
        "State": state,
        "PercentageComplete": 100.0,
        "StartedAt": dt.datetime(2026, 12, 6, 9, number, tzinfo=dt.UTC),
        **more,
    }


def test_status_shows_the_version_in_force_and_what_is_deploying(
    appconfig: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given version 1 deployed, version 2 rolled back, version 3 baking, and another
    # profile's deployment in the same environment
    appconfig.deployments = [
        deployment(4, "3", "BAKING"),
        deployment(3, "9", "COMPLETE", ConfigurationName="other"),
        deployment(2, "2", "ROLLED_BACK"),
        deployment(1, "1", "COMPLETE", CompletedAt=dt.datetime(2026, 12, 6, 9, 5, tzinfo=dt.UTC)),
    ]

    # When the status is asked
    status = main(["rules", "status", *appconfig.where()])

    # Then it says what is in force, what is deploying, and what was rolled back since
    assert status == 0
    assert capsys.readouterr().out.splitlines() == [
        "in force: version 1 (deployment 1, completed 2026-12-06T09:05:00Z)",
        "deploying: version 3 (deployment 4, BAKING, 100% of targets)",
        "rolled back: version 2 (deployment 2)",
    ]

    # and as JSON
    assert main(["rules", "status", *appconfig.where(), "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["inForce"]["version"] == "1"
    assert [d["version"] for d in found["deploying"]] == ["3"]


NOTHING_IN_FORCE = (
    "in force: no completed deployment of this profile (the function has no rules from AppConfig)"
)


def test_status_with_nothing_deployed_says_so(
    appconfig: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "status", *appconfig.where()]) == 0
    assert capsys.readouterr().out.splitlines() == [
        NOTHING_IN_FORCE,
        "deploying: nothing",
    ]


def test_status_of_a_profile_that_does_not_exist_is_one_line(
    appconfig: AppConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    appconfig.profile = "nope123"
    assert main(["rules", "status", *appconfig.where()]) == 1
    err = capsys.readouterr().err
    assert err.startswith("telemetry: error: not found in AppConfig")
    assert err.count("\n") == 1


def test_the_schema_on_one_line_is_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "schema", "--compact"]) == 0
    compact = capsys.readouterr().out
    assert main(["rules", "schema"]) == 0
    assert json.loads(compact) == json.loads(capsys.readouterr().out)
    assert compact.count("\n") == 1


def test_backtest_says_which_rules_it_replayed_as_the_function_would(
    rules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the rule files and a recorded history that breaches one of them
    history = tmp_path / "history.jsonl"
    reading = {"sensorId": "t1", "type": "temperature", "value": 80, "unit": "C"}
    history.write_text(
        json.dumps({"deviceId": "boiler-1", "timestamp": 1_764_237_600_000, "data": [reading]})
        + "\n"
    )

    # When they are backtested as JSON
    assert main(["backtest", "--rules", str(rules), "--format", "json", str(history)]) == 0
    document = json.loads(capsys.readouterr().out)

    # Then its input names the files' digest: the rulesVersion the function's
    # transitions carry when it runs with these files
    version = load_rules(rules).version
    assert str(version).startswith("sha256:")
    assert document["input"]["rulesVersion"] == version
    assert len(document["transitions"]) == 1
