"""The `telemetry` command: the local demo and the operators' tools.

- `telemetry demo`: the whole product on a laptop (local AWS, simulated fleet);
  `--store influxdb` writes the time series to a local influxd instead.
- `telemetry backtest --rules PATH FILE...`: replay recorded messages through
  rules, without AWS, to tune them before deploying.
- `telemetry rules check PATH` / `telemetry rules schema`.

Exit status: 0 success; 1 the check or the run failed (invalid rules for
`rules check`, a demo that could not finish); 2 a usage error (bad arguments,
missing or unreadable files, unusable rules given to backtest). User errors
are one line on stderr, never a traceback. rich (the `local` extra) is
imported only where used; without it the output is plain text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from telemetry.core.rules import (
    RuleFileError,
    RuleSet,
    load_rules,
    parse_duration_ms,
    rule_files,
)
from telemetry.terminal import Screen, one_line

PROG = "telemetry"
USAGE_ERROR = 2
FAILED = 1


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Telemetry and threshold alerting for AWS IoT: local demo and rule tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
        default=500,
        metavar="N",
        help="records per Kinesis batch with --ingest stream (default 500)",
    )
    demo.add_argument(
        "--endpoint-url",
        type=_endpoint_url,
        metavar="URL",
        help="use an already running local AWS instead of starting one",
    )
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
        default="v1",
        help="the write endpoint of --influxdb-url: v1 (/write, default), v2, v3",
    )
    demo.add_argument(
        "--influxdb-database",
        default="telemetry",
        metavar="NAME",
        help="database (v1, v3) or bucket (v2) (default telemetry)",
    )
    demo.set_defaults(run=_run_demo)

    backtest = commands.add_parser(
        "backtest",
        help="replay recorded messages through rules, without AWS",
        description="Replay JSON-lines messages (one seed-format message per line) through "
        "the rules and print the alert transitions they would have fired, in event-time "
        "order, then a summary per rule.",
    )
    backtest.add_argument(
        "--rules",
        type=Path,
        required=True,
        metavar="PATH",
        help="a rule file or a directory of *.yaml",
    )
    backtest.add_argument(
        "--format",
        choices=("table", "jsonl"),
        default="table",
        help="table (default), or jsonl: one alert per line as SNS sends it, the summary on stderr",
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
    backtest.add_argument("files", nargs="+", metavar="FILE", help="JSON-lines files; - is stdin")
    backtest.set_defaults(run=_run_backtest)

    rules = commands.add_parser("rules", help="check rule files, print their JSON Schema")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    check = rule_commands.add_parser("check", help="validate rule files")
    check.add_argument("path", type=Path, metavar="PATH", help="a rule file or a directory")
    check.set_defaults(run=_run_rules_check)
    schema = rule_commands.add_parser("schema", help="print the rule file's JSON Schema")
    schema.set_defaults(run=_run_rules_schema)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("iot-telemetry-processor")
    except PackageNotFoundError:
        return "unknown"


# --- commands ---------------------------------------------------------------


def _run_rules_check(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.exists():
        raise UserError(f"{path}: no such rule file or directory")
    try:
        rules = load_rules(path)
    except RuleFileError as exc:
        for problem in exc.problems:
            sys.stderr.write(one_line(problem) + "\n")
        return FAILED
    files = len(rule_files(path))
    sys.stdout.write(f"{path}: OK, {len(rules)} rules in {files} file{'s' if files != 1 else ''}\n")
    return 0


def _run_rules_schema(args: argparse.Namespace) -> int:
    from telemetry.core.rules import rule_file_schema  # noqa: PLC0415

    sys.stdout.write(json.dumps(rule_file_schema(), indent=2) + "\n")
    return 0


def load_rules_or_fail(path: Path) -> RuleSet:
    """The rules at `path`, or a one-line UserError pointing at `rules check`."""
    if not path.exists():
        raise UserError(f"{path}: no such rule file or directory")
    try:
        return load_rules(path)
    except RuleFileError as exc:
        more = len(exc.problems) - 1
        tail = f" (and {more} more; see: telemetry rules check {path})" if more > 0 else ""
        raise UserError(f"invalid rules: {one_line(exc.problems[0])}{tail}") from None


def _run_backtest(args: argparse.Namespace) -> int:
    from telemetry import backtest  # noqa: PLC0415

    rules = load_rules_or_fail(args.rules)
    try:
        result = backtest.run(
            args.files,
            rules,
            order=args.order,
            stdin=sys.stdin.buffer,
            on_bad_line=backtest.BadLineReporter(sys.stderr),
        )
    except backtest.InputError as exc:
        raise UserError(str(exc)) from None
    summaries = backtest.summarize(result, rules, flap_window_ms=args.flap_window)
    if args.format == "jsonl":
        backtest.write_jsonl(result.transitions, sys.stdout)
        backtest.render_summary(result, summaries, Screen(sys.stderr, plain=True), args)
    else:
        screen = Screen(sys.stdout)
        backtest.render_transitions(result.transitions, screen)
        backtest.render_summary(result, summaries, screen, args)
    if result.messages == 0 and result.bad_lines:
        raise UserError("no usable message in the input", exit_code=FAILED)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from telemetry.local import demo  # noqa: PLC0415

    store = args.store or ("influxdb" if args.influxdb_url else "timestream")
    if store == "timestream" and args.influxdb_url:
        raise UserError("--influxdb-url goes with --store influxdb")
    options = demo.DemoOptions(
        devices=args.devices,
        sensors=args.sensors,
        duration_ms=args.duration,
        seed=args.seed,
        endpoint_url=args.endpoint_url,
        ingest=args.ingest,
        batch_size=args.batch_size,
        store=store,
        influxdb_url=args.influxdb_url,
        influxdb_api=args.influxdb_api,
        influxdb_database=args.influxdb_database,
        influxdb_token=os.environ.get("INFLUXDB_TOKEN") or None,
    )
    try:
        demo.run(options, Screen(sys.stdout), Screen(sys.stderr))
    except demo.DemoError as exc:
        raise UserError(str(exc), exit_code=FAILED) from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
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
