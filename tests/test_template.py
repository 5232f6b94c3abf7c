"""template.yaml: it lints, transforms offline, wires the code and grants least privilege."""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cfnlint.api import lint_file

from telemetry import actions
from tests.iam import (
    ACTIONS,
    CALLS,
    TEMPLATE,
    function_grants,
    function_managed_policy_arns,
    function_policy_statements,
    load_template,
    load_transformed_template,
    required_grant,
)
from tests.iam import allowed as iam_allowed

ROOT = TEMPLATE.parent
THING = "${iot:Connection.Thing.ThingName}"
PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "telemetry",
}
ARN_PREFIX = "arn:aws:iot:us-east-1:123456789012"
# Physical names of the stack's resources, made up, for rendering Ref and GetAtt.
RESOURCE_VALUES = {
    "TelemetryDatabase": "telemetry-db",
    "TelemetryTable.Name": "telemetry",
    "AlertsTopic": "arn:aws:sns:us-east-1:123456789012:alerts",
    "DeadLetterQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/dead-letters",
    "AlertStateTable": "alert-state",
}
# Checks the template suppresses, each with a justifying comment right above it.
ALLOWED_SUPPRESSIONS = {"W3697"}
POWERTOOLS_VARIABLES = {
    "POWERTOOLS_SERVICE_NAME": "telemetry",
    "POWERTOOLS_METRICS_NAMESPACE": "IoTTelemetry",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
EXPECTED_GRANTS = {
    ("timestream:WriteRecords", "timestream-table"),
    ("timestream:DescribeEndpoints", "*"),
    ("sns:Publish", "sns-topic"),
    ("kms:GenerateDataKey", "kms-key"),
    ("kms:Decrypt", "kms-key"),
    ("dynamodb:GetItem", "dynamodb-table"),
    ("dynamodb:PutItem", "dynamodb-table"),
    ("dynamodb:BatchGetItem", "dynamodb-table"),
    ("dynamodb:DeleteItem", "dynamodb-table"),
    ("dynamodb:Query", "dynamodb-index"),
    ("iot:UpdateThingShadow", "iot-thing"),
    ("sqs:SendMessage", "sqs-queue"),
    ("kinesis:DescribeStream", "kinesis-stream"),
    ("kinesis:DescribeStreamSummary", "kinesis-stream"),
    ("kinesis:GetRecords", "kinesis-stream"),
    ("kinesis:GetShardIterator", "kinesis-stream"),
    ("kinesis:ListShards", "kinesis-stream"),
    ("secretsmanager:GetSecretValue", "secretsmanager-secret"),
    ("lambda:InvokeFunction", "lambda-function"),
    # RulesSource=AppConfig: the extension reads the rules' profile with the role.
    ("appconfig:StartConfigurationSession", "appconfig-application"),
    ("appconfig:GetLatestConfiguration", "appconfig-application"),
}
TARGET_BY_KIND = {
    "timestream-table": "TelemetryTable",
    "sns-topic": "AlertsTopic",
    "dynamodb-table": "AlertStateTable",
    "dynamodb-index": "AlertStateTable/index/due",
    "dynamodb-index:gateway": "AlertStateTable/index/gateway",
    "sqs-queue": "DeadLetterQueue",
    "kinesis-stream": "TelemetryStream",
    "secretsmanager-secret": "InfluxDBTokenSecretArn",
    "lambda-function": "TelemetryFunction",
    "iot-thing": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:thing/*/${ShadowName}",
    "*": "*",
    "appconfig-application": "arn:${AWS::Partition}:appconfig:${AWS::Region}:${AWS::AccountId}:"
    "application/${RulesApplication.ApplicationId}/environment/${RulesEnvironment.EnvironmentId}"
    "/configuration/${RulesProfile.ConfigurationProfileId}",
}
CLASSIC_SHADOW_TARGET = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:thing/*"


# ---------------------------------------------------------------- helpers


def parameter_values(template: dict[str, Any], **overrides: str) -> dict[str, str]:
    """Parameter values as CloudFormation passes them: defaults, as strings, overridden."""
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    return values | overrides


NO_VALUE = "<AWS::NoValue>"
"""What `render` gives for !Ref AWS::NoValue: the property is left out."""


@functools.cache
def _conditions_source() -> dict[str, Any]:
    return load_template()


def _lookup(name: str, parameters: dict[str, str]) -> str:
    if name == "AWS::NoValue":
        return NO_VALUE
    if name in parameters:
        return parameters[name]
    return PSEUDO_PARAMETERS.get(name) or RESOURCE_VALUES.get(name) or f"<{name}>"


def _render_sub(argument: Any, parameters: dict[str, str]) -> str:
    text, variables = (argument, {}) if isinstance(argument, str) else argument
    values = parameters | {key: render(value, parameters) for key, value in variables.items()}

    def substitute(match: re.Match[str]) -> str:
        literal, name = match.groups()
        return "${" + name + "}" if literal else _lookup(name, values)

    return re.sub(r"\$\{(!?)([^}]+)\}", substitute, text)


def render(value: Any, parameters: dict[str, str]) -> Any:
    """Evaluate the intrinsic functions this template uses in a value, as CloudFormation."""
    if not isinstance(value, dict):
        return value
    ((function, argument),) = value.items()
    if function == "Ref":
        return _lookup(argument, parameters)
    if function == "Fn::GetAtt":
        return _lookup(".".join(argument), parameters)
    if function == "Fn::Sub":
        return _render_sub(argument, parameters)
    if function == "Fn::Split":
        delimiter, source = argument
        return render(source, parameters).split(delimiter)
    if function == "Fn::Join":
        delimiter, items = argument
        items = render(items, parameters) if isinstance(items, dict) else items
        return delimiter.join(render(item, parameters) for item in items)
    if function == "Fn::If":
        condition, when_true, when_false = argument
        chosen = when_true if holds(condition, _conditions_source(), **parameters) else when_false
        return render(chosen, parameters)
    raise NotImplementedError(function)


def holds(condition: str, template: dict[str, Any], **overrides: str) -> bool:
    """Evaluate a condition of the template for the given parameter values."""
    return holds_expression(template["Conditions"][condition], template, **overrides)


def holds_expression(
    expression: dict[str, Any], template: dict[str, Any], **overrides: str
) -> bool:
    """Evaluate a condition expression (Conditions, Rules) for the given parameter values."""
    parameters = parameter_values(template, **overrides)

    def evaluate(expression: dict[str, Any]) -> bool:
        ((function, argument),) = expression.items()
        if function == "Fn::Equals":
            return bool(render(argument[0], parameters) == render(argument[1], parameters))
        if function == "Fn::Not":
            return not evaluate(argument[0])
        if function == "Fn::And":
            return all(evaluate(item) for item in argument)
        if function == "Fn::Or":
            return any(evaluate(item) for item in argument)
        if function == "Condition":
            return evaluate(template["Conditions"][argument])
        raise NotImplementedError(function)

    return evaluate(expression)


def statements_for(policy_document: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in policy_document["Statement"] if s["Action"] == action]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    return load_transformed_template()


@pytest.fixture(scope="module")
def resources(transformed: dict[str, Any]) -> dict[str, Any]:
    return transformed["Resources"]


@pytest.fixture(scope="module")
def function(resources: dict[str, Any]) -> dict[str, Any]:
    return resources["TelemetryFunction"]


@pytest.fixture(scope="module")
def function_env(function: dict[str, Any]) -> dict[str, Any]:
    return function["Properties"]["Environment"]["Variables"]


@pytest.fixture(scope="module")
def device_policy(template: dict[str, Any]) -> dict[str, Any]:
    document = template["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]
    rendered = [
        statement | {"Resource": render(statement["Resource"], parameter_values(template))}
        for statement in document["Statement"]
    ]
    return {"Statement": rendered}


# ---------------------------------------------------------------- lint and transform


def test_template_passes_cfn_lint_without_errors_or_warnings() -> None:
    # Given the template, with the checks it suppresses itself
    # When cfn-lint runs offline
    matches = lint_file(TEMPLATE)
    # Then it reports no error and no warning
    problems = [
        f"{match.rule.id} line {match.linenumber}: {match.message}"
        for match in matches
        if match.rule.id[0] in {"E", "W"}
    ]
    assert problems == []


def test_every_suppressed_lint_check_is_known_and_justified_in_a_comment() -> None:
    # Given the template's text
    lines = TEMPLATE.read_text(encoding="utf-8").splitlines()
    # When each ignore_checks list is found with the comment block above it
    suppressions = []
    for number, line in enumerate(lines):
        if match := re.search(r"ignore_checks:\s*\[([^\]]*)\]", line):
            comment = []
            for above in reversed(lines[:number]):
                if not above.strip().startswith("#"):
                    break
                comment.append(above)
            checks = {check.strip() for check in match.group(1).split(",") if check.strip()}
            suppressions.append((checks, " ".join(comment)))
    # Then there are some, each only of allowed checks, each named in its comment
    assert suppressions
    for checks, comment in suppressions:
        assert checks <= ALLOWED_SUPPRESSIONS
        assert all(check in comment for check in checks), comment


def test_template_transforms_offline_into_a_python_arm64_function(
    function: dict[str, Any],
) -> None:
    # Given the template transformed by aws-sam-translator (module fixture, no AWS call)
    properties = function["Properties"]
    # Then the function is the one sam build packages with the Makefile
    assert function["Type"] == "AWS::Lambda::Function"
    assert function["Metadata"]["BuildMethod"] == "makefile"
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Handler"] == "telemetry.handler.lambda_handler"
    assert (properties["MemorySize"], properties["Timeout"]) == (256, 120)
    assert "TracingConfig" not in properties


def test_function_log_group_keeps_logs_for_the_retention_parameter(
    resources: dict[str, Any],
) -> None:
    # Given the function's log group
    properties = resources["TelemetryFunctionLogGroup"]["Properties"]
    # Then it is the group Lambda writes to, kept LogRetentionDays
    assert properties["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${TelemetryFunction}"}
    assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}


# ---------------------------------------------------------------- code wiring


def test_handler_setting_resolves_to_the_lambda_handler(
    function: dict[str, Any],
    function_env: dict[str, Any],
    template: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the handler the function is deployed with, and its environment
    module_name, _, attribute = function["Properties"]["Handler"].rpartition(".")
    monkeypatch.setenv("AWS_DEFAULT_REGION", PSEUDO_PARAMETERS["AWS::Region"])
    for name, value in function_env.items():
        rendered = render(value, parameter_values(template))
        if rendered != NO_VALUE:
            monkeypatch.setenv(name, rendered)
    # When its module is imported
    module = importlib.import_module(module_name)
    # Then it has the handler function
    assert callable(getattr(module, attribute, None))


class SettingVariable(NamedTuple):
    names: set[str]  # the environment variable, or its alternative spellings
    required: bool  # no default: the function does not start without it
    deployed: bool  # the stack must set it (fields marked {"deployed": False} are local-only)


def _settings_variables() -> dict[str, SettingVariable]:
    """Field name -> its environment variables, from telemetry.settings.Settings."""
    from pydantic import AliasChoices

    from telemetry.settings import Settings

    variables = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, AliasChoices):
            names = {choice for choice in alias.choices if isinstance(choice, str)}
        else:
            names = {alias} if isinstance(alias, str) else set()
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if names:
            variables[field_name] = SettingVariable(
                names, field.is_required(), extra.get("deployed", True) is not False
            )
    return variables


def test_template_sets_every_environment_variable_the_settings_read(
    function_env: dict[str, Any],
) -> None:
    # Given the environment variables the code's settings declare for deployment
    variables = _settings_variables()
    # When those the template does not set are collected
    unset = {
        field: variable.names
        for field, variable in variables.items()
        if variable.deployed and not variable.names & function_env.keys()
    }
    # Then there are none
    assert variables
    assert unset == {}


def test_template_leaves_local_only_variables_unset(function_env: dict[str, Any]) -> None:
    # Given the settings marked as not deployed (local endpoints, overrides)
    local_only = {f: v for f, v in _settings_variables().items() if not v.deployed}
    # Then the template sets none of them, and the code does without them
    assert {
        f: v.names & function_env.keys()
        for f, v in local_only.items()
        if v.names & function_env.keys()
    } == {}
    assert [field for field, variable in local_only.items() if variable.required] == []


def test_template_sets_no_variable_the_code_does_not_read(function_env: dict[str, Any]) -> None:
    # Given the variables the settings read
    read = set().union(*(variable.names for variable in _settings_variables().values()))
    # When the template's other variables are collected, but Powertools' own
    unread = set(function_env) - read - POWERTOOLS_VARIABLES.keys()
    # Then there are none (a misspelt name would be one)
    assert unread == set()


def test_powertools_is_configured_without_tracing(function_env: dict[str, Any]) -> None:
    # Given the function's environment
    # Then Powertools has its service, namespace and log level, and tracing is off
    assert {name: function_env.get(name) for name in POWERTOOLS_VARIABLES} == POWERTOOLS_VARIABLES


@pytest.mark.parametrize("function", ["TelemetryFunction", "ActionsFunction"])
def test_makefile_build_target_installs_into_the_artifacts_dir(
    template: dict[str, Any], function: str
) -> None:
    # Given a function `sam build` builds with the Makefile (BuildMethod: makefile)
    assert template["Resources"][function]["Metadata"]["BuildMethod"] == "makefile"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    # When its build-<LogicalId> target is found
    match = re.search(
        rf"^(?:[\w-]+ )*build-{function}(?: [\w-]+)*:.*\n((?:\t.*\n?)+)", makefile, re.MULTILINE
    )
    # Then its recipe writes into the directory sam build gives it
    assert match is not None, f"the Makefile has no build-{function} target"
    assert "$(ARTIFACTS_DIR)" in match.group(1)


# ---------------------------------------------------------------- checkov

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
"""checkov, in a venv of its own (`make checkov`): its pins clash with ours."""


@functools.cache
def checkov_report() -> dict[str, Any]:
    executable = os.environ.get("CHECKOV") or str(CHECKOV)
    if not Path(executable).exists():
        pytest.fail(f"checkov is not installed at {executable}: run `make checkov`")
    done = subprocess.run(
        [
            executable,
            "--file",
            str(TEMPLATE),
            "--framework",
            "cloudformation",
            "--skip-download",  # offline: no guidelines fetched
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in {0, 1}, done.stderr[-2000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_checkov_finds_nothing_the_template_does_not_answer() -> None:
    # Given the template scanned by checkov 3.3, offline
    results = checkov_report()["results"]
    # Then it ran its checks, and none failed: each finding is fixed or suppressed
    assert checkov_report()["summary"]["parsing_errors"] == 0
    assert len(results["passed_checks"]) > 20
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results["failed_checks"]
    ]
    assert failed == []


def test_every_checkov_suppression_says_why() -> None:
    # Given the checks the template suppresses
    skipped = checkov_report()["results"]["skipped_checks"]
    # Then each has its reason in the template, a sentence, not a placeholder
    assert skipped
    for check in skipped:
        comment = check["check_result"].get("suppress_comment", "")
        assert len(comment.split()) >= 8, (check["check_id"], check["resource"], comment)


# ---------------------------------------------------------------- least privilege


def test_function_role_grants_no_wildcard_action(transformed: dict[str, Any]) -> None:
    # Given the function role's inline policies
    # When their actions are listed
    actions = {action for action, _ in function_policy_statements(transformed)}
    # Then none is a wildcard
    assert [action for action in actions if "*" in action] == []


def test_function_role_grants_exactly_the_calls_the_code_needs(
    transformed: dict[str, Any],
) -> None:
    # Given the function role's inline policies
    # When they are read as (action, resource kind) pairs
    grants = set(function_policy_statements(transformed))
    # Then they are exactly the expected ones
    assert grants == EXPECTED_GRANTS


def test_each_grant_targets_this_stacks_own_resource(transformed: dict[str, Any]) -> None:
    # Given every grant of the function role, but the KMS one (checked below)
    grants = [grant for grant in function_grants(transformed) if grant.kind != "kms-key"]
    # Then each is on the resource of this stack that it is meant for (the classic
    # shadow only when ShadowName is empty)
    wrong = [
        grant
        for grant in grants
        if grant.target != TARGET_BY_KIND[grant.kind]
        and (grant.target, grant.condition) != (CLASSIC_SHADOW_TARGET, "!HasNamedShadow")
        and (grant.kind, grant.target)
        != ("dynamodb-index", TARGET_BY_KIND["dynamodb-index:gateway"])
    ]
    assert wrong == []


@pytest.mark.parametrize(
    ("shadow_name", "resource"),
    [
        ("alerts", f"{ARN_PREFIX}:thing/*/alerts"),
        ("ops-mirror", f"{ARN_PREFIX}:thing/*/ops-mirror"),
        ("", f"{ARN_PREFIX}:thing/*"),
    ],
)
def test_shadow_updates_are_granted_on_the_named_shadow_only(
    template: dict[str, Any], shadow_name: str, resource: str
) -> None:
    # Given the function's shadow grant and a ShadowName
    function = template["Resources"]["TelemetryFunction"]["Properties"]
    statements = function["Policies"][0]["Statement"]
    (grant,) = [s for s in statements if s.get("Sid") == "ReportAlertsInShadows"]
    condition, named, classic = grant["Resource"]["Fn::If"]
    parameters = parameter_values(template, ShadowName=shadow_name)
    # When the branch its condition picks is rendered
    chosen = named if holds(condition, template, ShadowName=shadow_name) else classic
    # Then the function may update that shadow of any thing, and no other shadow
    assert render(chosen, parameters) == resource
    assert re.fullmatch(template["Parameters"]["ShadowName"]["AllowedPattern"], shadow_name)


