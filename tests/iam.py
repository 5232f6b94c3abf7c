"""What the telemetry function may do in AWS, read from template.yaml after the SAM transform.

Offline: the template is parsed and transformed with aws-sam-translator, no AWS call.

API (``from tests.iam import ...``):

``function_policy_statements(transformed=None) -> list[tuple[str, str]]``
    The (action, resource kind) pairs that the function role's inline policies allow,
    one pair per action and resource, including those only granted under a template
    condition (Stream ingest). ``transformed`` defaults to ``load_transformed_template()``.

``function_grants(transformed=None) -> list[Grant]``
    The same with details: ``Grant(action, kind, target, condition)``; ``target`` is the
    logical ID of the stack resource granted on, or the ARN pattern (an ``Fn::Sub``
    string) or ``"*"``; ``condition`` is the template condition the grant depends on,
    ``"!Cond"`` for the false branch of an ``Fn::If``, or None.

``allowed(action, resource_kind, transformed=None) -> bool``
    Whether the function may call ``action`` (``"service:Operation"``, IAM spelling) on a
    resource of that kind. Exact matching: no wildcards are granted, so none are expanded.

``required_grant(service, operation) -> tuple[str, str]``
    The (action, resource kind) a boto3 call needs, from its botocore service name and
    operation name, e.g. ``("sns", "PublishBatch") -> ("sns:Publish", "sns-topic")``.
    Raises KeyError for calls not in ``CALLS``: add a new call there consciously.
    A test recording the calls the code makes can then assert
    ``allowed(*required_grant(service, operation))`` for each.

``function_managed_policy_arns(transformed=None) -> list[str]``
    Managed policies of the role (SAM adds AWSLambdaBasicExecutionRole, for its logs).

Resource kinds: ``"*"`` (any resource), a kind per stack resource type (``KIND_BY_TYPE``:
``timestream-table``, ``sns-topic``, ``dynamodb-table``, ``sqs-queue``, ``kinesis-stream``;
the stack has one of each), a kind per parameter that names a resource the stack does not
own (``KIND_BY_PARAMETER``: ``secretsmanager-secret`` for the InfluxDB token's secret) and
``<service>-<resource type>`` for ARN patterns (``iot-thing`` for ``...:thing/*``,
``kms-key`` for ``...:key/*``).
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
REGION = "us-east-1"
# What `sam package` puts in place of a local CodeUri: the translator accepts only S3 URIs.
PACKAGED_CODE_URI = "s3://example-artifacts/telemetry.zip"

KIND_BY_TYPE = {
    "AWS::Timestream::Table": "timestream-table",
    "AWS::SNS::Topic": "sns-topic",
    "AWS::DynamoDB::Table": "dynamodb-table",
    "AWS::SQS::Queue": "sqs-queue",
    "AWS::Kinesis::Stream": "kinesis-stream",
    "AWS::Lambda::Function": "lambda-function",
}

# Parameters that name a resource created outside the stack (granted by ARN).
KIND_BY_PARAMETER = {
    "InfluxDBTokenSecretArn": "secretsmanager-secret",
}

# (botocore service name, operation) -> (IAM action, resource kind)
CALLS: dict[tuple[str, str], tuple[str, str]] = {
    ("timestream-write", "WriteRecords"): ("timestream:WriteRecords", "timestream-table"),
    ("timestream-write", "DescribeEndpoints"): ("timestream:DescribeEndpoints", "*"),
    ("sns", "Publish"): ("sns:Publish", "sns-topic"),
    ("sns", "PublishBatch"): ("sns:Publish", "sns-topic"),
    ("dynamodb", "GetItem"): ("dynamodb:GetItem", "dynamodb-table"),
    ("dynamodb", "PutItem"): ("dynamodb:PutItem", "dynamodb-table"),
    ("dynamodb", "BatchGetItem"): ("dynamodb:BatchGetItem", "dynamodb-table"),
    # Authorised per action inside it; the function puts (and deletes) state items.
    ("dynamodb", "TransactWriteItems"): ("dynamodb:PutItem", "dynamodb-table"),
    ("dynamodb", "DeleteItem"): ("dynamodb:DeleteItem", "dynamodb-table"),
    ("dynamodb", "Query"): ("dynamodb:Query", "dynamodb-index"),
    ("iot-data", "UpdateThingShadow"): ("iot:UpdateThingShadow", "iot-thing"),
    ("sqs", "SendMessage"): ("sqs:SendMessage", "sqs-queue"),
    # The sweep's fan-out: the function invokes itself, once per shard.
    ("lambda", "Invoke"): ("lambda:InvokeFunction", "lambda-function"),
    ("sqs", "SendMessageBatch"): ("sqs:SendMessage", "sqs-queue"),
    # The AppConfig extension's calls, made with the function's role.
    ("appconfigdata", "StartConfigurationSession"): (
        "appconfig:StartConfigurationSession",
        "appconfig-application",
    ),
    ("appconfigdata", "GetLatestConfiguration"): (
        "appconfig:GetLatestConfiguration",
        "appconfig-application",
    ),
    ("secretsmanager", "GetSecretValue"): (
        "secretsmanager:GetSecretValue",
        "secretsmanager-secret",
    ),
}

_ARN_FIELD = r"(?:\$\{[^}]*\}|[^:$]*)"  # a literal, or one ${...} (whose name holds colons)
_ARN_PATTERN = re.compile(
    rf"^arn:{_ARN_FIELD}:(?P<service>[a-z0-9-]+):{_ARN_FIELD}:{_ARN_FIELD}:(?P<type>[A-Za-z-]+)[/:]"
)


_INDEX_PATTERN = re.compile(r"^\$\{(?P<table>\w+)\.Arn\}/index/(?P<index>[\w.-]+)$")


class Grant(NamedTuple):
    """One action allowed on one resource by the function role."""

    action: str
    kind: str
    target: str
    condition: str | None


class _NoManagedPolicyLookups(ManagedPolicyLoader):
    """Fails if the template names a managed policy that needs an IAM lookup (offline)."""

    def __init__(self) -> None:
        super().__init__(iam_client=None)  # type: ignore[arg-type]

    def load(self) -> dict[str, str]:
        raise AssertionError("the template needs an IAM lookup of managed policies")


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain dicts, short tags (!Ref, !Sub...) turned into Fn:: forms."""
    return yaml_parse(path.read_text(encoding="utf-8"))


