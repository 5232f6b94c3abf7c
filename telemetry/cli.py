"""The `telemetry` command: the local demo and the operators' tools.

- `telemetry demo`: the whole product on a laptop (local AWS, simulated fleet);
  `--store influxdb` writes the time series to a local influxd instead.
- `telemetry backtest --rules PATH FILE...`: replay recorded messages through
  rules, without AWS, to tune them before deploying; `--from influxdb` or
  `--from timestream` replays the readings the function stored instead.
- `telemetry rules check PATH...` / `telemetry rules schema`.
- `telemetry import iotevents FILE...`: AWS IoT Events models to a rules file.
- `telemetry rules deploy PATH... --application A --environment E --profile P`:
  check the files and deploy them to AWS AppConfig (RulesSource=AppConfig);
  `telemetry rules status ...`: what is in force there, and what is deploying.

Exit status: 0 success; 1 the check or the run failed (a file that is not a
valid rule file for `rules check`, or a set with no rule at all; a demo that
could not finish); 2 a usage error (bad arguments or flags that would change
nothing, a path that names no file: missing, empty, not a regular file, a
directory without rule files; unusable rules given to backtest, or input it
cannot replay: empty, or not JSON Lines). User errors
are one line on stderr, never a traceback. rich (the `local` extra) is
imported only where used; without it the output is plain text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from telemetry.core.rules import (
    RuleFileError,
    RulePathError,
    RuleSet,
    load_rules,
    parse_duration_ms,
    rule_files,
)
from telemetry.terminal import Screen, one_line, plural

if TYPE_CHECKING:
    from telemetry import backtest
    from telemetry.core.alerts import Transition

PROG = "telemetry"
USAGE_ERROR = 2
FAILED = 1
DEMO_BATCH_SIZE = 500


class UserError(Exception):
    """Something the user can fix; shown as one line, with `exit_code`."""

    def __init__(self, message: str, exit_code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- argument types ---------------------------------------------------------


def _endpoint_url(text: str) -> str:
    from urllib.parse import urlsplit  # noqa: PLC0415

    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s) URL")
    return text


def _store_url(text: str) -> str:
    """`--influxdb-url` of the backtest: as the function's INFLUXDB_URL, without
    credentials or a query string (refused without repeating the URL)."""
    from telemetry.local.store_access import influxdb_url  # noqa: PLC0415

    try:
        return influxdb_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _path(text: str) -> Path:
    """A path the user named; an empty one would silently mean the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names no file")
    return Path(text)


def _int_between(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def _duration_ms(low_ms: int, high_ms: int) -> Any:
    def parse(text: str) -> int:
        stripped = text.strip()
        try:
            ms = int(stripped) * 1000 if stripped.isdigit() else parse_duration_ms(stripped)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration such as 600 (seconds), 90s, 10m or 1h"
            ) from None
        if not low_ms <= ms <= high_ms:
            raise argparse.ArgumentTypeError(
                f"{text!r} is outside {low_ms // 1000}s..{high_ms // 3_600_000}h"
            )
        return ms

    return parse


@dataclass(frozen=True)
class Moment:
    """A time named on the command line: `ago_ms` before now, or at `at_ms`."""

    ago_ms: int | None = None
    at_ms: int | None = None

    def ms(self, now_ms: int) -> int:
        return self.at_ms if self.at_ms is not None else now_ms - (self.ago_ms or 0)