def test_only_describe_endpoints_is_granted_on_any_resource(transformed: dict[str, Any]) -> None:
    # Given the function role's grants
    # When those on "*" are collected
    on_anything = {
        action for action, kind in function_policy_statements(transformed) if kind == "*"
    }
    # Then it is Timestream's endpoint discovery alone (it has no resource type)
    assert on_anything == {"timestream:DescribeEndpoints"}


def test_sns_key_may_be_used_only_through_sns(transformed: dict[str, Any]) -> None:
    # Given the role's only policy document
    role = transformed["Resources"]["TelemetryFunctionRole"]["Properties"]
    (policy,) = role["Policies"]
    # When the KMS statement is found
    (statement,) = [
        s for s in policy["PolicyDocument"]["Statement"] if s.get("Sid") == "UseSnsKeyThroughSns"
    ]
    # Then it holds only when the call comes through SNS of this region
    assert statement["Condition"] == {
        "StringEquals": {"kms:ViaService": {"Fn::Sub": "sns.${AWS::Region}.amazonaws.com"}}
    }


def test_stream_grants_exist_only_in_stream_mode(transformed: dict[str, Any]) -> None:
    # Given the function role's grants
    # When those on the stream are collected
    conditions = {g.condition for g in function_grants(transformed) if g.kind == "kinesis-stream"}
    # Then they all depend on IsStream
    assert conditions == {"IsStream"}


