"""`telemetry alerts`: the operators' tools for the alerts of a stack.

- `telemetry alerts list [--device D] [--severity S] [--format table|json]`:
  the alerts active now (and the keys operators snoozed or disabled), read
  from the state table, with their acknowledgement, snooze and latch.
- `telemetry alerts ack|snooze|unsnooze|disable|enable|reset DEVICE SENSOR RULE`:
  an action, through the actions function of a deployed stack (`--function
  NAME`, or found from `--stack NAME`); against a local AWS (`--endpoint-url`,
  the demo's, with `--stack` naming its stack there), the same handler runs in
  this process, since a local AWS runs no Lambda. `--by` defaults to the
  caller's identity (STS GetCallerIdentity).

Exit status: 0 listed, or the action applied; 1 the action was refused (the
line says why) or the AWS call failed; 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

from telemetry.terminal import Screen, plural

ACTIONS: Final = {
    "ack": "acknowledge",
    "snooze": "snooze",
    "unsnooze": "unsnooze",
    "disable": "disable",
    "enable": "enable",
    "reset": "reset",
}
SEVERITIES: Final = ("WARNING", "CRITICAL")
DEFAULT_PREFIX: Final = "telemetry"
USAGE: Final = 2


class AlertsError(RuntimeError):
    """Something the operator can fix, or an AWS failure: one line, `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- arguments ---------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, url: Any) -> None:
    """The `alerts` subcommands, on `parser` (the `alerts` command)."""
    commands = parser.add_subparsers(dest="alerts_command", required=True, metavar="COMMAND")
    listing = commands.add_parser(
        "list",
        help="the alerts active now, with their acknowledgement, snooze and latch",
        description="The alerts active now, read from the stack's state table: one line "
        "per (device, sensor, rule), with who acknowledged it, until when it is snoozed, "
        "whether it is latched; keys operators disabled too.",
    )
    listing.add_argument("--device", metavar="D", help="one device only")
    listing.add_argument(
        "--severity",
        choices=SEVERITIES,
        help="at least this severity (WARNING: both; CRITICAL: critical only)",
    )
    listing.add_argument("--format", choices=("table", "json"), default="table")
    _where(listing, url, table=True)
    for name, action in ACTIONS.items():
        sub = commands.add_parser(
            name,
            help=f"{action} an alert",
            description=f"{action.capitalize()} the alert of DEVICE SENSOR RULE, through the "
            "stack's actions function. Exit 1 when refused (the line says why).",
        )
        sub.add_argument("device", metavar="DEVICE")
        sub.add_argument("sensor", metavar="SENSOR")
        sub.add_argument("rule", metavar="RULE")
        if action == "snooze":
            sub.add_argument(
                "--until",
                required=True,
                metavar="WHEN",
                help="epoch ms, ISO-8601, or a duration from now such as 2h",
            )
        sub.add_argument(
            "--by", metavar="WHO", help="who acts, one line (default: your AWS identity)"
        )
        sub.add_argument(
            "--note", metavar="TEXT", help="why, for the record: one line, 1,024 characters"
        )
        sub.add_argument(
            "--alert-id",
            metavar="ID",
            help="act only if this episode is still the current one",
        )
        sub.add_argument("--format", choices=("text", "json"), default="text")
        _where(sub, url, table=False)
        sub.set_defaults(action=action)


def _where(parser: argparse.ArgumentParser, url: Any, *, table: bool) -> None:
    by_name = "--table" if table else "--function"
    group = parser.add_argument_group(f"which stack (one of --stack, {by_name}, --endpoint-url)")
    named = group.add_mutually_exclusive_group()
    named.add_argument(
        "--stack",
        metavar="NAME",
        help="a deployed stack (names from its outputs); with --endpoint-url, a stack of "
        "that local AWS (the demo prints its name: telemetry, telemetry-2, ...)",
    )
    if table:
        named.add_argument("--table", metavar="NAME", help="the state table, by name")
    else:
        named.add_argument("--function", metavar="NAME", help="the actions function, by name")
    group.add_argument(
        "--endpoint-url",
        type=url,
        metavar="URL",
        help="a local AWS (the demo's: `telemetry demo --keep` leaves it up), whose stack "
        f"--stack names (default {DEFAULT_PREFIX})",
    )
    group.add_argument(
        "--prefix", help="with --endpoint-url, the local stack's name, as --stack says it"
    )
    group.add_argument("--region", help="AWS region (default: your configuration's)")


def _check_where(args: argparse.Namespace) -> None:
    """Refuse flags that this stack choice would ignore."""
    if args.prefix is not None and not args.endpoint_url:
        raise AlertsError(
            "--prefix names a stack in a local AWS: it goes with --endpoint-url", USAGE
        )
    if args.prefix is not None and (args.stack or getattr(args, "table", None)):
        raise AlertsError(
            "--prefix names the local stack, as --stack does; --table names its table: give one",
            USAGE,
        )
    if args.prefix is not None and getattr(args, "function", None):
        raise AlertsError(
            "--prefix names a local stack; --function a deployed one: give one", USAGE
        )


def _local_stack(args: argparse.Namespace) -> str:
    """The name of the stack at --endpoint-url."""
    return str(args.prefix or args.stack or DEFAULT_PREFIX)


# --- running -----------------------------------------------------------------------


def run(args: argparse.Namespace, out: Screen) -> int:
    _check_where(args)
    if args.endpoint_url:
        from telemetry.local.server import LocalAwsError, check_reachable, point_at  # noqa: PLC0415

        try:
            check_reachable(args.endpoint_url)
        except LocalAwsError as exc:
            raise AlertsError(str(exc)) from None
        point_at(args.endpoint_url)
    try:
        if args.alerts_command == "list":
            return _list(args, out)
        return _act(args, out)
    except AlertsError:
        raise
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        if isinstance(exc, ClientError | BotoCoreError):
            raise AlertsError(f"AWS refused or failed: {exc}") from None
        raise


def _client(args: argparse.Namespace, service: str) -> Any:
    import boto3  # noqa: PLC0415

    kwargs: dict[str, Any] = {}
    if args.endpoint_url:
        kwargs["endpoint_url"] = args.endpoint_url
    if args.region:
        kwargs["region_name"] = args.region
    return boto3.client(service, **kwargs)


def _stack_outputs(args: argparse.Namespace) -> dict[str, str]:
    answer = _client(args, "cloudformation").describe_stacks(StackName=args.stack)
    stacks = answer.get("Stacks", [])
    if not stacks:
        raise AlertsError(f"no stack named {args.stack}")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def _local_environment(args: argparse.Namespace) -> dict[str, str]:
    """The function's environment for the local stack at --endpoint-url (the demo's)."""
    prefix = _local_stack(args)
    sns, sqs = _client(args, "sns"), _client(args, "sqs")
    topics = [t["TopicArn"] for t in sns.list_topics().get("Topics", [])]
    topic = next((t for t in topics if t.rsplit(":", 1)[-1] == f"{prefix}-alerts"), None)
    if topic is None:
        raise AlertsError(f"no stack {prefix!r} at {args.endpoint_url}: {_stacks_hint(args)}")
    queue = sqs.get_queue_url(QueueName=f"{prefix}-dead-letter")["QueueUrl"]
    return {
        "TIMESTREAM_DB": f"{prefix}-db",
        "TIMESTREAM_TABLE": "readings",
        "STATE_TABLE": f"{prefix}-alert-state",
        "ALERTS_TOPIC_ARN": topic,
        "DEAD_LETTER_QUEUE_URL": queue,
        "AWS_ENDPOINT_URL": args.endpoint_url,
    }


def _stacks_hint(args: argparse.Namespace) -> str:
    """What to do when the local stack named is not there: the stacks that are."""
    topics = [t["TopicArn"] for t in _client(args, "sns").list_topics().get("Topics", [])]
    names = sorted(
        name.removesuffix("-alerts")
        for name in (t.rsplit(":", 1)[-1] for t in topics)
        if name.endswith("-alerts")
    )
    if names:
        return f"its stacks are {', '.join(names)}: name one with --stack"
    return (
        f"it holds none; run `telemetry demo --keep` (or `telemetry demo --endpoint-url "
        f"{args.endpoint_url}`) first"
    )