def _moment(text: str) -> Moment:
    from telemetry.core.messages import parse_time_ms  # noqa: PLC0415

    stripped = text.strip()
    try:
        return Moment(ago_ms=parse_duration_ms(stripped))
    except ValueError:
        pass
    try:
        return Moment(at_ms=parse_time_ms(stripped))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a time ago such as 30d, 12h or 90m nor an ISO-8601 time"
        ) from None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with `only` ("backtest"), that command alone, as
    a run of it needs (the other commands' modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Telemetry and threshold alerting for AWS IoT: local demo and rule tools.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if only == "backtest":
        _add_backtest_command(commands)
        return parser

    demo = commands.add_parser(
        "demo",
        help="run a simulated fleet through the function against a local AWS",
        description="Start a local AWS (moto) on 127.0.0.1, create the stack's resources, "
        "run a simulated fleet through the real handler, and summarise what happened.",
    )
    demo.add_argument(
        "--devices",
        type=_int_between(1, 10_000),
        default=20,
        metavar="N",
        help="devices in the fleet (default 20)",
    )
    demo.add_argument(
        "--sensors",
        type=_int_between(1, 24),
        default=3,
        metavar="N",
        help="sensors per device (default 3)",
    )
    demo.add_argument(
        "--duration",
        type=_duration_ms(1_000, 86_400_000),
        default=600_000,
        metavar="TIME",
        help="simulated time: seconds, or 90s, 10m, 1h (default 10m)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=7,
        metavar="N",
        help="random seed: the same seed gives the same fleet (default 7)",
    )
    demo.add_argument(
        "--ingest",
        choices=("direct", "stream"),
        default="direct",
        help="direct: one invocation per message (the rule's Lambda action); stream: "
        "Kinesis batches, as IngestMode=Stream deploys (default direct)",
    )
    demo.add_argument(
        "--batch-size",
        type=_int_between(1, 10_000),
        metavar="N",
        help=f"records per Kinesis batch with --ingest stream (default {DEMO_BATCH_SIZE})",
    )
    demo.add_argument(
        "--endpoint-url",
        type=_endpoint_url,
        metavar="URL",
        help="use an already running local AWS instead of starting one",
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="after the summary, leave the local AWS up (until Ctrl-C) and print the "
        "`telemetry alerts` commands that act on the run's stack",
    )
    _add_mqtt_arguments(demo, flag=True)
    demo.add_argument(
        "--store",
        choices=("timestream", "influxdb"),
        default=None,
        help="where readings and alert history go: timestream (default, the local AWS) or "
        "influxdb (a local influxd started for the run, or --influxdb-url)",
    )
    demo.add_argument(
        "--influxdb-url",
        type=_endpoint_url,
        metavar="URL",
        help="an InfluxDB already running, instead of starting influxd (implies --store "
        "influxdb; its token, if it needs one, from the INFLUXDB_TOKEN variable)",
    )
    demo.add_argument(
        "--influxdb-api",
        choices=("v1", "v2", "v3"),
        help="the write endpoint of --influxdb-url: v1 (/write, default), v2, v3",
    )
    demo.add_argument(
        "--influxdb-database",
        metavar="NAME",
        help="database (v1, v3) or bucket (v2) with --store influxdb (default telemetry)",
    )
    demo.set_defaults(run=_run_demo)
    _add_devices_command(commands)

    _add_backtest_command(commands)

    rules = commands.add_parser("rules", help="check rule files, print their JSON Schema")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    check = rule_commands.add_parser(
        "check",
        help="validate rule files",
        description="Check rule files as the function loads them, reporting every problem. "
        "Several paths are checked as one set of rules (names unique across them). "
        "Exit status: 0 valid; 1 a file is not a valid rule file; 2 a path names no file "
        "to check (missing, not a regular file, a directory without *.yaml).",
    )
    check.add_argument(
        "paths", type=_path, nargs="+", metavar="PATH", help="rule files or directories"
    )
    check.set_defaults(run=_run_rules_check)
    schema = rule_commands.add_parser("schema", help="print the rule file's JSON Schema")
    schema.add_argument(
        "--compact", action="store_true", help="on one line (the template's validator holds it)"
    )
    schema.set_defaults(run=_run_rules_schema)
    _add_rules_deploy_commands(rule_commands)
    _add_import_command(commands)
    return parser


def _add_backtest_command(commands: Any) -> None:
    backtest = commands.add_parser(
        "backtest",
        help="replay recorded messages through rules, without AWS",
        description="Replay recorded messages (JSON Lines: one message per line, as devices "
        "send it, with deviceId, timestamp and data) through the rules and print the alert "
        "transitions they would have fired, in event-time order, then a summary per rule.",
    )
    backtest.add_argument(
        "--rules",
        type=_path,
        required=True,
        metavar="PATH",
        help="a rule file or a directory of *.yaml",
    )
    backtest.add_argument(
        "--format",
        choices=("table", "jsonl", "json"),
        default="table",
        help="table (default); jsonl: one alert per line as SNS sends it, the summary on "
        "stderr; json: one document with the transitions, the per-rule summary and the "
        "alarm load",
    )
    backtest.add_argument(
        "--flap-window",
        type=_duration_ms(1_000, 604_800_000),
        default=300_000,
        metavar="TIME",
        help="an episode raised again within this long after the previous one resolved "
        "counts as a flap (default 5m)",
    )
    backtest.add_argument(
        "--order",
        choices=("event", "arrival"),
        default="event",
        help="event: every device's readings in time order (default); "
        "arrival: lines in file order, one invocation each, as the "
        "function would see them (late readings change nothing)",
    )
    backtest.add_argument(
        "--reorder-window",
        type=_int_between(1, 100_000_000),
        default=50_000,
        metavar="READINGS",
        help="how many readings wait to be put in event-time order (default 50000): a "
        "reading whose time the replay has already passed is evaluated when it comes and "
        "reported with its line. Memory grows with it (about 150 bytes a reading)",
    )
    backtest.add_argument(
        "--rejections",
        type=_path,
        metavar="FILE",
        help="write every rejected line (not JSON, a message validation refused, each "
        "reading refused in a valid message) to FILE as JSON lines, with its file, line "
        "number and reason",
    )
    backtest.add_argument(
        "--warnings",
        type=_path,
        metavar="FILE",
        help="write every timestamp that looks like epoch seconds (stderr shows the first "
        "20 lines) to FILE as JSON lines, with its file and line number; the same FILE "
        "as --rejections holds both",
    )
    _add_store_arguments(backtest)
    backtest.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="JSON-lines files; - is stdin (none with --from influxdb or timestream)",
    )
    backtest.set_defaults(run=_run_backtest)


