"""template.yaml with RulesSource=AppConfig: the rules' AppConfig resources, the
extension layer, the alarm that rolls a bad deployment back, and nothing of it
by default (RulesSource=Package)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from telemetry.core.rules import rule_file_schema
from telemetry.local.rules_deploy import STRATEGY_TAG
from telemetry.settings import Settings
from tests.iam import function_grants, load_template, load_transformed_template
from tests.test_template import NO_VALUE, holds, parameter_values, render

APPCONFIG = {"RulesSource": "AppConfig"}
RULES_RESOURCES = {
    "RulesApplication": "AWS::AppConfig::Application",
    "RulesEnvironment": "AWS::AppConfig::Environment",
    "RulesProfile": "AWS::AppConfig::ConfigurationProfile",
    "RulesDeploymentStrategy": "AWS::AppConfig::DeploymentStrategy",
    "RulesRejectedAlarm": "AWS::CloudWatch::Alarm",
    "RulesMonitorRole": "AWS::IAM::Role",
    "AppConfigRulesPolicy": "AWS::IAM::Policy",
    "AppConfigDataEndpoint": "AWS::EC2::VPCEndpoint",
}
FUNCTIONS = ("TelemetryFunction", "ActionsFunction")
PROFILE_ARN = (
    "arn:${AWS::Partition}:appconfig:${AWS::Region}:${AWS::AccountId}:application/"
    "${RulesApplication.ApplicationId}/environment/${RulesEnvironment.EnvironmentId}"
    "/configuration/${RulesProfile.ConfigurationProfileId}"
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def exists(template: dict[str, Any], logical_id: str, **overrides: str) -> bool:
    condition = template["Resources"][logical_id].get("Condition")
    return condition is None or holds(condition, template, **overrides)


def environment(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    rendered = {
        name: render(v, parameter_values(template, **overrides)) for name, v in variables.items()
    }
    return {name: value for name, value in rendered.items() if value != NO_VALUE}


def layers(template: dict[str, Any], function: str, region: str, **overrides: str) -> Any:
    """The function's Layers as CloudFormation resolves them in `region`."""
    value = template["Resources"][function]["Properties"]["Layers"]
    condition, chosen, otherwise = value["Fn::If"]
    if not holds(condition, template, **overrides):
        return render(otherwise, parameter_values(template, **overrides))
    ((inner,),) = [chosen]
    has_arn, parameter, mapped = inner["Fn::If"]
    if holds(has_arn, template, **overrides):
        return [render(parameter, parameter_values(template, **overrides))]
    name, _, key = mapped["Fn::FindInMap"]
    return [template["Mappings"][name][region][key]]


def test_the_profiles_validator_is_the_rules_json_schema(template: dict[str, Any]) -> None:
    # Given the configuration profile's validator
    (validator,) = template["Resources"]["RulesProfile"]["Properties"]["Validators"]

    # Then it is the JSON Schema the code generates (`telemetry rules schema --compact`)
    assert validator["Type"] == "JSON_SCHEMA"
    assert json.loads(validator["Content"]) == rule_file_schema(), (
        "template.yaml's RulesProfile validator is stale: replace its Content with the "
        "output of `telemetry rules schema --compact`"
    )
    assert len(validator["Content"]) <= 32_768  # AppConfig's limit on a validator


def test_by_default_nothing_of_appconfig_is_deployed(template: dict[str, Any]) -> None:
    # Given the template's defaults (RulesSource=Package)
    # Then none of the AppConfig resources exists, no layer is added, and the function
    # reads the packaged rules with no AppConfig variable set
    assert template["Parameters"]["RulesSource"]["Default"] == "Package"
    for logical_id, kind in RULES_RESOURCES.items():
        assert template["Resources"][logical_id]["Type"] == kind
        assert not exists(template, logical_id), logical_id
    for function in FUNCTIONS:
        assert layers(template, function, "us-east-1") == NO_VALUE
    env = environment(template)
    assert env["RULES_SOURCE"] == "package"
    assert not {k for k in env if k.startswith(("APPCONFIG_", "AWS_APPCONFIG_"))}
    outputs = [
        o for o in template["Outputs"].values() if o.get("Condition") == "UsesAppConfigRules"
    ]
    assert len(outputs) == 4


def test_with_appconfig_the_function_reads_the_stacks_profile_through_the_extension(
    template: dict[str, Any],
) -> None:
    # Given RulesSource=AppConfig
    # Then the resources exist (the VPC endpoint only for a function in a VPC)
    for logical_id in RULES_RESOURCES:
        expected = logical_id != "AppConfigDataEndpoint"
        assert exists(template, logical_id, **APPCONFIG) is expected, logical_id
    # and both functions carry the extension and the variables naming the profile
    env = environment(template, **APPCONFIG, RulesPollSeconds="30")
    assert env["RULES_SOURCE"] == "appconfig"
    assert env["APPCONFIG_APPLICATION"] == "<RulesApplication.ApplicationId>"
    assert env["APPCONFIG_ENVIRONMENT"] == "<RulesEnvironment.EnvironmentId>"
    assert env["APPCONFIG_PROFILE"] == "<RulesProfile.ConfigurationProfileId>"
    assert env["AWS_APPCONFIG_EXTENSION_POLL_INTERVAL_SECONDS"] == "30"
    for function in FUNCTIONS:
        assert layers(template, function, "eu-west-1", **APPCONFIG) == [
            "arn:aws:lambda:eu-west-1:434848589818:layer:AWS-AppConfig-Extension-Arm64:241"
        ]
    # and the settings accept that environment (ids in place of the resources)
    ids = {
        "APPCONFIG_APPLICATION": "abc1234",
        "APPCONFIG_ENVIRONMENT": "def5678",
        "APPCONFIG_PROFILE": "ghi9012",
    }
    base = {
        "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
        "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
        "STATE_TABLE": "alert-state",
        "TIMESTREAM_DB": "db",
        "TIMESTREAM_TABLE": "t",
    }
    settings = Settings.from_env(
        base | {k: str(v) for k, v in env.items() if "APPCONFIG" in k or k == "RULES_SOURCE"} | ids
    )
    assert settings.rules_poll_seconds == 30
    assert settings.appconfig_url == (
        "http://localhost:2772/applications/abc1234/environments/def5678/configurations/ghi9012"
    )


