"""Imports point one way: handler -> pipeline -> delivery -> core; adapters -> core.

The core stays pure (no AWS SDK, no Powertools, no environment), the pipeline
holds no AWS code, adapters never reach up into the handler, and the function
never imports the local-run extras (moto, rich).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "telemetry"
AWS_OR_RUNTIME = ("boto3", "botocore", "aws_lambda_powertools")
LOCAL_ONLY = (
    "moto",
    "rich",
    "telemetry.local",
    "telemetry.cli",
    "telemetry.backtest",
    "telemetry.terminal",
)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def reads_environment(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.Attribute)
        and node.attr in {"environ", "getenv"}
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        for node in ast.walk(tree)
    )


def modules(*parts: str) -> list[Path]:
    root = PACKAGE.joinpath(*parts)
    return sorted(root.glob("*.py")) if root.is_dir() else [root]


def starts_with_any(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: p.name)
def test_the_core_is_pure(path: Path) -> None:
    # Given a core module, When its imports are read
    found = imports_of(path)

    # Then it uses no AWS SDK, no Powertools, nothing outside the core, no environment
    assert not [m for m in found if starts_with_any(m, AWS_OR_RUNTIME)]
    assert not [
        m for m in found if m.startswith("telemetry.") and not m.startswith("telemetry.core")
    ]
    assert not reads_environment(path)


@pytest.mark.parametrize("name", ["pipeline", "delivery"])
def test_the_pipeline_and_delivery_hold_no_aws_code(name: str) -> None:
    # Given the pipeline or the delivery it hands over to, When its imports are read
    found = imports_of(PACKAGE / f"{name}.py")

    # Then only the core, the project's error types, and (the pipeline) delivery
    assert not [m for m in found if starts_with_any(m, AWS_OR_RUNTIME)]
    project = {m for m in found if m.startswith("telemetry.")}
    allowed = {"telemetry.errors"} | ({"telemetry.delivery"} if name == "pipeline" else set())
    assert all(m.startswith("telemetry.core") or m in allowed for m in project)


@pytest.mark.parametrize("path", modules("adapters"), ids=lambda p: p.name)
def test_adapters_depend_on_the_core_only(path: Path) -> None:
    # Given an adapter, When its imports are read
    project = {m for m in imports_of(path) if m.startswith("telemetry")}

    # Then it never reaches up into the pipeline, the handler or local tooling
    assert all(
        starts_with_any(m, ("telemetry.core", "telemetry.adapters", "telemetry.errors"))
        for m in project
    )


@pytest.mark.parametrize(
    "path",
    [
        *modules("core"),
        *modules("adapters"),
        PACKAGE / "pipeline.py",
        PACKAGE / "delivery.py",
        PACKAGE / "handler.py",
        PACKAGE / "actions.py",
        PACKAGE / "settings.py",
        PACKAGE / "events.py",
        PACKAGE / "errors.py",
    ],
    ids=lambda p: p.name,
)
def test_the_function_never_imports_local_extras(path: Path) -> None:
    # Given a module the Lambda package loads, Then no local-run extra is imported
    assert not [m for m in imports_of(path) if starts_with_any(m, LOCAL_ONLY)]


def test_only_the_entry_point_reads_the_environment() -> None:
    # Given the modules the function loads
    function = [
        *modules("core"),
        *modules("adapters"),
        PACKAGE / "pipeline.py",
        PACKAGE / "delivery.py",
        PACKAGE / "settings.py",
        PACKAGE / "events.py",
    ]

    # Then none reads os.environ: the handler hands it to Settings once
    assert [p.name for p in function if reads_environment(p)] == []
    assert reads_environment(PACKAGE / "handler.py")


def _tool_modules() -> dict[str, Path]:
    found = {"telemetry.cli": PACKAGE / "cli.py", "telemetry.backtest": PACKAGE / "backtest.py"}
    found["telemetry.terminal"] = PACKAGE / "terminal.py"
    found |= {f"telemetry.local.{p.stem}": p for p in modules("local") if p.stem != "__init__"}
    return found


def test_the_command_line_tools_import_each_other_without_a_cycle() -> None:
    # Given the modules of the telemetry command and what each imports of the others
    tools = _tool_modules()
    graph = {name: {m for m in imports_of(path) if m in tools} for name, path in tools.items()}

    # When every import path is followed
    def reaches(start: str, target: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt}))
            for nxt in graph[start]
        )

    # Then no module reaches itself, only the entry point imports the CLI, and
    # terminal output depends on no other tool module
    assert [name for name in tools if reaches(name, name)] == []
    assert [name for name, deps in graph.items() if "telemetry.cli" in deps] == []
    assert graph["telemetry.terminal"] == set()