def _add_import_command(commands: Any) -> None:
    from telemetry.local import import_cli  # noqa: PLC0415

    import_cli.add_arguments(commands, _path).set_defaults(run=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from telemetry.local import import_cli  # noqa: PLC0415

    try:
        return import_cli.run(args, sys.stderr)
    except import_cli.ImportCommandError as exc:
        raise UserError(str(exc), exit_code=exc.exit_code) from None


def _add_rules_deploy_commands(rule_commands: Any) -> None:
    from telemetry.local.rules_deploy import add_where  # noqa: PLC0415

    deploy = rule_commands.add_parser(
        "deploy",
        help="check rule files and deploy them to AWS AppConfig, without a stack deploy",
        description="Check the files as `rules check` does, upload them as one JSON rule file "
        "(a new hosted configuration version of the profile) and start its deployment to the "
        "environment. The function puts it in force within RulesPollSeconds once it passes its "
        "own check; a version it rejects is counted (RulesRejected), which rolls the "
        "deployment back. Exit status: 0 deployment started; 1 invalid rules or AppConfig "
        "refused; 2 a usage error or a path that names no file.",
    )
    deploy.add_argument(
        "paths", type=_path, nargs="+", metavar="PATH", help="rule files or directories"
    )
    add_where(deploy, _endpoint_url)
    deploy.add_argument(
        "--strategy",
        metavar="ID",
        help="deployment strategy (default: the stack's, RulesDeploymentStrategyId)",
    )
    deploy.add_argument("--description", help="said with the version and the deployment")
    deploy.set_defaults(run=_run_rules_deploy)
    status = rule_commands.add_parser(
        "status",
        help="the rules version in force in AppConfig, and what is deploying",
        description="The version of the rules in force (the latest completed deployment of the "
        "profile to the environment), the deployments in progress, and versions rolled back "
        "since. Exit status: 0 shown; 1 AppConfig failed; 2 a usage error.",
    )
    add_where(status, _endpoint_url)
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(run=_run_rules_status)


def _add_store_arguments(backtest: argparse.ArgumentParser) -> None:
    store = backtest.add_argument_group(
        "replaying from the store (--from influxdb, --from timestream)",
        "the readings the function wrote to InfluxDB (read back through InfluxQL in chunks) "
        "or to Timestream for LiveAnalytics (its query API, page by page)",
    )
    store.add_argument(
        "--from",
        dest="source",
        choices=("files", "influxdb", "timestream"),
        default="files",
        help="files: the FILEs (default); influxdb: readings in an InfluxDB, by time; "
        "timestream: readings in a Timestream for LiveAnalytics table (AWS credentials "
        "as the SDK finds them, the region AWS_REGION or the SDK's)",
    )
    store.add_argument("--influxdb-url", type=_store_url, metavar="URL", help="its URL")
    store.add_argument(
        "--database", metavar="DB", help="the database (InfluxDB: a bucket's DBRP name)"
    )
    store.add_argument(
        "--influxdb-database",
        metavar="DB",
        help="--database with --from influxdb, as `demo` names it (both: the same DB)",
    )
    store.add_argument("--table", metavar="TABLE", help="the Timestream table")
    store.add_argument(
        "--since",
        type=_moment,
        metavar="WHEN",
        help="from a time ago (30d, 12h, 90m) or an ISO-8601 time (2025-11-27T10:00:00Z)",
    )
    store.add_argument(
        "--until", type=_moment, metavar="WHEN", help="to a time ago or an ISO-8601 time (now)"
    )
    store.add_argument(
        "--device", metavar="GLOB", help="only devices whose deviceId matches (a rule's glob)"
    )
    store.add_argument(
        "--influxdb-token",
        metavar="TOKEN",
        help="its token, if it needs one (default: the INFLUXDB_TOKEN variable, else the "
        "secret INFLUXDB_TOKEN_SECRET_ARN names, as the function; prefer those: a flag is "
        "visible to other users in ps and stays in shell history)",
    )


def _add_mqtt_arguments(parser: argparse.ArgumentParser, *, flag: bool) -> None:
    if flag:
        parser.add_argument(
            "--mqtt",
            action="store_true",
            help="devices publish over MQTT to a local broker enforcing the template's device "
            "policy; the template's rule invokes the function (docs/devices.md)",
        )
    parser.add_argument(
        "--basic-ingest",
        action="store_true",
        help="devices publish to the rule's Basic Ingest topic, as BasicIngest=Enabled deploys"
        + ("" if not flag else " (with --mqtt)"),
    )


def _add_devices_command(commands: Any) -> None:
    from telemetry.local.device_cli import add_arguments  # noqa: PLC0415

    alerts = commands.add_parser(
        "alerts",
        help="list the active alerts; acknowledge, snooze, disable, enable or reset one",
        description="The operators' tools: the alerts active now, and actions on them "
        "through the stack's actions function (docs/operators.md).",
    )
    from telemetry.local import alerts_cli  # noqa: PLC0415 - the local extra's module

    alerts_cli.add_arguments(alerts, _endpoint_url)
    alerts.set_defaults(run=_run_alerts)

    devices = commands.add_parser(
        "devices",
        help="simulated devices over MQTT: broker, device policy and topic rule, locally",
        description="Start a local AWS and an MQTT broker that enforces the template's device "
        "policy, connect one MQTT client per simulated device, and publish the fleet's "
        "telemetry in (scaled) real time through the template's topic rule to the function; "
        "print what the devices see mirrored back in their shadows.",
    )
    add_arguments(devices, _int_between, _duration_ms, _endpoint_url)
    _add_mqtt_arguments(devices, flag=False)
    devices.set_defaults(run=_run_devices)


def _run_alerts(args: argparse.Namespace) -> int:
    from telemetry.local import alerts_cli  # noqa: PLC0415

    try:
        return alerts_cli.run(args, Screen(sys.stdout))
    except alerts_cli.AlertsError as exc:
        raise UserError(str(exc), exit_code=exc.exit_code) from None


def _run_devices(args: argparse.Namespace) -> int:
    from telemetry.local import device_cli  # noqa: PLC0415

    try:
        device_cli.run(args, Screen(sys.stdout), Screen(sys.stderr))
    except device_cli.DevicesError as exc:
        raise UserError(str(exc), exit_code=FAILED) from None
    return 0


class _VersionAction(argparse.Action):
    """`--version`: the installed version, looked up (importlib.metadata) only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **_: Any) -> None:
        shown = "show program's version number and exit"
        super().__init__(option_strings, dest, nargs=0, help=shown)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        sys.stdout.write(f"{parser.prog} {_version()}\n")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("iot-telemetry-processor")
    except PackageNotFoundError:
        return "unknown"


# --- commands ---------------------------------------------------------------


def _run_rules_check(args: argparse.Namespace) -> int:
    return _checked_rules(args.paths)[1]


def _checked_rules(paths: list[Path]) -> tuple[RuleSet | None, int]:
    """`rules check` of `paths`: their rules and 0 when they pass (said on stdout),
    else None and the exit status (every problem on stderr)."""
    try:
        rules = load_rules(paths)
    except RuleFileError as exc:
        unusable = exc.unusable if isinstance(exc, RulePathError) else []
        for problem in exc.problems:
            lead = f"{PROG}: error: " if problem in unusable else ""
            sys.stderr.write(lead + one_line(problem) + "\n")
        return None, USAGE_ERROR if unusable else FAILED
    files = len({f for p in paths for f in rule_files(p)})
    where = paths[0] if len(paths) == 1 else f"{len(paths)} paths"
    if not rules.rules:
        sys.stderr.write(f"{PROG}: error: {where}: {_no_rules(files)}\n")
        return None, FAILED
    from telemetry.core.maintenance import window_problems  # noqa: PLC0415

    now_ms = time.time_ns() // 1_000_000
    past = [
        f"{where}: maintenance {w.name!r}: {p}"
        for w in rules.maintenance.windows
        for p in window_problems(w, now_ms)
    ]
    if past:
        sys.stderr.write("".join(one_line(p) + "\n" for p in past))
        return None, FAILED
    sys.stdout.write(f"{where}: OK, {plural(len(rules), 'rule')} in {plural(files, 'file')}\n")
    return rules, 0


def _no_rules(files: int) -> str:
    """Why a set of rule files alerts on nothing, in the words of the file."""
    inside = "the file defines" if files == 1 else f"the {files} files define"
    return (
        f"no rules: {inside} none under `rules:` (empty, an empty list, or only "
        "gateways or notifications), so nothing would ever alert"
    )


def _run_rules_schema(args: argparse.Namespace) -> int:
    from telemetry.core.rules import rule_file_schema  # noqa: PLC0415

    if args.compact:
        text = json.dumps(rule_file_schema(), separators=(",", ":"), sort_keys=True)
    else:
        text = json.dumps(rule_file_schema(), indent=2)
    sys.stdout.write(text + "\n")
    return 0


def _run_rules_deploy(args: argparse.Namespace) -> int:
    from telemetry.local import rules_deploy  # noqa: PLC0415

    checked, status = _checked_rules(args.paths)
    if checked is None:
        return status
    try:
        content = rules_deploy.document(args.paths, checked)
        started = rules_deploy.deploy(args, content)
    except rules_deploy.RulesDeployError as exc:
        raise UserError(str(exc), exit_code=exc.exit_code) from None
    sys.stdout.write(
        f"deploying version {started['version']} of profile {args.profile} to environment "
        f"{args.environment} (deployment {started['deployment']}, strategy "
        f"{started['strategy']}): see `telemetry rules status`\n"
    )
    return 0


def _run_rules_status(args: argparse.Namespace) -> int:
    from telemetry.local import rules_deploy  # noqa: PLC0415

    try:
        found = rules_deploy.status(args)
    except rules_deploy.RulesDeployError as exc:
        raise UserError(str(exc), exit_code=exc.exit_code) from None
    if args.format == "json":
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
    else:
        sys.stdout.write("".join(line + "\n" for line in rules_deploy.status_lines(found)))
    return 0


def load_rules_or_fail(path: Path) -> RuleSet:
    """The rules at `path`, or a one-line UserError pointing at `rules check`."""
    return _rules_or_fail(load_rules, path)


def _rules_or_fail(load: Callable[[Path], RuleSet], path: Path) -> RuleSet:
    try:
        return load(path)
    except RulePathError as exc:
        raise UserError(one_line(exc.problems[0])) from None
    except RuleFileError as exc:
        more = len(exc.problems) - 1
        tail = f" (and {more} more; see: telemetry rules check {path})" if more > 0 else ""
        raise UserError(f"invalid rules: {one_line(exc.problems[0])}{tail}") from None


def _rules_cache() -> Path:
    """Where backtests keep compiled rule sets: `$XDG_CACHE_HOME/telemetry/rules`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "telemetry" / "rules"


def load_rules_cached(path: Path) -> RuleSet:
    """`load_rules_or_fail`, remembering the compiled set in the user's cache
    (`_rules_cache`), keyed by the digest of the rule files' names and bytes as
    the function's compiled file is: a replay of unchanged rules reads the compiled
    set instead of parsing YAML through the rule files' schema (pydantic), and
    gets the same rules. An entry that is stale or altered is not used; a cache
    that cannot be read or written is passed by.

    The files are hashed once: that digest finds the entry, and `load_rules`
    takes it (for the function's compiled file beside the rules, and as the
    set's version). Files changed while they were read (their size, time or
    inode) are loaded again by `load_rules_or_fail`, and nothing is cached."""
    from telemetry.core.rules import compiled_rules_text, sources_digest  # noqa: PLC0415

    try:
        files = rule_files(path)
        stamps = _stamps(files)
        digest = sources_digest(files)
    except (OSError, RuleFileError, RulePathError):
        return load_rules_or_fail(path)
    entry = _rules_cache() / f"{digest}.json"
    rules = _compiled_at(entry, digest)
    if rules is not None:
        rules.version = f"sha256:{digest}"
        return rules
    rules = _rules_or_fail(lambda rules_path: load_rules(rules_path, digest=digest), path)
    try:
        unchanged = _stamps(files) == stamps
    except OSError:
        unchanged = False
    if not unchanged:
        return load_rules_or_fail(path)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        scratch = entry.with_name(f"{entry.name}.{os.getpid()}")
        scratch.write_text(compiled_rules_text(rules, digest), encoding="utf-8")
        scratch.replace(entry)
    except (OSError, ValueError):
        pass
    return rules


def _stamps(files: Sequence[Path]) -> list[tuple[int, int, int]]:
    """What tells a file changed without reading it: inode, size, modification time."""
    return [(s.st_ino, s.st_size, s.st_mtime_ns) for s in (f.stat() for f in files)]


def _compiled_at(file: Path, digest: str) -> RuleSet | None:
    """The compiled set `file` holds when it stands for rule files of `digest`."""
    from telemetry.core.rules import compiled_rule_set  # noqa: PLC0415

    try:
        return compiled_rule_set(file.read_text(encoding="utf-8"), digest)
    except (OSError, UnicodeDecodeError):
        return None


def _run_backtest(args: argparse.Namespace) -> int:
    from telemetry import backtest  # noqa: PLC0415

    _refuse_ignored_backtest_flags(args)
    rules = load_rules_cached(args.rules)
    output = _BacktestOutput(args, rules)
    if args.source == "timestream":
        result = _replay_timestream(args, rules, output)
        if result.messages == 0:
            raise UserError(f"no reading to replay: {result.store}")
        output.finish(result)
        return 0
    if args.source == "influxdb":
        result = _replay_influxdb(args, rules, output)
        if result.messages == 0:
            raise UserError(f"no reading to replay: {result.store}")
        output.finish(result)
        return 0
    try:
        backtest.check_readable(args.files)
    except backtest.InputError as exc:
        raise UserError(str(exc)) from None
    shared = args.warnings is not None and args.warnings == args.rejections
    with (
        _rejections_file(args.rejections, args.files) as rejections,
        _rejections_file(None if shared else args.warnings, args.files, "--warnings") as warned,
    ):
        try:
            result = backtest.run(
                args.files,
                rules,
                order=args.order,
                stdin=sys.stdin.buffer,
                on_bad_line=backtest.BadLineReporter(sys.stderr),
                on_rejected=backtest.RejectionWriter(rejections)
                if rejections is not None
                else None,
                on_seconds=_seconds_warnings(args, rejections if shared else warned),
                window=args.reorder_window,
                emit=output.add,
                on_out_of_window=backtest.OutOfWindowReporter(sys.stderr),
            )
        except backtest.InputError as exc:
            raise UserError(str(exc)) from None
    if result.messages == 0 and not result.bad_lines:
        files = ", ".join("<stdin>" if f == "-" else f for f in args.files)
        raise UserError(f"no message to replay: {files}: empty, or only blank lines")
    output.finish(result)
    if result.messages == 0 and result.bad_lines:
        raise UserError("no usable message in the input", exit_code=FAILED)
    return 0


class _BacktestOutput:
    """Where the backtest's transitions go as they are decided: written at once
    (jsonl, json), or kept for the table (every one, printed at the end); the
    per-rule summary and the alarm load counted on the way."""

    def __init__(self, args: argparse.Namespace, rules: RuleSet) -> None:
        from telemetry import backtest  # noqa: PLC0415
        from telemetry.core.load import LoadMeter  # noqa: PLC0415

        self.args = args
        self.summarizer = backtest.Summarizer(rules, flap_window_ms=args.flap_window)
        self.line = backtest.jsonl_line
        self.load = LoadMeter(rules.notifications)
        self.kept: list[Transition] = []
        self.document = (
            backtest.JsonDocument(sys.stdout, rules.version) if args.format == "json" else None
        )

    def add(self, transition: Transition) -> None:
        self.summarizer.add(transition)
        self.load.add(transition)
        if self.document is not None:
            self.document.add(transition)
        elif self.args.format == "jsonl":
            sys.stdout.write(self.line(transition))
        else:
            self.kept.append(transition)

    def finish(self, result: backtest.Result) -> None:
        from telemetry import backtest  # noqa: PLC0415

        args = self.args
        summaries = self.summarizer.finish(result.last_ms or 0)
        load = self.load.finish(result.first_ms, result.last_ms)
        if self.document is not None:
            self.document.finish(result, summaries, load)
        elif args.format == "jsonl":
            screen = Screen(sys.stderr, plain=True)
            backtest.render_summary(result, summaries, screen, args)
            backtest.render_load(load, screen)
        else:
            screen = Screen(sys.stdout)
            backtest.render_transitions(self.kept, screen)
            backtest.render_summary(result, summaries, screen, args)
            backtest.render_load(load, screen)


_BOTH = ("influxdb", "timestream")
_FLAG_STORES: dict[str, tuple[str, ...]] = {
    "influxdb_url": ("influxdb",),
    "database": _BOTH,
    "since": _BOTH,
    "until": _BOTH,
    "device": _BOTH,
    "influxdb_token": ("influxdb",),
    "influxdb_database": ("influxdb",),
    "table": ("timestream",),
}
"""Which stores each store flag goes with."""
_NEEDED: dict[str, tuple[str, ...]] = {
    "influxdb": ("influxdb_url", "database", "since"),
    "timestream": ("database", "table", "since"),
}


def _refuse_ignored_backtest_flags(args: argparse.Namespace) -> None:
    """Files or a store, never a flag of another."""
    if args.source != "files" and args.files:
        raise UserError(
            f"--from {args.source} reads the store: no FILE to give (got {' '.join(args.files)})"
        )
    for name, stores in _FLAG_STORES.items():
        if args.source not in stores and getattr(args, name) is not None:
            wanted = " or ".join(f"--from {store}" for store in stores)
            raise UserError(f"--{name.replace('_', '-')} goes with {wanted}")
    if args.source == "files":
        return
    _one_database(args)
    missing = [f"--{n.replace('_', '-')}" for n in _NEEDED[args.source]]
    missing = [flag for flag in missing if getattr(args, flag[2:].replace("-", "_")) is None]
    if missing:
        raise UserError(f"--from {args.source} needs {', '.join(missing)}")
    if args.rejections is not None:
        raise UserError(
            "--rejections lists the lines of files; the store holds readings already accepted"
        )
    if args.warnings is not None:
        raise UserError("--warnings lists the lines of files; the store holds no line")


def _one_database(args: argparse.Namespace) -> None:
    """`--influxdb-database` is `--database`: both spellings may name it, not two."""
    alias = args.influxdb_database
    if alias is None:
        return
    if args.database is not None and args.database != alias:
        raise UserError(
            f"--database {args.database} and --influxdb-database {alias} name two databases: "
            "give one"
        )
    args.database = alias


def _store_span(args: argparse.Namespace) -> tuple[int, int]:
    """`--since` and `--until` (default now) as epoch ms, the second later."""
    now_ms = time.time_ns() // 1_000_000
    since_ms = args.since.ms(now_ms)
    until_ms = args.until.ms(now_ms) if args.until is not None else now_ms
    if until_ms <= since_ms:
        raise UserError("--until must be later than --since")
    return since_ms, until_ms


def _replay_store(
    messages: Iterable[Any],
    where: str,
    args: argparse.Namespace,
    rules: RuleSet,
    output: _BacktestOutput,
) -> backtest.Result:
    """Replay readings read back from a store, streaming, as from files."""
    from telemetry import backtest  # noqa: PLC0415

    return backtest.replay(
        messages,
        rules,
        order=args.order,
        result=backtest.Result(store=where),
        window=args.reorder_window,
        emit=output.add,
        on_out_of_window=backtest.OutOfWindowReporter(sys.stderr),
    )


def _replay_timestream(
    args: argparse.Namespace, rules: RuleSet, output: _BacktestOutput
) -> backtest.Result:
    from botocore.exceptions import BotoCoreError  # noqa: PLC0415

    from telemetry.adapters.aws import make_client  # noqa: PLC0415
    from telemetry.core.messages import iso_utc  # noqa: PLC0415
    from telemetry.local import store_access, timestream_history  # noqa: PLC0415

    since_ms, until_ms = _store_span(args)
    history = timestream_history.TimestreamHistory(
        database=args.database,
        table=args.table,
        since_ms=since_ms,
        until_ms=until_ms,
        device=args.device,
    )
    devices = f", devices {args.device}" if args.device else ""
    where = (
        f"Timestream {args.database}.{args.table}{devices}, "
        f"{iso_utc(since_ms)} to {iso_utc(until_ms)}"
    )
    try:
        options = store_access.timestream_client_options(os.environ)
        client = make_client(
            "timestream-query",
            endpoint_url=options.get("endpoint_url"),
            region=options.get("region_name"),
            read_timeout=timestream_history.QUERY_READ_TIMEOUT_S,
        )
        return _replay_store(
            timestream_history.messages(history, client), where, args, rules, output
        )
    except timestream_history.TimestreamHistoryError as exc:
        raise UserError(str(exc), exit_code=FAILED) from None
    except BotoCoreError as exc:  # no region, no credentials
        raise UserError(f"cannot use Timestream: {exc}", exit_code=FAILED) from None


def _replay_influxdb(
    args: argparse.Namespace, rules: RuleSet, output: _BacktestOutput
) -> backtest.Result:
    from telemetry.adapters.aws import make_client  # noqa: PLC0415
    from telemetry.core.messages import iso_utc  # noqa: PLC0415
    from telemetry.local import influx_history, store_access  # noqa: PLC0415

    since_ms, until_ms = _store_span(args)
    try:
        token = store_access.influxdb_token(
            args.influxdb_token,
            os.environ,
            lambda region: make_client("secretsmanager", region=region),
        )
    except store_access.StoreAccessError as exc:
        raise UserError(str(exc), exit_code=FAILED) from None
    query = influx_history.HistoryQuery(
        url=args.influxdb_url,
        database=args.database,
        since_ms=since_ms,
        until_ms=until_ms,
        device=args.device,
        token=token,
    )
    devices = f", devices {args.device}" if args.device else ""
    where = (
        f"InfluxDB {args.influxdb_url} database {args.database}{devices}, "
        f"{iso_utc(since_ms)} to {iso_utc(until_ms)}"
    )
    try:
        return _replay_store(influx_history.messages(query), where, args, rules, output)
    except influx_history.StoreError as exc:
        raise UserError(str(exc), exit_code=FAILED) from None


def _seconds_warnings(
    args: argparse.Namespace, stream: TextIO | None
) -> Callable[[backtest.SecondsWarning], None]:
    """The first lines with epoch-seconds timestamps on stderr; with --warnings,
    every one in its file too."""
    from telemetry import backtest  # noqa: PLC0415

    if stream is None:
        return backtest.SecondsWarningReporter(sys.stderr)
    from telemetry.local.seconds_warnings import SecondsWarningWriter  # noqa: PLC0415

    shown = backtest.SecondsWarningReporter(sys.stderr, listed_in=str(args.warnings))
    written = SecondsWarningWriter(stream)

    def both(warning: backtest.SecondsWarning) -> None:
        shown(warning)
        written(warning)

    return both


@contextmanager
def _rejections_file(
    path: Path | None, inputs: Sequence[str], flag: str = "--rejections"
) -> Iterator[TextIO | None]:
    """The file `--rejections` (or `flag`) names, open for writing (None without
    the flag). Refused before anything is read when it is an input, or cannot be
    written."""
    if path is None:
        yield None
        return
    if str(path) == "-":
        raise UserError(f"{flag} takes a file: stdout is the replay's own output")
    for source in inputs:
        if source != "-" and path.exists() and Path(source).exists() and path.samefile(source):
            raise UserError(f"{flag} {path} is an input file: writing it would erase it")
    try:
        stream = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write: {exc.strerror or exc}") from None
    with stream:
        yield stream


def _run_demo(args: argparse.Namespace) -> int:
    from telemetry.local import demo  # noqa: PLC0415

    store = args.store or ("influxdb" if args.influxdb_url else "timestream")
    _refuse_ignored_demo_flags(args, store)
    options = demo.DemoOptions(
        devices=args.devices,
        sensors=args.sensors,
        duration_ms=args.duration,
        seed=args.seed,
        endpoint_url=args.endpoint_url,
        ingest=args.ingest,
        batch_size=args.batch_size or DEMO_BATCH_SIZE,
        mqtt=args.mqtt,
        basic_ingest=args.basic_ingest,
        store=store,
        influxdb_url=args.influxdb_url,
        influxdb_api=args.influxdb_api or "v1",
        influxdb_database=args.influxdb_database or "telemetry",
        influxdb_token=os.environ.get("INFLUXDB_TOKEN") or None,
        keep=args.keep,
    )
    try:
        demo.run(options, Screen(sys.stdout), Screen(sys.stderr))
    except demo.DemoError as exc:
        raise UserError(str(exc), exit_code=FAILED) from None
    return 0


def _refuse_ignored_demo_flags(args: argparse.Namespace, store: str) -> None:
    """A flag that would change nothing in this run is a mistake: say so, run nothing."""
    if store == "timestream" and args.influxdb_url:
        raise UserError("--influxdb-url goes with --store influxdb")
    if args.influxdb_api and not args.influxdb_url:
        raise UserError(
            "--influxdb-api chooses the write endpoint of --influxdb-url; without it the "
            "demo starts its own influxd, which takes v1"
        )
    if args.influxdb_database and store != "influxdb":
        raise UserError("--influxdb-database goes with --store influxdb (or --influxdb-url)")
    if args.batch_size is not None and args.ingest != "stream":
        raise UserError(
            "--batch-size is the Kinesis batch of --ingest stream; with --ingest direct "
            "each message is its own invocation"
        )
    if args.basic_ingest and not args.mqtt:
        raise UserError("--basic-ingest needs --mqtt (it is the topic devices publish to)")


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The (sub)command's own parser, as chosen by `args`."""
    while True:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subparsers[0].dest, None) if subparsers else None
        if chosen is None:
            return parser
        parser = subparsers[0].choices[chosen]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse as argparse does, but a flag the (sub)command does not take is
    reported by that command, with its usage and the flag it may have meant."""
    words = sys.argv[1:] if argv is None else list(argv)
    # A backtest builds its own parser alone: the other commands' modules cost it time.
    parser = build_parser("backtest" if words[:1] == ["backtest"] else None)
    args, unknown = parser.parse_known_args(words)
    backtest_without_input = (
        getattr(args, "command", None) == "backtest" and args.source == "files" and not args.files
    )
    if backtest_without_input and not unknown:
        _chosen_parser(parser, args).error("the following arguments are required: FILE")
    if unknown:
        from difflib import get_close_matches  # noqa: PLC0415

        command = _chosen_parser(parser, args)
        flags = [s for a in command._actions for s in a.option_strings]
        hint = ""
        for word in unknown:
            close = get_close_matches(word.split("=", 1)[0], flags, n=1) if word[:2] == "--" else []
            if close:
                hint = f" (did you mean {close[0]}?)"
                break
        command.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parse(argv)
    try:
        return int(args.run(args))
    except UserError as exc:
        sys.stderr.write(f"{PROG}: error: {one_line(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return FAILED