def test_function_role_has_only_the_logs_and_vpc_managed_policies(
    transformed: dict[str, Any],
) -> None:
    # Given the function role
    # Then its managed policies are the one for CloudWatch Logs and, because the function
    # may be attached to the InfluxDB instance's VPC, the one Lambda needs for its network
    # interfaces (SAM adds it whenever VpcConfig is in the template, even under a condition)
    assert function_managed_policy_arns(transformed) == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
    ]
    vpc = transformed["Resources"]["TelemetryFunction"]["Properties"]["VpcConfig"]
    assert vpc["Fn::If"][0] == "AttachesToInfluxDBVpc"
    assert vpc["Fn::If"][2] == {"Ref": "AWS::NoValue"}


@pytest.mark.parametrize(
    ("service", "operation"),
    [
        ("timestream-write", "WriteRecords"),
        ("timestream-write", "DescribeEndpoints"),
        ("sns", "PublishBatch"),
        ("dynamodb", "BatchGetItem"),
        ("iot-data", "UpdateThingShadow"),
        ("sqs", "SendMessage"),
    ],
)
def test_boto3_calls_of_the_code_are_allowed(
    service: str, operation: str, transformed: dict[str, Any]
) -> None:
    # Given a call the code makes
    # When its IAM action and resource kind are looked up
    action, kind = required_grant(service, operation)
    # Then the role allows it
    assert iam_allowed(action, kind, transformed)


def test_calls_outside_the_grants_are_not_allowed(transformed: dict[str, Any]) -> None:
    # Given actions the code must not have, or on the wrong resource
    # Then the helper says no
    assert not iam_allowed("dynamodb:Scan", "dynamodb-table", transformed)
    assert not iam_allowed("timestream:WriteRecords", "*", transformed)
    with pytest.raises(KeyError, match="CALLS"):
        required_grant("s3", "PutObject")


