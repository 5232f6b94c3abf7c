"""The README and docs/ as tests: every rule example loads, every command runs.

The conventions the documents follow, so that nothing in them can go stale:

- A ```yaml block whose first line is `# file: NAME` is that file for the
  document's commands (written to a scratch directory beside symlinks to `rules/`
  and `telemetry/`). A rule block (top-level `rules:`) must load unless a command
  of the same document checks it (`rules check NAME`), whose output then says.
- In ```console blocks, `$ ` starts a command; the lines after it, up to the next
  one, are its output (stdout and stderr as they interleave), where a line `...`
  stands for any number of lines. Commands run, except those that start the local
  AWS (`demo`, `devices`, `alerts`), which are parsed by the real argument parser
  instead (unless their output shows they fail before starting: a usage error, or
  one `telemetry: error:` line), since their output holds ports and timings.
- In ```sh blocks and usage lines (a plain block starting `telemetry ...`), every
  `telemetry` command parses, every flag exists, every `make` target exists, and
  every `python -m benchmarks...` module takes the flags shown.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from telemetry.cli import build_parser
from telemetry.core.rules import RuleFileError, load_rules

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STARTS_LOCAL_AWS = {"demo", "devices", "alerts"}
SHELL_PROGRAMS = {"cat", "head", "echo", "printf", "telemetry"}


@dataclass
class Block:
    document: Path
    line: int
    language: str
    lines: list[str]

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


@dataclass
class Command:
    text: str
    output: list[str] = field(default_factory=list)


def blocks(document: Path) -> Iterator[Block]:
    lines = document.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        yield Block(document, start, fence.group(1), body)
        i += 1


def commands(block: Block) -> list[Command]:
    out: list[Command] = []
    for line in block.lines:
        if line.startswith("$ "):
            out.append(Command(line[2:]))
        elif out:
            out[-1].output.append(line)
    return out


def named_file(block: Block) -> str | None:
    match = re.match(r"^# file: (\S+)\s*$", block.lines[0]) if block.lines else None
    return match.group(1) if match else None


def all_blocks() -> list[Block]:
    return [b for d in DOCUMENTS for b in blocks(d)]


def _id(block: Block) -> str:
    return block.where


def matches(expected: list[str], actual: list[str]) -> bool:
    """`...` in the expected lines stands for any number of actual lines."""
    exp = [line.rstrip() for line in expected]
    act = [line.rstrip() for line in actual]
    while exp and not exp[-1]:
        exp.pop()
    while act and not act[-1]:
        act.pop()

    def walk(e: int, a: int) -> bool:
        if e == len(exp):
            return a == len(act)
        if exp[e] == "...":
            return any(walk(e + 1, k) for k in range(a, len(act) + 1))
        return a < len(act) and exp[e] == act[a] and walk(e + 1, a + 1)

    return walk(0, 0)


# --- the command line, as the parser knows it ---------------------------------


def telemetry_words(command: str) -> list[list[str]]:
    """The argument lists of every `telemetry` call in a shell line."""
    calls = []
    for part in re.split(r"\s*(?:\|\||&&|\||;)\s*", command.split(" #", maxsplit=1)[0]):
        try:
            words = shlex.split(part)
        except ValueError:
            continue
        words = [w for w in words if not re.match(r"^\d?>", w) and w != "/dev/null"]
        if words and words[0] in {"telemetry", ".venv/bin/telemetry"}:
            calls.append(words[1:])
    return calls


def parse(words: list[str]) -> None:
    """Parse as `telemetry` would; a usage error fails the test."""
    try:
        build_parser().parse_args(words)
    except SystemExit as exc:
        pytest.fail(f"`telemetry {' '.join(words)}` does not parse (exit {exc.code})")


def subparser(words: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in words:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
    return parser


def known_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets: set[str] = set()
    for match in re.finditer(r"^([A-Za-z][\w .-]*):(?!=)", text, re.MULTILINE):
        targets.update(match.group(1).split())
    return targets


# --- running the documents' commands ------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


def workdir(scratch: Path, document: Path) -> Path:
    """A directory like the repository's root, holding the document's files."""
    here = scratch / document.stem
    if here.exists():
        return here
    here.mkdir()
    for name in ("rules", "telemetry"):
        (here / name).symlink_to(ROOT / name)
    for block in blocks(document):
        name = named_file(block)
        if name:
            # JSON has no comments: the `# file:` line names the file, it is not in it.
            lines = block.lines[1:] if block.language == "json" else block.lines
            (here / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return here


def run(command: str, cwd: Path, last_status: int) -> tuple[int, list[str]]:
    if command.strip() == "echo $?":
        return 0, [str(last_status)]
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "80",
        "NO_COLOR": "1",
    }
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout.splitlines()


def is_failure_shown(output: list[str]) -> bool:
    return bool(output) and (output[0].startswith("usage:") or output[0].startswith("telemetry:"))


def runs_locally(command: Command) -> bool:
    """Commands that start no local AWS run; the others are parsed."""
    programs = set()
    for part in re.split(r"\s*(?:\|\||&&|\||;)\s*", command.text):
        words = shlex.split(part) if part.strip() else []
        if words:
            programs.add(words[0])
    unknown = programs - SHELL_PROGRAMS
    assert not unknown, f"the doc test cannot run {sorted(unknown)}: `{command.text}`"
    starts = any(w and w[0] in STARTS_LOCAL_AWS for w in telemetry_words(command.text))
    return not starts or is_failure_shown(command.output)


# --- the tests ----------------------------------------------------------------

CONSOLE = [b for b in all_blocks() if b.language == "console"]
YAML_RULES = [
    b
    for b in all_blocks()
    if b.language == "yaml" and re.search(r"^rules:", "\n".join(b.lines), re.MULTILINE)
]
SHELL = [b for b in all_blocks() if b.language == "sh"]
USAGE = [
    b for b in all_blocks() if b.language == "" and b.lines and b.lines[0].startswith("telemetry ")
]


def test_the_documents_have_examples_of_each_kind() -> None:
    # Given the README and docs/, when their blocks are collected,
    # then each kind the conventions cover is there (the test sees them at all)
    assert len(CONSOLE) >= 10
    assert len(YAML_RULES) >= 2
    assert len(SHELL) >= 5
    assert len(USAGE) >= 3


def test_the_output_matcher_treats_dots_as_any_lines() -> None:
    # Given expected lines with `...`, when compared, then only a gap is allowed
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "..."], ["a"])
    assert not matches(["a", "...", "d"], ["a", "b"])
    assert not matches(["a", "b"], ["a", "b", "c"])


@pytest.mark.parametrize("block", YAML_RULES, ids=_id)
def test_every_rule_example_loads(block: Block, tmp_path: Path) -> None:
    # Given a rule example in a document, unless a command of that document checks it
    name = named_file(block)
    checked = name is not None and any(
        re.search(rf"rules check\b[^|;]*\b{re.escape(name)}\b", c.text)
        for b in blocks(block.document)
        if b.language == "console"
        for c in commands(b)
    )
    if checked:
        return
    # When it is loaded as the function loads rules
    path = tmp_path / (name or "example.yaml")
    path.write_text("\n".join(block.lines) + "\n", encoding="utf-8")
    try:
        rules = load_rules(path)
    except RuleFileError as exc:
        pytest.fail(f"{block.where}: the rule example does not load: {exc}")
    # Then it holds the rules it shows
    assert len(rules.rules) == len(yaml.safe_load(path.read_text())["rules"])


@pytest.mark.parametrize("block", CONSOLE, ids=_id)
def test_every_console_example_prints_what_it_shows(block: Block, scratch: Path) -> None:
    # Given a console example and the document's files
    cwd = workdir(scratch, block.document)
    status = 0
    for command in commands(block):
        if not runs_locally(command):
            # When it would start a local AWS, then it at least parses
            for words in telemetry_words(command.text):
                parse(words)
            status = 0
            continue
        # When it runs
        status, output = run(command.text, cwd, status)
        # Then it prints what the document shows
        assert matches(command.output, output), (
            f"{block.where}: `{command.text}` printed\n" + "\n".join(output)
        )


@pytest.mark.parametrize("block", SHELL, ids=_id)
def test_every_shell_example_names_real_commands(block: Block) -> None:
    # Given the lines of a shell example
    targets = make_targets()
    for raw in block.lines:
        line = raw.split(" #")[0].strip()
        if line.startswith("#"):
            continue
        # When it calls the command line, make or a benchmark
        for words in telemetry_words(line):
            # Then the parser takes it as written
            parse(words)
        make = re.match(r"^make\s+([\w-]+)", line)
        if make:
            assert make.group(1) in targets, f"{block.where}: no make target {make.group(1)}"
        module = re.match(r"^\.venv/bin/python -m (benchmarks[\w.]*)(.*)$", line)
        if module:
            helped = subprocess.run(
                [sys.executable, "-m", module.group(1), "--help"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            assert helped.returncode == 0, f"{block.where}: {module.group(1)} --help failed"
            for flag in re.findall(r"(?<!\S)(--[\w-]+)", module.group(2)):
                assert flag in helped.stdout, f"{block.where}: {module.group(1)} has no {flag}"


@pytest.mark.parametrize("block", USAGE, ids=_id)
def test_every_usage_line_shows_real_flags(block: Block) -> None:
    # Given the usage lines of a block (`telemetry demo [--devices N] ...`, the
    # indented lines continuing the one above)
    usages: list[tuple[list[str], str]] = []
    for line in block.lines:
        if line.startswith("telemetry "):
            usages.append((line.split()[1:3], line))
        elif usages:
            usages[-1] = (usages[-1][0], usages[-1][1] + " " + line)
    for words, text in usages:
        # When its command is looked up
        parser = subparser(words)
        assert parser.prog != build_parser().prog, f"{block.where}: no command {words}"
        # Then each flag shown is one the command takes
        shown = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", text))
        missing = shown - known_flags(parser)
        assert not missing, f"{block.where}: `{parser.prog}` has no {sorted(missing)}"


INSIDE_WORDS = re.compile(
    r"\bissues? \d+\b|today's code|\btoday \d|seed-format|seed-style|the seed's", re.IGNORECASE
)
"""Words that mean something only to this project's history: issue numbers, "today's
code", the seed project's message format."""


