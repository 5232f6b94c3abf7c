"""`telemetry import iotevents FILE...`: AWS IoT Events models to a rules file.

Reads the JSON of `aws iotevents describe-alarm-model` / `describe-detector-model`
(`telemetry.importers.iotevents` converts it), writes the rules file (default
`rules/imported.yaml`, checked as `telemetry rules check` would) and the report:
on stderr, and as JSON with `--report FILE`.

Exit status: 0 every condition converted (advice alone does not change it); 1
something was left out (the rules file is still written); 2 unreadable input (a
file missing, not JSON, not a model) or a usage error, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Final, TextIO

from telemetry.core.rules import RuleFileError
from telemetry.importers import iotevents

DEFAULT_OUT: Final = Path("rules/imported.yaml")
UNREADABLE: Final = 2
INCOMPLETE: Final = 1


class ImportCommandError(RuntimeError):
    """The input cannot be read, or the command cannot run: one line, `exit_code`."""

    def __init__(self, message: str, exit_code: int = UNREADABLE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _mapping(text: str) -> iotevents.InputMapping:
    try:
        return iotevents.parse_mapping(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _severity(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: IoT Events severities are 0 or more")
    return value


def add_arguments(commands: Any, path_type: Any) -> argparse.ArgumentParser:
    """The `import` command and its `iotevents` subcommand, under `commands`."""
    command = commands.add_parser(
        "import",
        help="convert alarm and detector models of AWS IoT Events to rules",
        description="Convert other systems' alert definitions to a rules file.",
    )
    sources = command.add_subparsers(dest="import_source", required=True, metavar="SOURCE")
    parser: argparse.ArgumentParser = sources.add_parser(
        "iotevents",
        help="AWS IoT Events alarm and detector models (describe-*-model JSON)",
        description="Convert the JSON that `aws iotevents describe-alarm-model` and "
        "`describe-detector-model` print (one model per file or a JSON list; wrapped or "
        "bare) to a rules file, and report what converted, what did not and why, and what "
        "to do instead (docs/migrating-from-iot-events.md). Exit status: 0 every condition "
        "converted; 1 something was left out (the file is still written); 2 unreadable input.",
    )
    parser.add_argument("files", nargs="+", type=path_type, metavar="FILE", help="model JSON")
    parser.add_argument(
        "--out",
        type=path_type,
        default=DEFAULT_OUT,
        metavar="PATH",
        help=f"the rules file to write (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--report", type=path_type, metavar="FILE", help="also write the report as JSON to FILE"
    )
    parser.add_argument(
        "--critical-at",
        type=_severity,
        default=iotevents.DEFAULT_CRITICAL_AT,
        metavar="N",
        help="alarm severities at or below N are CRITICAL, the others WARNING (default "
        f"{iotevents.DEFAULT_CRITICAL_AT}: lower numbers are the more severe)",
    )
    parser.add_argument(
        "--map",
        dest="mappings",
        type=_mapping,
        action="append",
        default=[],
        metavar="PATH=type:VALUE",
        help="readings of the input attribute PATH (after $input.) are those of type VALUE "
        "(or PATH=sensorId:VALUE); repeatable. Default: the path's last segment as the type",
    )
    return parser


def run(args: argparse.Namespace, err: TextIO) -> int:
    """Convert, write the rules file and the report; the exit status."""
    files: list[Path] = args.files
    out: Path = args.out
    for source in files:
        if source.exists() and out.exists() and source.samefile(out):
            raise ImportCommandError(f"--out {out} is an input file: writing it would erase it")
    paths = [m.path for m in args.mappings]
    twice = next((p for p in paths if paths.count(p) > 1), None)
    if twice is not None:
        raise ImportCommandError(f"--map {twice}: given twice; one mapping per input attribute")
    options = iotevents.Options(critical_at=args.critical_at, mappings=tuple(args.mappings))
    try:
        result = iotevents.convert([(str(f), _read(f)) for f in files], options)
    except iotevents.ModelError as exc:
        raise ImportCommandError(str(exc)) from None
    unused = result.unused_mappings(options)
    if unused:
        raise ImportCommandError(
            f"--map {unused[0].path}: no converted condition reads $input.{unused[0].path}"
        )
    text = rules_text(result, files)
    try:
        from telemetry.core.rules import parse_rule_file  # noqa: PLC0415 - pydantic, YAML

        parse_rule_file(text, str(out))
    except RuleFileError as exc:  # pragma: no cover - a converter bug, said plainly
        raise ImportCommandError(
            f"the converted rules do not check: {exc.problems[0]}", 1
        ) from None
    _write(out, text)
    if args.report is not None:
        _write(args.report, json.dumps(result.to_json(), indent=2) + "\n")
    err.write(report_text(result, out))
    return 0 if result.complete else INCOMPLETE


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImportCommandError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportCommandError(f"{path}: is a directory, not a model's JSON") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportCommandError(f"{path}: cannot read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportCommandError(
            f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ImportCommandError(f"{path}: cannot write: {exc.strerror or exc}", 1) from None


def rules_text(result: iotevents.ImportResult, files: list[Path]) -> str:
    """The rules file: a header saying where it came from, then the rules."""
    names = ", ".join(str(f) for f in files)
    header = (
        f"# Converted from AWS IoT Events models by `telemetry import iotevents` ({names}).\n"
        "# What did not convert, and what to subscribe to, is in the import's report.\n"
        "# Check it:  telemetry rules check <this file>\n"
    )
    import yaml  # noqa: PLC0415 - only when writing rules

    body = yaml.safe_dump(
        {"rules": result.rules},
        sort_keys=False,
        allow_unicode=True,
        width=4096,
        default_flow_style=None,
    )
    return header + body


def report_text(result: iotevents.ImportResult, out: Path) -> str:
    """The report as people read it: per model, converted, advice, not converted."""
    lines: list[str] = []
    for model in result.models:
        lines.append(f"{model.name} ({model.kind} model, {model.source})")
        lines.extend(f"  converted      {p}: rule {r['name']}" for p, r in model.converted)
        lines.extend(f"  advice         {p}: {a}" for p, a in model.advice)
        lines.extend(f"  not converted  {p}: {r}" for p, r in model.not_converted)
    left = sum(len(m.not_converted) for m in result.models)
    rules = len(result.rules)
    models = len(result.models)
    tail = "every condition converted" if not left else f"{left} not converted (listed above)"
    lines.append(
        f"{out}: {rules} rule{'s' * (rules != 1)} from {models} model{'s' * (models != 1)}; {tail}"
    )
    return "\n".join(lines) + "\n"