def test_topic_rule_role_may_only_send_to_the_queue_and_stream(
    resources: dict[str, Any],
) -> None:
    # Given the topic rule's role
    role = resources["TopicRuleRole"]["Properties"]
    (policy,) = role["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    # Then it sends to the dead-letter queue, and to the stream only in Stream mode
    assert statements[0]["Action"] == "sqs:SendMessage"
    assert statements[0]["Resource"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    condition, stream_statement, otherwise = statements[1]["Fn::If"]
    assert (condition, otherwise) == ("IsStream", {"Ref": "AWS::NoValue"})
    assert stream_statement["Action"] == "kinesis:PutRecord"
    assert stream_statement["Resource"] == {"Fn::GetAtt": ["TelemetryStream", "Arn"]}
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
    assert trust["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}


@pytest.mark.parametrize(
    ("stack", "rule_name", "connectivity_name"),
    [
        ("telemetry", "telemetry_telemetry", "telemetry_connectivity"),
        ("plant-a-prod", "plant_a_prod_telemetry", "plant_a_prod_connectivity"),
    ],
)
def test_topic_rule_role_trusts_only_this_stacks_rules(
    template: dict[str, Any], stack: str, rule_name: str, connectivity_name: str
) -> None:
    # Given a stack name and the rule role's trust condition
    role = template["Resources"]["TopicRuleRole"]["Properties"]
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
    rule = template["Resources"]["TelemetryRule"]["Properties"]
    connectivity = template["Resources"]["ConnectivityRule"]["Properties"]
    PSEUDO_PARAMETERS["AWS::StackName"] = stack
    try:
        # When the rules' names and the trusted source ARNs are rendered
        name = render(rule["RuleName"], parameter_values(template))
        other = render(connectivity["RuleName"], parameter_values(template))
        sources = [
            render(arn, parameter_values(template)) for arn in trust["ArnEquals"]["aws:SourceArn"]
        ]
    finally:
        PSEUDO_PARAMETERS["AWS::StackName"] = "telemetry"
    # Then the role trusts exactly those rules (valid rule names): the telemetry rule
    # and the connectivity rule, whose error actions share it; no wildcard
    assert (name, other) == (rule_name, connectivity_name)
    assert all(re.fullmatch(r"[a-zA-Z0-9_]{1,128}", n) for n in (name, other))
    assert sources == [f"{ARN_PREFIX}:rule/{rule_name}", f"{ARN_PREFIX}:rule/{connectivity_name}"]
    assert all("*" not in source for source in sources)
    assert "ArnLike" not in trust


# ---------------------------------------------------------------- devices and the rule


def test_device_connects_only_as_its_own_thing(device_policy: dict[str, Any]) -> None:
    # Given the device policy rendered with the default parameters
    # When its Connect statement is found
    (connect,) = statements_for(device_policy, "iot:Connect")
    # Then the client id must be the thing name of an attached certificate
    assert connect["Resource"] == f"{ARN_PREFIX}:client/{THING}"
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}


def test_device_publishes_only_its_own_telemetry_and_shadow_get(
    device_policy: dict[str, Any],
) -> None:
    # Given the device policy rendered with the default parameters
    # When its Publish resources are collected
    published = [s["Resource"] for s in statements_for(device_policy, "iot:Publish")]
    # Then they are its own telemetry topic and its own alerts-shadow get request
    assert published == [
        f"{ARN_PREFIX}:topic/dt/plant/{THING}/telemetry",
        f"{ARN_PREFIX}:topic/$aws/things/{THING}/shadow/name/alerts/get",
    ]


def test_device_can_read_but_never_update_its_shadows(device_policy: dict[str, Any]) -> None:
    # Given the device policy rendered with the default parameters
    statements = device_policy["Statement"]
    # When what it may subscribe to, receive and publish is collected
    reads = {s["Action"]: s["Resource"] for s in statements if s["Action"] != "iot:Publish"}
    published = [s["Resource"] for s in statements_for(device_policy, "iot:Publish")]
    # Then it reads only its own shadow topics and publishes no update or delete
    assert reads["iot:Subscribe"] == f"{ARN_PREFIX}:topicfilter/$aws/things/{THING}/shadow/*"
    assert reads["iot:Receive"] == f"{ARN_PREFIX}:topic/$aws/things/{THING}/shadow/*"
    assert not [topic for topic in published if re.search(r"/(update|delete)\b", topic)]
    assert all(THING in s["Resource"] for s in statements)


@pytest.mark.parametrize(
    ("topic_filter", "device_topic"),
    [
        ("dt/plant/+/telemetry", f"dt/plant/{THING}/telemetry"),
        ("factory/+/metrics", f"factory/{THING}/metrics"),
        ("+/telemetry", f"{THING}/telemetry"),
    ],
)
def test_device_publish_topic_follows_the_topic_filter(
    template: dict[str, Any], topic_filter: str, device_topic: str
) -> None:
    # Given a TopicFilter with its "+" at the thing-name level
    parameters = parameter_values(template, TopicFilter=topic_filter)
    document = template["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]
    (statement,) = [s for s in document["Statement"] if s["Sid"] == "PublishOwnTelemetry"]
    # When the device policy is rendered
    resource = render(statement["Resource"], parameters)
    # Then the device may publish on that topic with its own name in place of "+"
    assert resource == f"{ARN_PREFIX}:topic/{device_topic}"


def rendered_device_policy(template: dict[str, Any], **overrides: str) -> list[dict[str, Any]]:
    document = template["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]
    parameters = parameter_values(template, **overrides)
    return [s | {"Resource": render(s["Resource"], parameters)} for s in document["Statement"]]


def test_basic_ingest_is_a_choice_off_by_default(template: dict[str, Any]) -> None:
    # Given the BasicIngest parameter
    parameter = template["Parameters"]["BasicIngest"]
    # Then it is Disabled unless chosen, and its condition follows it
    assert parameter["AllowedValues"] == ["Disabled", "Enabled"]
    assert parameter["Default"] == "Disabled"
    assert holds("UsesBasicIngest", template) is False
    assert holds("UsesBasicIngest", template, BasicIngest="Enabled") is True


@pytest.mark.parametrize(
    ("stack_name", "rule_name"),
    [("telemetry", "telemetry_telemetry"), ("plant-a-prod", "plant_a_prod_telemetry")],
)
def test_with_basic_ingest_a_device_publishes_only_behind_its_rule_prefix(
    template: dict[str, Any], monkeypatch: pytest.MonkeyPatch, stack_name: str, rule_name: str
) -> None:
    # Given Basic Ingest enabled in a stack of that name
    monkeypatch.setitem(PSEUDO_PARAMETERS, "AWS::StackName", stack_name)
    statements = rendered_device_policy(template, BasicIngest="Enabled")
    # When its Publish resources are collected
    published = [s["Resource"] for s in statements if s["Action"] == "iot:Publish"]
    # Then its own telemetry topic is allowed only behind the rule's Basic Ingest prefix
    assert published == [
        f"{ARN_PREFIX}:topic/$aws/rules/{rule_name}/dt/plant/{THING}/telemetry",
        f"{ARN_PREFIX}:topic/$aws/things/{THING}/shadow/name/alerts/get",
    ]
    assert f"{ARN_PREFIX}:topic/dt/plant/{THING}/telemetry" not in published
    assert not [topic for topic in published if "*" in topic or "?" in topic]


def test_basic_ingest_names_the_rule_the_template_deploys(template: dict[str, Any]) -> None:
    # Given the rule's name and the Basic Ingest publish resource, rendered alike
    parameters = parameter_values(template, BasicIngest="Enabled")
    rule_name = render(template["Resources"]["TelemetryRule"]["Properties"]["RuleName"], parameters)
    (statement,) = [
        s
        for s in rendered_device_policy(template, BasicIngest="Enabled")
        if s["Sid"] == "PublishOwnTelemetry"
    ]
    # Then the prefix is $aws/rules/<that rule>/ and the output tells devices the same topic
    assert statement["Resource"].startswith(f"{ARN_PREFIX}:topic/$aws/rules/{rule_name}/")
    output = render(template["Outputs"]["DeviceTelemetryTopic"]["Value"], parameters)
    assert output == f"$aws/rules/{rule_name}/dt/plant/{THING}/telemetry"
    plain = render(template["Outputs"]["DeviceTelemetryTopic"]["Value"], parameter_values(template))
    assert plain == f"dt/plant/{THING}/telemetry"


@pytest.mark.parametrize("basic_ingest", ["Disabled", "Enabled"])
def test_device_policy_differs_between_modes_only_in_the_telemetry_topic(
    template: dict[str, Any], basic_ingest: str
) -> None:
    # Given the device policy in either mode
    statements = rendered_device_policy(template, BasicIngest=basic_ingest)
    default = rendered_device_policy(template)
    # Then connect, shadow get, subscribe and receive are the same in both
    assert [s for s in statements if s["Sid"] != "PublishOwnTelemetry"] == [
        s for s in default if s["Sid"] != "PublishOwnTelemetry"
    ]
    assert all(THING in s["Resource"] for s in statements)


@pytest.mark.parametrize("basic_ingest", ["Disabled", "Enabled"])
def test_rule_takes_device_id_from_the_same_level_in_both_modes(
    template: dict[str, Any], basic_ingest: str
) -> None:
    # Given the rule SQL in either mode (topic(n) does not count the Basic Ingest prefix)
    payload = template["Resources"]["TelemetryRule"]["Properties"]["TopicRulePayload"]
    sql = render(payload["Sql"], parameter_values(template, BasicIngest=basic_ingest))
    # Then deviceId is the thing-name level of TopicFilter
    assert "topic(3) AS deviceId" in sql


@pytest.mark.parametrize(
    ("topic_filter", "accepted"),
    [
        ("dt/plant/+/telemetry", True),
        ("+/telemetry", True),
        ("dt/plant/telemetry", False),
        ("dt/+/+/telemetry", False),
        ("dt/plant/#", False),
        ("dt/plant/+/tele+metry", False),
    ],
)
def test_topic_filter_must_have_exactly_one_plus_level(
    template: dict[str, Any], topic_filter: str, *, accepted: bool
) -> None:
    # Given the TopicFilter constraint (CloudFormation matches the whole value)
    pattern = template["Parameters"]["TopicFilter"]["AllowedPattern"]
    # Then a filter is accepted only with exactly one "+" level and no "#"
    assert bool(re.fullmatch(pattern, topic_filter)) is accepted


def test_default_device_id_level_is_the_plus_level_of_the_default_filter(
    template: dict[str, Any],
) -> None:
    # Given the default parameters
    parameters = parameter_values(template)
    # When the DeviceIdTopicLevel-th level of TopicFilter is taken (1-based)
    level = parameters["TopicFilter"].split("/")[int(parameters["DeviceIdTopicLevel"]) - 1]
    # Then it is the thing-name wildcard
    assert level == "+"


def test_rule_takes_device_id_from_the_topic_and_stamps_receipt_time(
    template: dict[str, Any],
) -> None:
    # Given the topic rule
    payload = template["Resources"]["TelemetryRule"]["Properties"]["TopicRulePayload"]
    # When its SQL is rendered with the default parameters
    sql = render(payload["Sql"], parameter_values(template))
    # Then deviceId is topic(3) and receivedAt the rules engine's timestamp
    assert "topic(" in sql
    assert "AS deviceId" in sql
    assert "timestamp() AS receivedAt" in sql
    assert sql == (
        "SELECT *, topic(3) AS deviceId, timestamp() AS receivedAt FROM 'dt/plant/+/telemetry'"
    )
    assert payload["AwsIotSqlVersion"] == "2016-03-23"


def test_rule_invokes_the_function_or_feeds_the_stream_by_ingest_mode(
    template: dict[str, Any],
) -> None:
    # Given the topic rule
    payload = template["Resources"]["TelemetryRule"]["Properties"]["TopicRulePayload"]
    # When its single action is unfolded
    ((condition, direct, stream),) = [action["Fn::If"] for action in payload["Actions"]]
    # Then Direct invokes the function and Stream keys the stream by device
    assert condition == "IsDirect"
    assert direct == {"Lambda": {"FunctionArn": {"Fn::GetAtt": ["TelemetryFunction", "Arn"]}}}
    partition_key = render(stream["Kinesis"]["PartitionKey"], parameter_values(template))
    assert partition_key == "${topic(3)}"
    assert payload["ErrorAction"]["Sqs"]["QueueUrl"] == {"Ref": "DeadLetterQueue"}


def test_iot_may_invoke_the_function_only_from_this_rule(resources: dict[str, Any]) -> None:
    # Given the function's resource policy for IoT
    permission = resources["TelemetryFunctionIotPermission"]
    # Then it names the rule and the account
    assert permission["Properties"]["Principal"] == "iot.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": ["TelemetryRule", "Arn"]}
    assert permission["Properties"]["SourceAccount"] == {"Ref": "AWS::AccountId"}


# ---------------------------------------------------------------- optional resources


@pytest.mark.parametrize(
    ("logical_id", "condition"),
    [
        ("AlertEmailSubscription", "HasAlertEmail"),
        ("TelemetryStream", "IsStream"),
        ("TelemetryStreamMapping", "IsStream"),
        ("StreamIteratorAgeAlarm", "IsStream"),
        ("TelemetryFunctionAsyncConfig", "IsDirect"),
        ("TelemetryFunctionIotPermission", "IsDirect"),
    ],
)
def test_optional_resources_depend_on_their_condition(
    template: dict[str, Any], logical_id: str, condition: str
) -> None:
    # Given an optional resource
    # Then it exists only under its condition
    assert template["Resources"][logical_id].get("Condition") == condition


@pytest.mark.parametrize(
    ("condition", "overrides", "expected"),
    [
        ("HasAlertEmail", {}, False),
        ("HasAlertEmail", {"AlertEmail": "ops@example.com"}, True),
        ("IsDirect", {}, True),
        ("IsStream", {}, False),
        ("IsStream", {"IngestMode": "Stream"}, True),
        ("IsDirect", {"IngestMode": "Stream"}, False),
        ("IsProvisionedStream", {"StreamMode": "PROVISIONED"}, True),
    ],
)
def test_conditions_follow_the_parameters(
    template: dict[str, Any], condition: str, overrides: dict[str, str], *, expected: bool
) -> None:
    # Given parameter values
    # When the condition is evaluated
    # Then it holds as the parameters say
    assert holds(condition, template, **overrides) is expected


def test_async_invocations_retry_twice_then_go_to_the_dead_letter_queue(
    resources: dict[str, Any],
) -> None:
    # Given the asynchronous invoke configuration (Direct mode)
    properties = resources["TelemetryFunctionAsyncConfig"]["Properties"]
    # Then failures are retried twice within an hour, then dead-lettered
    assert properties["MaximumRetryAttempts"] == 2
    assert properties["MaximumEventAgeInSeconds"] == 3600
    assert properties["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    }


def test_stream_mapping_reports_partial_failures_and_dead_letters_the_rest(
    resources: dict[str, Any],
) -> None:
    # Given the event source mapping (Stream mode)
    properties = resources["TelemetryStreamMapping"]["Properties"]
    # Then it batches by the parameters, bisects, retries 5 times, then dead-letters
    assert properties == {
        "EventSourceArn": {"Fn::GetAtt": ["TelemetryStream", "Arn"]},
        "FunctionName": {"Ref": "TelemetryFunction"},
        "StartingPosition": "LATEST",
        "BatchSize": {"Ref": "StreamBatchSize"},
        "MaximumBatchingWindowInSeconds": {"Ref": "StreamBatchWindowSeconds"},
        "BisectBatchOnFunctionError": True,
        "ParallelizationFactor": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "MaximumRetryAttempts": 5,
        "DestinationConfig": {
            "OnFailure": {"Destination": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
        },
    }


def test_stream_is_encrypted_and_sized_only_when_provisioned(resources: dict[str, Any]) -> None:
    # Given the stream
    properties = resources["TelemetryStream"]["Properties"]
    # Then it uses the AWS managed key, and a shard count only in PROVISIONED mode
    assert properties["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert properties["ShardCount"] == {
        "Fn::If": ["IsProvisionedStream", {"Ref": "StreamShardCount"}, {"Ref": "AWS::NoValue"}]
    }


def test_email_subscription_receives_only_the_chosen_severity(resources: dict[str, Any]) -> None:
    # Given the optional e-mail subscription
    properties = resources["AlertEmailSubscription"]["Properties"]
    # Then it filters on the severity message attribute
    assert properties["FilterPolicyScope"] == "MessageAttributes"
    assert properties["FilterPolicy"] == {"severity": [{"Ref": "AlertEmailSeverity"}]}


# ---------------------------------------------------------------- storage and alarms


def test_timestream_table_keeps_data_as_the_parameters_say(resources: dict[str, Any]) -> None:
    # Given the Timestream table
    properties = resources["TelemetryTable"]["Properties"]
    writes = properties["MagneticStoreWriteProperties"]
    # Then retention comes from the parameters and late data goes to the magnetic store
    assert properties["RetentionProperties"] == {
        "MemoryStoreRetentionPeriodInHours": {"Ref": "MemoryRetentionHours"},
        "MagneticStoreRetentionPeriodInDays": {"Ref": "MagneticRetentionDays"},
    }
    assert writes["EnableMagneticStoreWrites"] is True
    s3 = writes["MagneticStoreRejectedDataLocation"]["S3Configuration"]
    assert s3["BucketName"] == {"Ref": "RejectedDataBucket"}


def test_rejected_data_bucket_is_private_encrypted_and_expires(resources: dict[str, Any]) -> None:
    # Given the bucket of rejected-record reports
    properties = resources["RejectedDataBucket"]["Properties"]
    # Then it is encrypted, blocks public access and expires objects after 90 days
    encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    assert properties["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 90


def test_alert_state_table_is_keyed_by_device_and_protected(resources: dict[str, Any]) -> None:
    # Given the alert-state table
    properties = resources["AlertStateTable"]["Properties"]
    # Then it is on demand, keyed by deviceId, recoverable and encrypted
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [{"AttributeName": "deviceId", "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [
        {"AttributeName": "deviceId", "AttributeType": "S"},
        {"AttributeName": "dueShard", "AttributeType": "S"},
        {"AttributeName": "dueAt", "AttributeType": "N"},
        {"AttributeName": "gateway", "AttributeType": "S"},
        {"AttributeName": "heardAt", "AttributeType": "N"},
    ]
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}


def test_the_sweep_finds_due_devices_through_a_sparse_sharded_index(
    resources: dict[str, Any],
) -> None:
    # Given the state table's secondary index and the code's name for it
    from telemetry.adapters.state_store import DUE_INDEX

    indexes = resources["AlertStateTable"]["Properties"]["GlobalSecondaryIndexes"]
    (index,) = [i for i in indexes if i["IndexName"] == DUE_INDEX]
    # Then it is keyed by shard and due time, keys only (the sweep re-reads the item)
    assert index == {
        "IndexName": DUE_INDEX,
        "KeySchema": [
            {"AttributeName": "dueShard", "KeyType": "HASH"},
            {"AttributeName": "dueAt", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }


@pytest.mark.parametrize(
    ("minutes", "expression"), [("1", "rate(1 minute)"), ("5", "rate(5 minutes)")]
)
def test_the_sweep_runs_on_a_schedule_of_the_parameter(
    template: dict[str, Any], minutes: str, expression: str
) -> None:
    # Given the function's schedule
    events = template["Resources"]["TelemetryFunction"]["Properties"]["Events"]
    schedule = events["Sweep"]
    # When it is rendered for an interval
    rendered = render(
        schedule["Properties"]["Schedule"], parameter_values(template, SweepIntervalMinutes=minutes)
    )
    # Then it is a valid EventBridge rate expression of that interval
    assert schedule["Type"] == "Schedule"
    assert rendered == expression


def test_topic_and_queue_are_encrypted(resources: dict[str, Any]) -> None:
    # Given the alerts topic and the dead-letter queue
    topic = resources["AlertsTopic"]["Properties"]
    queue = resources["DeadLetterQueue"]["Properties"]
    # Then both are encrypted and the queue keeps messages 14 days
    assert topic["KmsMasterKeyId"] == "alias/aws/sns"
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 1209600


@pytest.mark.parametrize(
    ("logical_id", "metric"),
    [
        ("FunctionErrorsAlarm", "Errors"),
        ("FunctionThrottlesAlarm", "Throttles"),
        ("DeadLetterQueueAlarm", "ApproximateNumberOfMessagesVisible"),
        ("ShadowMirrorBrokenAlarm", "ShadowMirrorFailures"),
    ],
)
def test_alarms_fire_on_any_error_throttle_or_dead_letter(
    resources: dict[str, Any], logical_id: str, metric: str
) -> None:
    # Given an alarm
    properties = resources[logical_id]["Properties"]
    # Then it fires when its metric is above zero over 5 minutes
    assert properties["MetricName"] == metric
    assert (properties["Threshold"], properties["Period"]) == (0, 300)
    assert properties["ComparisonOperator"] == "GreaterThanThreshold"


def test_outputs_name_what_operators_and_devices_need(transformed: dict[str, Any]) -> None:
    # Given the stack's outputs
    outputs = set(transformed["Outputs"])
    # Then they include the function, topic, queue, tables, database, rule and policy
    assert {
        "TelemetryFunctionName",
        "AlertsTopicArn",
        "DeadLetterQueueUrl",
        "AlertStateTableName",
        "TimestreamDatabaseName",
        "TimestreamTableName",
        "TopicRuleName",
        "DevicePolicyName",
    } <= outputs


def test_the_shadow_alarm_watches_the_failures_that_will_not_heal(
    resources: dict[str, Any], function_env: dict[str, Any]
) -> None:
    # Given the alarm on the function's own shadow mirror metric
    properties = resources["ShadowMirrorBrokenAlarm"]["Properties"]
    dimensions = {d["Name"]: d["Value"] for d in properties["Dimensions"]}
    # Then it reads the namespace and dimensions the function emits, Retryable=false only
    assert properties["Namespace"] == function_env["POWERTOOLS_METRICS_NAMESPACE"]
    assert dimensions == {
        "Retryable": "false",
        "service": function_env["POWERTOOLS_SERVICE_NAME"],
    }


def test_the_shadow_alarm_names_exactly_the_dimension_set_the_function_emits(
    resources: dict[str, Any], function_env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given what the function prints for a mirror failure that will not heal
    from telemetry.observability import Metrics

    metrics = Metrics(function_env["POWERTOOLS_SERVICE_NAME"], "IoTTelemetry")
    metrics.emit("ShadowMirrorFailures", 1, {"Retryable": "false"})
    blob = json.loads(capsys.readouterr().out)
    [emitted] = blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"]

    # Then the alarm's dimensions are that set, name for name and value for value
    # (CloudWatch matches an alarm to a metric only on its whole dimension set)
    alarm = resources["ShadowMirrorBrokenAlarm"]["Properties"]["Dimensions"]
    assert sorted(d["Name"] for d in alarm) == sorted(emitted)
    assert {d["Name"]: d["Value"] for d in alarm} == {k: blob[k] for k in emitted}


# ---------------------------------------------------------------- the two time-series stores

INFLUXDB_PARAMETERS = {
    "TimeSeriesStore": "InfluxDB",
    "InfluxDBEndpoint": "https://abc123-xyz.us-east-1.timestream-influxdb.amazonaws.com:8181",
    "InfluxDBApi": "v3",
    "InfluxDBDatabase": "telemetry",
    "InfluxDBTokenSecretArn": (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:telemetry/influxdb-write-AbCdEf"
    ),
}
VPC_PARAMETERS = {
    **INFLUXDB_PARAMETERS,
    "InfluxDBSubnetIds": "subnet-0a1b2c3d4e5f60718,subnet-0f1e2d3c4b5a69788",
    "InfluxDBVpcId": "vpc-0123456789abcdef0",
    "InfluxDBSecurityGroupId": "sg-0123456789abcdef0",
    "InfluxDBRouteTableIds": "rtb-0123456789abcdef0",
}
VPC_RESOURCES = (
    "FunctionSecurityGroup",
    "InfluxDBIngressFromFunction",
)
VPC_ENDPOINT_RESOURCES = (
    "EndpointSecurityGroup",
    "DynamoDBEndpoint",
    "SnsEndpoint",
    "SqsEndpoint",
    "SecretsManagerEndpoint",
    "LambdaEndpoint",
    "IotDataEndpoint",
    "IotDataZone",
    "IotDataRecord",
)


def rendered_environment(template: dict[str, Any], **overrides: str) -> dict[str, str]:
    """The function's environment as CloudFormation sets it for these parameters."""
    variables = template["Globals"]["Function"]["Environment"]  # both functions share it
    parameters = parameter_values(template, **overrides)
    out = {name: render(value, parameters) for name, value in variables["Variables"].items()}
    return {name: value for name, value in out.items() if value != NO_VALUE}


@pytest.mark.parametrize(
    ("overrides", "store"),
    [({}, "timestream"), (INFLUXDB_PARAMETERS, "influxdb"), (VPC_PARAMETERS, "influxdb")],
)
def test_the_environment_of_either_store_is_valid_settings_of_that_store(
    template: dict[str, Any], overrides: dict[str, str], store: str
) -> None:
    # Given the function's environment rendered for a store's parameters
    from telemetry.settings import Settings

    environment = rendered_environment(template, **overrides)
    # When the function's settings read it
    settings = Settings.from_env(environment)
    # Then they are valid, for that store, with nothing of the other store set
    assert settings.timeseries_store == store
    if store == "influxdb":
        assert not {"TIMESTREAM_DB", "TIMESTREAM_TABLE"} & environment.keys()
        assert settings.influxdb_url == INFLUXDB_PARAMETERS["InfluxDBEndpoint"]
        assert settings.influxdb_token_secret_arn == INFLUXDB_PARAMETERS["InfluxDBTokenSecretArn"]
        assert "INFLUXDB_TOKEN" not in environment  # the plain token is for local runs only
    else:
        assert not [name for name in environment if name.startswith("INFLUXDB_")]
        assert settings.timestream_db == RESOURCE_VALUES["TelemetryDatabase"]


def test_timestream_grants_exist_only_with_live_analytics(transformed: dict[str, Any]) -> None:
    # Given the function role's grants
    grants = function_grants(transformed)
    # When those on Timestream are collected
    conditions = {g.condition for g in grants if g.action.startswith("timestream:")}
    # Then they all depend on UsesLiveAnalytics
    assert conditions == {"UsesLiveAnalytics"}


def test_the_token_secret_is_the_only_secret_the_function_may_read(
    transformed: dict[str, Any],
) -> None:
    # Given the function role's grants
    grants = [g for g in function_grants(transformed) if g.action.startswith("secretsmanager:")]
    # Then it may only read that one secret, named by its full ARN, when one is given
    assert grants == [
        (
            "secretsmanager:GetSecretValue",
            "secretsmanager-secret",
            "InfluxDBTokenSecretArn",
            "HasInfluxDBTokenSecret",
        )
    ]


@pytest.mark.parametrize(
    "logical_id",
    ["TelemetryDatabase", "TelemetryTable", "RejectedDataBucket", "RejectedDataBucketPolicy"],
)
def test_timestream_resources_exist_only_with_live_analytics(
    template: dict[str, Any], logical_id: str
) -> None:
    # Given a Timestream resource, Then it exists only with LiveAnalytics
    assert template["Resources"][logical_id]["Condition"] == "UsesLiveAnalytics"


@pytest.mark.parametrize(
    ("logical_id", "condition"),
    [
        *((r, "AttachesToInfluxDBVpc") for r in VPC_RESOURCES),
        *((r, "CreatesVpcEndpoints") for r in VPC_ENDPOINT_RESOURCES),
    ],
)
def test_vpc_resources_exist_only_when_the_function_joins_the_vpc(
    template: dict[str, Any], logical_id: str, condition: str
) -> None:
    # Given a resource of the VPC attachment, Then it depends on its condition
    assert template["Resources"][logical_id]["Condition"] == condition


@pytest.mark.parametrize(
    ("condition", "overrides", "expected"),
    [
        ("UsesLiveAnalytics", {}, True),
        ("UsesInfluxDB", {}, False),
        ("UsesInfluxDB", INFLUXDB_PARAMETERS, True),
        ("UsesLiveAnalytics", INFLUXDB_PARAMETERS, False),
        ("HasInfluxDBTokenSecret", INFLUXDB_PARAMETERS, True),
        ("HasInfluxDBTokenSecret", {**INFLUXDB_PARAMETERS, "InfluxDBTokenSecretArn": ""}, False),
        ("HasInfluxDBTokenSecret", {"InfluxDBTokenSecretArn": "arn:aws:x"}, False),
        ("AttachesToInfluxDBVpc", INFLUXDB_PARAMETERS, False),
        ("AttachesToInfluxDBVpc", VPC_PARAMETERS, True),
        ("AttachesToInfluxDBVpc", {**VPC_PARAMETERS, "TimeSeriesStore": "LiveAnalytics"}, False),
        ("CreatesVpcEndpoints", VPC_PARAMETERS, True),
        ("CreatesVpcEndpoints", {**VPC_PARAMETERS, "InfluxDBVpcEndpoints": "Existing"}, False),
    ],
)
def test_store_conditions_follow_the_parameters(
    template: dict[str, Any], condition: str, overrides: dict[str, str], *, expected: bool
) -> None:
    # Given parameter values, When the condition is evaluated, Then it holds as they say
    assert holds(condition, template, **overrides) is expected


def test_the_function_reaches_influxdb_and_the_endpoints_only_over_https(
    template: dict[str, Any],
) -> None:
    # Given the function's security group and the rule it adds to the instance's group
    resources = template["Resources"]
    egress = resources["FunctionSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    ingress = resources["InfluxDBIngressFromFunction"]["Properties"]
    # Then it may only send HTTPS and, to the instance's group alone, the InfluxDB port
    assert [(e["FromPort"], e["ToPort"]) for e in egress] == [
        (443, 443),
        ({"Ref": "InfluxDBPort"}, {"Ref": "InfluxDBPort"}),
    ]
    assert egress[1]["DestinationSecurityGroupId"] == {"Ref": "InfluxDBSecurityGroupId"}
    assert ingress["GroupId"] == {"Ref": "InfluxDBSecurityGroupId"}
    assert ingress["SourceSecurityGroupId"] == {"Ref": "FunctionSecurityGroup"}
    endpoint_ingress = resources["EndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert endpoint_ingress[0]["SourceSecurityGroupId"] == {"Ref": "FunctionSecurityGroup"}


def test_vpc_endpoints_cover_every_service_the_function_calls(template: dict[str, Any]) -> None:
    # Given the endpoints the stack creates for a function in a private subnet
    endpoints = {
        render(r["Properties"]["ServiceName"], parameter_values(template)).rsplit(".", 1)[-1]
        if not r["Properties"]["ServiceName"]["Fn::Sub"].endswith("iot.data")
        else "iot.data": r["Properties"]["VpcEndpointType"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::EC2::VPCEndpoint"
    }
    # Then DynamoDB has its (free) gateway and SNS, SQS, IoT data, Secrets Manager and
    # Lambda (the sweep's fan-out) their interface endpoints: every service of
    # tests/iam.py CALLS but Timestream
    assert endpoints == {
        "dynamodb": "Gateway",
        "sns": "Interface",
        "sqs": "Interface",
        "secretsmanager": "Interface",
        "lambda": "Interface",
        "iot.data": "Interface",
        "appconfigdata": "Interface",
    }
    called = {service for service, _ in CALLS} - {"timestream-write"}
    assert {s.replace("iot-data", "iot.data") for s in called} == set(endpoints)
    record = template["Resources"]["IotDataRecord"]["Properties"]
    assert render(record["Name"], parameter_values(template)) == (
        "data-ats.iot.us-east-1.amazonaws.com"
    )


def broken_rules(template: dict[str, Any], **overrides: str) -> list[str]:
    """The AssertDescription of every template rule the parameters break, as
    CloudFormation checks them before creating anything."""
    broken = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not holds_expression(
            rule["RuleCondition"], template, **overrides
        ):
            continue
        broken += [
            a["AssertDescription"]
            for a in rule["Assertions"]
            if not holds_expression(a["Assert"], template, **overrides)
        ]
    return broken


@pytest.mark.parametrize(
    ("overrides", "broken"),
    [
        ({}, []),
        (INFLUXDB_PARAMETERS, []),
        (VPC_PARAMETERS, []),
        (
            {"TimeSeriesStore": "InfluxDB"},
            [
                "TimeSeriesStore=InfluxDB needs InfluxDBEndpoint",
                "TimeSeriesStore=InfluxDB needs InfluxDBDatabase",
                "TimeSeriesStore=InfluxDB needs InfluxDBTokenSecretArn",
            ],
        ),
        (
            {**VPC_PARAMETERS, "InfluxDBVpcId": "", "InfluxDBRouteTableIds": ""},
            [
                "InfluxDBSubnetIds needs InfluxDBVpcId",
                "InfluxDBVpcEndpoints=Create needs InfluxDBRouteTableIds (DynamoDB)",
            ],
        ),
        ({**VPC_PARAMETERS, "InfluxDBRouteTableIds": "", "InfluxDBVpcEndpoints": "Existing"}, []),
    ],
)
def test_the_stack_refuses_influxdb_parameters_the_function_could_not_start_with(
    template: dict[str, Any], overrides: dict[str, str], broken: list[str]
) -> None:
    # Given parameter values, When CloudFormation checks the template's rules,
    # Then exactly the missing ones are named, before anything is created
    assert broken_rules(template, **overrides) == broken


# ---------------------------------------------------------------- operators' actions

EXPECTED_ACTIONS_GRANTS = {
    ("timestream:WriteRecords", "timestream-table"),
    ("timestream:DescribeEndpoints", "*"),
    ("secretsmanager:GetSecretValue", "secretsmanager-secret"),
    ("sns:Publish", "sns-topic"),
    ("kms:GenerateDataKey", "kms-key"),
    ("kms:Decrypt", "kms-key"),
    ("dynamodb:GetItem", "dynamodb-table"),
    ("dynamodb:PutItem", "dynamodb-table"),
    ("dynamodb:DeleteItem", "dynamodb-table"),
    ("dynamodb:BatchGetItem", "dynamodb-table"),
    ("iot:UpdateThingShadow", "iot-thing"),
    ("sqs:SendMessage", "sqs-queue"),
    ("appconfig:StartConfigurationSession", "appconfig-application"),
    ("appconfig:GetLatestConfiguration", "appconfig-application"),
}


def test_the_actions_function_is_its_own_function_with_only_what_acting_needs(
    transformed: dict[str, Any],
) -> None:
    # Given the actions function and its role
    function = transformed["Resources"]["ActionsFunction"]["Properties"]
    grants = set(function_policy_statements(transformed, function=ACTIONS))
    # Then it runs telemetry.actions.lambda_handler with exactly these grants: no stream,
    # no index, no scan, no wildcard action, each on this stack's resource
    assert function["Handler"] == "telemetry.actions.lambda_handler"
    assert grants == EXPECTED_ACTIONS_GRANTS
    wrong = [
        g
        for g in function_grants(transformed, function=ACTIONS)
        if g.kind not in {"kms-key", "secretsmanager-secret"}
        and g.target != TARGET_BY_KIND[g.kind]
        and (g.target, g.condition) != (CLASSIC_SHADOW_TARGET, "!HasNamedShadow")
    ]
    assert wrong == []


def test_the_actions_handler_setting_resolves(transformed: dict[str, Any]) -> None:
    handler_path = transformed["Resources"]["ActionsFunction"]["Properties"]["Handler"]
    module, _, name = handler_path.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_the_operators_topic_rule_exists_only_when_enabled_and_marks_what_it_sends(
    template: dict[str, Any],
) -> None:
    # Given the operators' topic rule, rendered with the parameter enabled
    rule = template["Resources"]["OperatorActionsRule"]
    parameters = parameter_values(template, OperatorTopicRule="Enabled")
    payload = rule["Properties"]["TopicRulePayload"]
    # Then it exists only under its condition, reads the operators' topic, adds `via`
    # (what the actions function recognises), and invokes the actions function
    assert rule["Condition"] == "HasOperatorTopicRule"
    assert holds("HasOperatorTopicRule", template) is False
    assert holds("HasOperatorTopicRule", template, OperatorTopicRule="Enabled") is True
    sql = render(payload["Sql"], parameters)
    assert actions.VIA == "via"
    assert sql == "SELECT *, topic() AS via, timestamp() AS receivedAt FROM 'ops/alerts/actions'"
    assert payload["Actions"] == [
        {"Lambda": {"FunctionArn": {"Fn::GetAtt": ["ActionsFunction", "Arn"]}}}
    ]
    role = template["Resources"]["OperatorActionsRuleRole"]["Properties"]
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]["ArnEquals"]
    assert render(trust["aws:SourceArn"], parameters) == (
        f"{ARN_PREFIX}:rule/telemetry_operator_actions"
    )


@pytest.mark.parametrize("basic_ingest", ["Disabled", "Enabled"])
def test_devices_may_not_publish_to_the_operators_topic(
    template: dict[str, Any], basic_ingest: str
) -> None:
    # Given the device policy as IoT Core evaluates it, and the operators' topic
    from telemetry.local.iot_policy import Connection, IotPolicy

    parameters = parameter_values(template, BasicIngest=basic_ingest, OperatorTopicRule="Enabled")
    document = template["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]
    rendered = {
        "Statement": [
            s | {"Resource": render(s["Resource"], parameters)} for s in document["Statement"]
        ]
    }
    policy = IotPolicy(rendered)
    device = Connection("pump-17", frozenset({"pump-17"}))
    topic = parameters["OperatorActionsTopic"]

    # When a device asks to publish there (or under the Basic Ingest prefix of it)
    # Then it is refused, while its own telemetry is allowed
    assert not policy.publish(device, topic).allowed
    assert not policy.publish(device, f"$aws/rules/telemetry_operator_actions/{topic}").allowed
    own = render(template["Outputs"]["DeviceTelemetryTopic"]["Value"], parameters)
    assert policy.publish(device, own.replace(THING, "pump-17")).allowed


def test_the_operators_policy_allows_acting_and_listing_and_nothing_broader(
    template: dict[str, Any],
) -> None:
    # Given the managed policy for operators
    document = template["Resources"]["OperatorsPolicy"]["Properties"]["PolicyDocument"]
    statements = {s["Sid"]: s for s in document["Statement"] if "Sid" in s}
    conditional = [s["Fn::If"] for s in document["Statement"] if "Fn::If" in s]
    # Then: invoke the actions function, read the state table, describe this stack, and
    # (with the topic rule) publish to the operators' topic
    assert statements["ActOnAlerts"]["Action"] == "lambda:InvokeFunction"
    assert statements["ActOnAlerts"]["Resource"] == {"Fn::GetAtt": ["ActionsFunction", "Arn"]}
    assert statements["ListAlerts"]["Action"] == [
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Scan",
    ]
    assert statements["ListAlerts"]["Resource"] == {"Fn::GetAtt": ["AlertStateTable", "Arn"]}
    assert statements["FindTheStack"]["Resource"] == {"Ref": "AWS::StackId"}
    ((condition, publish, otherwise),) = conditional
    assert (condition, otherwise) == ("HasOperatorTopicRule", {"Ref": "AWS::NoValue"})
    assert render(publish["Resource"], parameter_values(template)) == (
        f"{ARN_PREFIX}:topic/ops/alerts/actions"
    )
    assert all("*" not in str(s.get("Action")) for s in statements.values())


# ---------------------------------------------------------------- connectivity (issue 17)


def test_the_connectivity_rule_hands_iot_cores_lifecycle_events_to_the_function(
    template: dict[str, Any],
) -> None:
    # Given the connectivity rule and its parameter
    parameter = template["Parameters"]["ConnectivityEvents"]
    rule = template["Resources"]["ConnectivityRule"]
    payload = rule["Properties"]["TopicRulePayload"]
    telemetry = template["Resources"]["TelemetryRule"]["Properties"]["TopicRulePayload"]
    # Then it is on by default, off when disabled, reads every presence event as IoT Core
    # publishes it, invokes the telemetry function, and dead-letters as the telemetry rule
    assert (parameter["Default"], sorted(parameter["AllowedValues"])) == (
        "Enabled",
        ["Disabled", "Enabled"],
    )
    assert rule["Condition"] == "HasConnectivityEvents"
    assert holds("HasConnectivityEvents", template) is True
    assert holds("HasConnectivityEvents", template, ConnectivityEvents="Disabled") is False
    assert payload["Sql"] == "SELECT * FROM '$aws/events/presence/+/+'"
    assert payload["AwsIotSqlVersion"] == "2016-03-23"
    assert payload["Actions"] == [
        {"Lambda": {"FunctionArn": {"Fn::GetAtt": ["TelemetryFunction", "Arn"]}}}
    ]
    assert payload["ErrorAction"] == telemetry["ErrorAction"]
    name = render(rule["Properties"]["RuleName"], parameter_values(template))
    assert name == "telemetry_connectivity"


def test_iot_may_invoke_the_function_from_the_connectivity_rule_only_when_enabled(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    # Given the function's resource policy for the connectivity rule
    permission = resources["TelemetryFunctionConnectivityPermission"]
    # Then it exists with the rule, and names that rule and the account
    assert template["Resources"]["TelemetryFunctionConnectivityPermission"]["Condition"] == (
        "HasConnectivityEvents"
    )
    assert permission["Properties"]["Principal"] == "iot.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": ["ConnectivityRule", "Arn"]}
    assert permission["Properties"]["SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_a_gateway_counts_its_members_through_a_sparse_index_it_alone_may_query(
    resources: dict[str, Any], transformed: dict[str, Any]
) -> None:
    # Given the state table's indexes, the code's name for the gateway index, the grants
    from telemetry.adapters.state_store import GATEWAY_INDEX

    indexes = resources["AlertStateTable"]["Properties"]["GlobalSecondaryIndexes"]
    (index,) = [i for i in indexes if i["IndexName"] == GATEWAY_INDEX]
    queries = {
        (g.target, g.condition)
        for g in function_grants(transformed)
        if g.action == "dynamodb:Query"
    }
    actions_queries = [
        g for g in function_grants(transformed, ACTIONS) if g.action == "dynamodb:Query"
    ]
    # Then it is keyed by gateway and heardAt, keys only; the telemetry function may query
    # it (and the due index), by name, and the actions function no index at all
    assert index == {
        "IndexName": "gateway",
        "KeySchema": [
            {"AttributeName": "gateway", "KeyType": "HASH"},
            {"AttributeName": "heardAt", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }
    assert queries == {("AlertStateTable/index/due", None), ("AlertStateTable/index/gateway", None)}
    assert actions_queries == []