@functools.cache
def _transformed(path: Path) -> dict[str, Any]:
    template = load_template(path)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = PACKAGED_CODE_URI
    # The translator takes the partition of managed policy ARNs from the session's region.
    with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": REGION}):
        return transform(template, {}, _NoManagedPolicyLookups())


def load_transformed_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The CloudFormation template SAM makes of ``path`` (a fresh copy, offline)."""
    return copy.deepcopy(_transformed(path))


TELEMETRY: str = "TelemetryFunction"
ACTIONS: str = "ActionsFunction"


def _function_role(transformed: dict[str, Any], function: str = TELEMETRY) -> str:
    """The logical id of the role of one of the stack's functions."""
    resource = transformed["Resources"].get(function)
    if resource is None or resource["Type"] != "AWS::Lambda::Function":
        raise ValueError(f"the template has no function {function}")
    role = resource["Properties"]["Role"]
    return str(role["Fn::GetAtt"][0])


def _policy_documents(transformed: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    resources = transformed["Resources"]
    documents = [p["PolicyDocument"] for p in resources[role_id]["Properties"].get("Policies", [])]
    documents.extend(
        resource["Properties"]["PolicyDocument"]
        for resource in resources.values()
        if resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
        and {"Ref": role_id} in resource["Properties"].get("Roles", [])
    )
    return documents


def _statements(document: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
    """Each statement with the condition it depends on, Fn::If branches unfolded."""
    found: list[tuple[dict[str, Any], str | None]] = []
    statements = document["Statement"]
    for statement in statements if isinstance(statements, list) else [statements]:
        if "Fn::If" in statement:
            condition, when_true, when_false = statement["Fn::If"]
            for branch, label in ((when_true, condition), (when_false, f"!{condition}")):
                if branch != {"Ref": "AWS::NoValue"}:
                    found.append((branch, label))
        else:
            found.append((statement, None))
    return found


def _resource_kind(resource: Any, transformed: dict[str, Any]) -> tuple[str, str]:
    """(kind, target) of a statement's Resource entry."""
    if resource == "*":
        return "*", "*"
    if isinstance(resource, dict) and resource.get("Ref") in KIND_BY_PARAMETER:
        return KIND_BY_PARAMETER[resource["Ref"]], resource["Ref"]
    if isinstance(resource, dict) and ("Ref" in resource or "Fn::GetAtt" in resource):
        logical_id = resource["Ref"] if "Ref" in resource else resource["Fn::GetAtt"][0]
        resource_type = transformed["Resources"][logical_id]["Type"]
        return KIND_BY_TYPE.get(resource_type, resource_type), logical_id
    if isinstance(resource, dict) and isinstance(resource.get("Fn::Sub"), str):
        index = _INDEX_PATTERN.match(resource["Fn::Sub"])
        if index:
            return "dynamodb-index", f"{index['table']}/index/{index['index']}"
        match = _ARN_PATTERN.match(resource["Fn::Sub"])
        if match:
            return f"{match['service']}-{match['type']}", resource["Fn::Sub"]
    raise ValueError(f"unrecognised policy resource: {resource!r}")


def _resource_branches(resource: Any, condition: str | None) -> list[tuple[Any, str | None]]:
    """A Resource entry, or both branches of an ``Fn::If`` with the condition each needs."""
    if isinstance(resource, dict) and "Fn::If" in resource:
        name, when_true, when_false = resource["Fn::If"]
        return [(when_true, name), (when_false, f"!{name}")]
    return [(resource, condition)]


def function_grants(
    transformed: dict[str, Any] | None = None, function: str = TELEMETRY
) -> list[Grant]:
    """Every (action, resource) the function role's inline policies allow, with details."""
    transformed = load_transformed_template() if transformed is None else transformed
    grants = []
    for document in _policy_documents(transformed, _function_role(transformed, function)):
        for statement, condition in _statements(document):
            if statement.get("Effect") != "Allow":
                continue
            actions = statement["Action"]
            resources = statement["Resource"]
            for action in actions if isinstance(actions, list) else [actions]:
                for resource in resources if isinstance(resources, list) else [resources]:
                    for branch, branch_condition in _resource_branches(resource, condition):
                        kind, target = _resource_kind(branch, transformed)
                        grants.append(Grant(action, kind, target, branch_condition))
    return grants


def function_policy_statements(
    transformed: dict[str, Any] | None = None, function: str = TELEMETRY
) -> list[tuple[str, str]]:
    """(action, resource kind) pairs the function role allows."""
    return [(grant.action, grant.kind) for grant in function_grants(transformed, function)]


def allowed(
    action: str,
    resource_kind: str,
    transformed: dict[str, Any] | None = None,
    function: str = TELEMETRY,
) -> bool:
    """Whether the function role allows ``action`` on a resource of ``resource_kind``."""
    return (action, resource_kind) in function_policy_statements(transformed, function)


def required_grant(service: str, operation: str) -> tuple[str, str]:
    """(IAM action, resource kind) that a boto3 call of ``service``.``operation`` needs."""
    try:
        return CALLS[service, operation]
    except KeyError:
        raise KeyError(
            f"{service}.{operation} is not in tests/iam.py CALLS: add it with its IAM action,"
            " and grant it in template.yaml if the function needs it"
        ) from None


def function_managed_policy_arns(
    transformed: dict[str, Any] | None = None, function: str = TELEMETRY
) -> list[str]:
    """Managed policy ARNs attached to the function role."""
    transformed = load_transformed_template() if transformed is None else transformed
    role = transformed["Resources"][_function_role(transformed, function)]
    return list(role["Properties"].get("ManagedPolicyArns", []))