def _state_table(args: argparse.Namespace) -> str:
    if getattr(args, "table", None):
        return str(args.table)
    if args.endpoint_url:
        return _local_environment(args)["STATE_TABLE"]
    if args.stack:
        outputs = _stack_outputs(args)
        if "AlertStateTableName" not in outputs:
            raise AlertsError(f"stack {args.stack} has no AlertStateTableName output")
        return outputs["AlertStateTableName"]
    raise AlertsError("say which stack: --stack NAME, --table NAME or --endpoint-url URL", 2)


# --- list --------------------------------------------------------------------------


def _list(args: argparse.Namespace, out: Screen) -> int:
    from telemetry.adapters.state_store import DynamoStateStore  # noqa: PLC0415

    store = DynamoStateStore(_state_table(args), _client(args, "dynamodb"))
    records = [store.load(args.device)] if args.device else list(store.scan())
    views = list(_views(records, args.severity))
    if args.format == "json":
        sys.stdout.write(json.dumps(views, indent=2) + "\n")
        return 0
    if not views:
        out.line(_none_listed(args, records))
        return 0
    rows = [_row(v) for v in views]
    out.line(f"{plural(len(views), 'alert')} active or held by an operator")
    out.table(("device", "sensor", "rule", "severity", "since", "held"), rows, fold=(4,))
    return 0