def every_parser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from every_parser(sub)


def test_documents_and_help_speak_a_users_words() -> None:
    # Given the README, docs/ and every command's --help
    texts = {str(d.relative_to(ROOT)): d.read_text(encoding="utf-8") for d in DOCUMENTS}
    texts |= {p.prog: p.format_help() for p in every_parser(build_parser())}

    # When they are searched for words of the project's own history
    found = [
        f"{where}: {match.group(0)!r}"
        for where, text in texts.items()
        for match in INSIDE_WORDS.finditer(text)
    ]

    # Then there are none: a user cannot know what issue 13 or "today's code" was
    assert not found


def test_deploy_asks_new_accounts_for_no_store_they_cannot_have() -> None:
    # Given the deployment guide, whose new accounts deploy with InfluxDB
    text = " ".join((ROOT / "docs" / "deploy.md").read_text(encoding="utf-8").split())
    prerequisites = text[text.index("## Prerequisites") :].split("## ", 2)[1]

    # When it states the Region needed, Then it names InfluxDB beside LiveAnalytics,
    # never LiveAnalytics alone as a requirement
    region = next(p for p in prerequisites.split("- ") if p.startswith("A Region"))
    assert "InfluxDB" in region
    assert "both AWS IoT Core and Timestream for LiveAnalytics" not in prerequisites


def test_the_operators_policy_is_documented_as_granted() -> None:
    from tests.iam import load_template

    # Given the actions OperatorsPolicy grants on the state table
    statements = load_template()["Resources"]["OperatorsPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    listing = next(s for s in statements if isinstance(s, dict) and s.get("Sid") == "ListAlerts")
    actions = [a.split(":", 1)[1] for a in listing["Action"]]
    assert "BatchGetItem" in actions

    # When operators.md and deploy.md list what it allows, Then they list each of them
    operators = (ROOT / "docs" / "operators.md").read_text(encoding="utf-8")
    row = next(line for line in operators.splitlines() if "`dynamodb:GetItem`" in line)
    assert all(f"`dynamodb:{a}`" in row for a in actions), row
    deploy = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    line = next(line for line in deploy.splitlines() if line.startswith("| `OperatorsPolicy`"))
    granted = re.search(r"`dynamodb:\S+`", line)
    assert granted
    assert sorted(re.findall(r"`(?:dynamodb:)?(\w+)`", granted.group(0))) == sorted(actions)
