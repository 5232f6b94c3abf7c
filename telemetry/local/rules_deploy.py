"""`telemetry rules deploy` and `telemetry rules status`: rules in AWS AppConfig.

- `deploy PATH... --application A --environment E --profile P [--strategy S]`:
  checks the files as `telemetry rules check` does, merges them into the one JSON
  rule file the function reads (checked again as the function checks it, and
  equal to the files' rules), uploads it as a new hosted configuration version
  and starts its deployment to the environment. The strategy defaults to the
  one the stack's template made (the application's tag `STRATEGY_TAG`).
- `status --application A --environment E --profile P`: the version in force
  (the latest completed deployment of the profile) and what is deploying.

A, E and P are AppConfig ids, as the stack's outputs name them (RulesApplicationId,
RulesEnvironmentId, RulesProfileId). AWS failures are one line in the user's
words (`RulesDeployError`), never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from telemetry.core.rules import RuleSet, rule_files, rule_set_to_json

STRATEGY_TAG: Final = "telemetry:rules-deployment-strategy"
"""The application's tag naming the deployment strategy its stack made."""
CONTENT_TYPE: Final = "application/json"
IN_PROGRESS: Final = ("DEPLOYING", "BAKING", "VALIDATING", "ROLLING_BACK")
FAILED = 1
USAGE = 2


class RulesDeployError(RuntimeError):
    """Something the user can fix, or an AWS failure: one line, `exit_code`."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_where(parser: argparse.ArgumentParser, url: Any) -> None:
    """The options naming the rules' configuration profile in AppConfig."""
    group = parser.add_argument_group("where the rules live (the stack's outputs)")
    group.add_argument("--application", required=True, metavar="ID", help="RulesApplicationId")
    group.add_argument("--environment", required=True, metavar="ID", help="RulesEnvironmentId")
    group.add_argument("--profile", required=True, metavar="ID", help="RulesProfileId")
    group.add_argument("--region", help="AWS region (default: your configuration's)")
    group.add_argument(
        "--endpoint-url", type=url, metavar="URL", help="another AppConfig endpoint (testing)"
    )


# --- the document -------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise RulesDeployError(f"a value of type {type(value).__name__} has no JSON form: {value!r}")


def document(paths: Sequence[Path], checked: RuleSet) -> bytes:
    """The one JSON rule file that holds the rules of `paths` (a set `rules check`
    accepted as `checked`): their rules and gateways in order, the notifications
    of the file that sets them. RulesDeployError when it would not mean `checked`
    to the function."""
    import yaml  # noqa: PLC0415

    from telemetry.adapters.appconfig import Configuration  # noqa: PLC0415
    from telemetry.core.rules import RuleFileError  # noqa: PLC0415
    from telemetry.rules_source import rules_of  # noqa: PLC0415

    merged: dict[str, Any] = {}
    files = dict.fromkeys(f for path in paths for f in rule_files(path))
    for file in files:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            continue
        for key, value in raw.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif value is not None:
                merged[key] = value
    content = json.dumps(merged, default=_json_value, separators=(",", ":")).encode()
    try:
        as_deployed = rules_of(Configuration("local", content))
    except RuleFileError as exc:
        raise RulesDeployError(
            f"the merged rule file does not pass the function's check: {exc.problems[0]}"
        ) from None
    if rule_set_to_json(as_deployed) != rule_set_to_json(checked):
        raise RulesDeployError("the merged rule file would not mean what the files say")
    return content


# --- AppConfig ----------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    import boto3  # noqa: PLC0415

    kwargs: dict[str, Any] = {}
    if args.endpoint_url:
        kwargs["endpoint_url"] = args.endpoint_url
    if args.region:
        kwargs["region_name"] = args.region
    return boto3.client("appconfig", **kwargs)


def _aws_words(exc: Exception, args: argparse.Namespace) -> RulesDeployError:
    """An AWS failure in the user's words."""
    from botocore.exceptions import (  # noqa: PLC0415
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    if isinstance(exc, NoRegionError):
        return RulesDeployError("no AWS region: pass --region or set AWS_REGION", USAGE)
    if isinstance(exc, NoCredentialsError):
        return RulesDeployError("no AWS credentials: configure them (aws configure) first")
    if isinstance(exc, EndpointConnectionError):
        return RulesDeployError(f"cannot reach AppConfig: {exc}")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "") or code
        where = f"application {args.application}, environment {args.environment}, profile "
        where += args.profile
        if code == "ResourceNotFoundException":
            return RulesDeployError(f"not found in AppConfig ({where}): {message}")
        if code == "BadRequestException":
            return RulesDeployError(f"AppConfig refused the rules: {message}")
        if code == "ConflictException":
            return RulesDeployError(
                f"a deployment is already in progress in environment {args.environment}: "
                f"wait for it (telemetry rules status) or stop it ({message})"
            )
        if code in {"AccessDeniedException", "AccessDenied"}:
            return RulesDeployError(f"not allowed: {message}")
        return RulesDeployError(f"AppConfig failed ({code}): {message}")
    return RulesDeployError(f"AppConfig failed: {exc}")