def _none_listed(args: argparse.Namespace, records: list[Any]) -> str:
    """Why the list is empty: nothing active at all, or nothing at the severity
    asked for (then what is active)."""
    on = f" on {args.device}" if args.device else ""
    if args.severity is None:
        return f"no active alert{on}"
    below = list(_views(records, None))
    if not below:
        return f"no alert at {args.severity}{on}, and none active below it"
    counts = Counter(_row(v)[3] for v in below)
    active = ", ".join(f"{n} {severity}" for severity, n in sorted(counts.items()))
    return (
        f"no alert at {args.severity}{on}; active or held below it: {active} "
        "(list without --severity to see them)"
    )


def _views(records: Iterable[Any], severity: str | None) -> Iterable[dict[str, Any]]:
    from telemetry.core.alerts import Severity  # noqa: PLC0415
    from telemetry.core.operators import key_view  # noqa: PLC0415

    floor = Severity[severity] if severity else Severity.WARNING
    for record in sorted(records, key=lambda r: r.device_id):
        for key, state in sorted(record.state.items()):
            silence = state.silence
            worst = max(state.severity, silence.severity if silence is not None else Severity.OK)
            held = state.disabled is not None or state.snoozed_until_ms is not None
            if worst >= floor or (held and severity is None):
                yield key_view(record.device_id, key, state)


def _row(view: Mapping[str, Any]) -> list[str]:
    nodata = view.get("nodata")
    severity = view["severity"]
    since = view.get("since") or ""
    if nodata and (severity == "OK" or nodata["severity"] == "CRITICAL"):
        severity, since = f"{nodata['severity']} (silent)", nodata.get("since") or ""
    held = []
    acked = view.get("acknowledged") or (nodata or {}).get("acknowledged")
    if acked:
        held.append(f"ack {acked['by']}")
    if view.get("snoozedUntil"):
        held.append(f"snoozed to {view['snoozedUntil'][:16]}Z")
    if view.get("latched"):
        held.append("latched")
    if view.get("disabled"):
        held.append(f"disabled by {view['disabled']['by']}")
    if view.get("maintenance"):
        hold = view["maintenance"]
        held.append(f"maintenance: {hold['name']} to {hold['until'][:16]}Z")
    return [view["deviceId"], view["sensorId"], view["rule"], severity, since[:19], ", ".join(held)]


# --- actions -----------------------------------------------------------------------


def _caller(args: argparse.Namespace) -> str:
    arn = _client(args, "sts").get_caller_identity().get("Arn")
    if not arn:
        raise AlertsError("cannot tell who you are (STS gave no ARN): give --by", 2)
    return str(arn)


def _act(args: argparse.Namespace, out: Screen) -> int:
    _one_line(("by", args.by), ("note", args.note))
    local = bool(args.endpoint_url and not args.function)
    function = None if local else _function_name(args)
    action: dict[str, Any] = {
        "action": args.action,
        "deviceId": args.device,
        "sensorId": args.sensor,
        "rule": args.rule,
        "by": args.by or _caller(args),
    }
    optional = (
        ("note", args.note),
        ("alertId", args.alert_id),
        ("until", _absolute(getattr(args, "until", None))),
    )
    action.update({k: v for k, v in optional if v is not None})
    answer = _invoke_local(args, action) if function is None else _invoke(args, function, action)
    if args.format == "json":
        sys.stdout.write(json.dumps(answer, indent=2) + "\n")
    elif answer.get("applied"):
        out.line(f"{args.action}: applied to {args.device} {args.sensor} ({args.rule})")
        out.line(_state_line(answer.get("state") or {}))
    if not answer.get("applied"):
        if args.format != "json":
            raise AlertsError(f"{args.action} refused: {answer.get('reason')}")
        return 1
    return 0