def test_a_layer_arn_given_replaces_the_mapped_one(template: dict[str, Any]) -> None:
    # Given an extension layer named by the parameter
    arn = "arn:aws:lambda:us-east-1:027255383542:layer:AWS-AppConfig-Extension-Arm64:999"
    parameters = APPCONFIG | {"AppConfigExtensionLayerArn": arn}

    # Then both functions use it, and the parameter accepts only a layer version ARN
    for function in FUNCTIONS:
        assert layers(template, function, "us-east-1", **parameters) == [arn]
    pattern = template["Parameters"]["AppConfigExtensionLayerArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, arn)
    assert re.fullmatch(pattern, "")
    assert not re.fullmatch(pattern, "arn:aws:lambda:us-east-1:027255383542:layer:x")


def test_the_mapped_layers_are_the_arm64_extension_of_their_region(
    template: dict[str, Any],
) -> None:
    # Given the functions' architecture and the mapping of the extension's layers
    architectures = template["Globals"]["Function"]["Architectures"]
    mapping = template["Mappings"]["AppConfigExtensionArm64"]

    # Then each region's layer is AWS's ARM64 extension published in that region
    assert architectures == ["arm64"]
    assert len(mapping) >= 30
    for region, entry in mapping.items():
        partition = (
            "aws-cn" if region.startswith("cn-") else "aws-us-gov" if "gov" in region else "aws"
        )
        assert re.fullmatch(
            rf"arn:{partition}:lambda:{region}:\d{{12}}:layer:AWS-AppConfig-Extension-Arm64:\d+",
            entry["Arn"],
        ), region


def test_a_rejected_version_alarms_and_the_alarm_rolls_the_deployment_back(
    template: dict[str, Any],
) -> None:
    # Given the alarm and the environment's monitors
    alarm = template["Resources"]["RulesRejectedAlarm"]["Properties"]
    (monitor,) = template["Resources"]["RulesEnvironment"]["Properties"]["Monitors"]

    # Then the alarm watches the metric the function counts rejections in, as it emits it
    # (tests/test_observability.py: the handler prints every metric an alarm reads)
    assert alarm["MetricName"] == "RulesRejected"
    assert alarm["Namespace"] == environment(template)["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "telemetry"}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    # (missing data is no rejection: an INSUFFICIENT_DATA alarm would also roll back)
    assert alarm["TreatMissingData"] == "notBreaching"
    # and the environment's deployments roll back on it, through a role that may read it only
    assert monitor == {
        "AlarmArn": {"Fn::GetAtt": ["RulesRejectedAlarm", "Arn"]},
        "AlarmRoleArn": {"Fn::GetAtt": ["RulesMonitorRole", "Arn"]},
    }
    role = template["Resources"]["RulesMonitorRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "appconfig.amazonaws.com"}
    ((statement,),) = [p["PolicyDocument"]["Statement"] for p in role["Policies"]]
    assert statement["Action"] == "cloudwatch:DescribeAlarms"
    assert statement["Resource"] == {"Fn::GetAtt": ["RulesRejectedAlarm", "Arn"]}


def test_the_strategy_deploys_at_once_and_watches_and_the_cli_finds_it(
    template: dict[str, Any],
) -> None:
    # Given the deployment strategy and the application
    strategy = template["Resources"]["RulesDeploymentStrategy"]["Properties"]
    application = template["Resources"]["RulesApplication"]["Properties"]

    # Then every function gets a version at once, watched for 10 minutes, and the
    # application names the strategy for `telemetry rules deploy`
    assert (strategy["GrowthFactor"], strategy["DeploymentDurationInMinutes"]) == (100, 0)
    assert strategy["FinalBakeTimeInMinutes"] == 10
    assert {"Key": STRATEGY_TAG, "Value": {"Ref": "RulesDeploymentStrategy"}} in application["Tags"]


def test_the_functions_may_read_only_the_stacks_rules_profile() -> None:
    # Given both functions' grants on AppConfig
    transformed = load_transformed_template()
    for function in FUNCTIONS:
        grants = [
            g for g in function_grants(transformed, function) if g.action.startswith("appconfig:")
        ]
        # Then they are the extension's two data-plane calls, on the stack's profile only
        assert {g.action for g in grants} == {
            "appconfig:StartConfigurationSession",
            "appconfig:GetLatestConfiguration",
        }
        assert {g.target for g in grants} == {PROFILE_ARN}
    policy = load_template()["Resources"]["AppConfigRulesPolicy"]
    assert policy["Condition"] == "UsesAppConfigRules"
    assert policy["Properties"]["Roles"] == [
        {"Ref": "TelemetryFunctionRole"},
        {"Ref": "ActionsFunctionRole"},
    ]