def _aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    return (ClientError, BotoCoreError)


def _default_strategy(client: Any, application: str) -> str:
    """The strategy the stack made, named by the application's tag."""
    region = client.meta.region_name
    partition = client.meta.partition
    import boto3  # noqa: PLC0415

    account = boto3.client(
        "sts", region_name=region, endpoint_url=_sts_endpoint(client)
    ).get_caller_identity()["Account"]
    arn = f"arn:{partition}:appconfig:{region}:{account}:application/{application}"
    tags = client.list_tags_for_resource(ResourceArn=arn).get("Tags", {})
    strategy = tags.get(STRATEGY_TAG)
    if not strategy:
        raise RulesDeployError(
            f"application {application} has no tag {STRATEGY_TAG} (the template sets it): "
            "pass --strategy ID"
        )
    return str(strategy)


def _sts_endpoint(client: Any) -> str | None:
    url = str(client.meta.endpoint_url)
    return None if ".amazonaws.com" in url else url


def deploy(args: argparse.Namespace, content: bytes) -> dict[str, Any]:
    """Upload `content` as a new hosted version and start its deployment."""
    try:
        client = _client(args)
        strategy = args.strategy or _default_strategy(client, args.application)
        version = client.create_hosted_configuration_version(
            ApplicationId=args.application,
            ConfigurationProfileId=args.profile,
            Content=content,
            ContentType=CONTENT_TYPE,
            Description=args.description or "telemetry rules deploy",
        )["VersionNumber"]
        started = client.start_deployment(
            ApplicationId=args.application,
            EnvironmentId=args.environment,
            DeploymentStrategyId=strategy,
            ConfigurationProfileId=args.profile,
            ConfigurationVersion=str(version),
            Description=args.description or "telemetry rules deploy",
        )
    except _aws_errors() as exc:
        raise _aws_words(exc, args) from None
    return {
        "version": str(version),
        "deployment": started.get("DeploymentNumber"),
        "state": started.get("State"),
        "strategy": strategy,
    }


def status(args: argparse.Namespace) -> dict[str, Any]:
    """The version in force and the deployments in progress, of the profile."""
    try:
        client = _client(args)
        name = client.get_configuration_profile(
            ApplicationId=args.application, ConfigurationProfileId=args.profile
        )["Name"]
        summaries: list[dict[str, Any]] = []
        token = None
        while True:
            page = client.list_deployments(
                ApplicationId=args.application,
                EnvironmentId=args.environment,
                **({"NextToken": token} if token else {}),
            )
            summaries += page.get("Items", [])
            token = page.get("NextToken")
            if not token or any(s.get("State") == "COMPLETE" for s in summaries):
                break
    except _aws_errors() as exc:
        raise _aws_words(exc, args) from None
    ours = sorted(
        (s for s in summaries if s.get("ConfigurationName") == name),
        key=lambda s: int(s.get("DeploymentNumber", 0)),
        reverse=True,
    )
    in_force = next((s for s in ours if s.get("State") == "COMPLETE"), None)
    deploying = [s for s in ours if s.get("State") in IN_PROGRESS]
    rolled_back = [
        s
        for s in ours
        if s.get("State") == "ROLLED_BACK"
        and (in_force is None or s["DeploymentNumber"] > in_force["DeploymentNumber"])
    ]
    return {
        "profile": name,
        "inForce": _summary(in_force),
        "deploying": [_summary(s) for s in deploying],
        "rolledBack": [_summary(s) for s in rolled_back],
    }


def _summary(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    out = {
        "version": item.get("ConfigurationVersion"),
        "deployment": item.get("DeploymentNumber"),
        "state": item.get("State"),
        "percentageComplete": item.get("PercentageComplete"),
    }
    for key, name in (("StartedAt", "startedAt"), ("CompletedAt", "completedAt")):
        value = item.get(key)
        if isinstance(value, dt.datetime):
            out[name] = value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return out


def status_lines(found: dict[str, Any]) -> list[str]:
    """`telemetry rules status` as text: what is in force, what is deploying."""
    in_force = found["inForce"]
    lines = [
        f"in force: version {in_force['version']} (deployment {in_force['deployment']}"
        + (f", completed {in_force['completedAt']}" if in_force.get("completedAt") else "")
        + ")"
        if in_force
        else "in force: no completed deployment of this profile (the function has no rules "
        "from AppConfig)"
    ]
    if not found["deploying"]:
        lines.append("deploying: nothing")
    for item in found["deploying"]:
        percent = item.get("percentageComplete")
        done = f", {percent:g}% of targets" if isinstance(percent, int | float) else ""
        lines.append(
            f"deploying: version {item['version']} (deployment {item['deployment']}, "
            f"{item['state']}{done})"
        )
    lines.extend(
        f"rolled back: version {item['version']} (deployment {item['deployment']})"
        for item in found["rolledBack"]
    )
    return lines