def _one_line(*fields: tuple[str, str | None]) -> None:
    """Refuse, before anything is sent, a `by` or `note` the function would refuse:
    more than one line, or control characters (in the function's own words)."""
    from telemetry.core.operators import InvalidActionError, one_line  # noqa: PLC0415

    try:
        for name, text in fields:
            if text is not None:
                one_line(name, text)
    except InvalidActionError as exc:
        raise AlertsError(str(exc), 2) from None


def _absolute(until: str | None) -> str | int | None:
    """`--until` as the epoch ms it means now (by the function's own reading of
    it), so that the function decides the same end however late, or however
    often, it runs the action. What it cannot read goes as given: the function
    then names what is wrong with it."""
    if until is None:
        return None
    from telemetry.core.operators import InvalidActionError, snooze_end_ms  # noqa: PLC0415

    try:
        return snooze_end_ms(until, time.time_ns() // 1_000_000)
    except InvalidActionError:
        return until


def _state_line(state: Mapping[str, Any]) -> str:
    parts = [f"now {state.get('severity', 'OK')}"]
    acked = state.get("acknowledged")
    if acked:
        parts.append(f"acknowledged by {acked['by']} at {acked['at']}")
    if state.get("snoozedUntil"):
        parts.append(f"snoozed until {state['snoozedUntil']}")
    if state.get("latched"):
        parts.append("latched")
    if state.get("disabled"):
        parts.append(f"disabled by {state['disabled']['by']}")
    if state.get("maintenance"):
        hold = state["maintenance"]
        parts.append(f"maintenance: {hold['name']} until {hold['until']}")
    return "; ".join(parts)


def _function_name(args: argparse.Namespace) -> str:
    if args.function:
        return str(args.function)
    if args.stack:
        outputs = _stack_outputs(args)
        if "ActionsFunctionName" not in outputs:
            raise AlertsError(f"stack {args.stack} has no ActionsFunctionName output")
        return outputs["ActionsFunctionName"]
    raise AlertsError("say which stack: --stack NAME, --function NAME or --endpoint-url URL", 2)


def _invoke(args: argparse.Namespace, function: str, action: Mapping[str, Any]) -> dict[str, Any]:
    """The deployed actions function, invoked and waited for."""
    answer = _client(args, "lambda").invoke(
        FunctionName=function, Payload=json.dumps(action).encode()
    )
    payload = json.loads(answer["Payload"].read() or b"{}")
    if answer.get("FunctionError"):
        message = payload.get("errorMessage") if isinstance(payload, dict) else payload
        malformed = isinstance(payload, dict) and payload.get("errorType") == "InvalidActionError"
        if malformed:
            raise AlertsError(str(message), 2)  # as the local path says it: a usage error
        raise AlertsError(f"the actions function refused the action: {message}")
    if not isinstance(payload, dict):
        raise AlertsError(f"the actions function answered {payload!r}")
    return payload


def _invoke_local(args: argparse.Namespace, action: Mapping[str, Any]) -> dict[str, Any]:
    """The actions handler in this process, against the local AWS (no Lambda there)."""
    from telemetry import actions, handler  # noqa: PLC0415
    from telemetry.core.operators import InvalidActionError  # noqa: PLC0415
    from telemetry.settings import Settings  # noqa: PLC0415

    rt = handler.build_runtime(Settings.from_env(_local_environment(args)))
    try:
        with _Quiet():
            return actions.handle_action(dict(action), rt)
    except InvalidActionError as exc:
        raise AlertsError(str(exc), 2) from None


class _Quiet:
    """The function's JSON log lines stay off the operator's screen."""

    def __enter__(self) -> None:
        import logging  # noqa: PLC0415

        self._logger = logging.getLogger("telemetry")
        self._level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)

    def __exit__(self, *_: object) -> None:
        self._logger.setLevel(self._level)
