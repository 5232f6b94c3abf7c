"""The package's metadata as setuptools reads it: no deprecation warnings on a
fresh clone's `make demo` (issue 12 found ~50 lines of them)."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from telemetry.core.rule_specs import load_rule_set
from telemetry.core.rules import COMPILED_NAME, compiled_rule_set, rule_files, sources_digest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_TEXT = (ROOT / "template.yaml").read_text(encoding="utf-8")


def test_the_license_is_an_spdx_expression_and_the_build_can_read_it() -> None:
    # Given pyproject.toml
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

    # Then the license is an SPDX string (a table is deprecated, and warned about), no
    # license classifier repeats it, and the build asks for a setuptools that reads it
    assert isinstance(project["project"]["license"], str)
    assert re.fullmatch(r"[A-Za-z0-9.+-]+", project["project"]["license"])
    classifiers = project["project"].get("classifiers", [])
    assert not [c for c in classifiers if c.startswith("License ::")]
    requires = project["build-system"]["requires"]
    [setuptools] = [r for r in requires if r.startswith("setuptools")]
    found = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools)
    assert found is not None
    assert int(found.group(1)) >= 77  # the first to take PEP 639's license string


# ---------------------------------------------------------------- what the function ships
#
# `sam build` runs the Makefile's build-<Function>: pip installs the lock file's wheels
# for arm64 (that needs the network, so no test runs it), then `function-files` copies
# what the function imports and compiles it with the runtime's interpreter. These tests
# run that second step for real, and check the lock file against pyproject and against
# what the tests themselves run with.

LOCK = ROOT / "requirements" / "function.txt"
RUNTIME_BRINGS = {"boto3"}
"""pyproject's dependencies the Lambda runtime provides: never shipped, never locked."""


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes) of the lock file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==([^ \\]+)", line):
            current = match.group(1).lower().replace("_", "-")
            pins[current] = (match.group(2), [])
        elif match := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line):
            pins[current][1].append(match.group(1))
    return pins


def test_the_lock_pins_every_shipped_dependency_of_pyproject_with_hashes() -> None:
    # Given pyproject's dependencies and the lock file
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = project["project"]["dependencies"]
    pins = locked()

    # Then every dependency but the runtime's boto3 is pinned, at a version its range
    # admits, and every pin carries hashes (pip --require-hashes refuses otherwise)
    for requirement in wanted:
        name = _name(requirement)
        if name in RUNTIME_BRINGS:
            assert name not in pins
            continue
        assert name in pins, f"{name} is not in {LOCK.name}: run `make lock`"
        specifier = requirement[len(name) :].split(";")[0].strip()
        assert SpecifierSet(specifier).contains(pins[name][0]), (requirement, pins[name][0])
    assert pins
    assert all(hashes for _, hashes in pins.values())
    # and nothing of boto3's own (the runtime's copy would be shadowed by ours)
    assert not {"botocore", "s3transfer", "urllib3", "boto3"} & set(pins)


def test_the_tests_run_with_exactly_the_locked_versions() -> None:
    # Given the lock file the build installs from
    # When the versions installed here are read
    installed = {name: metadata.version(name) for name in locked()}
    # Then they are the lock's: what is tested is what is deployed
    assert installed == {name: version for name, (version, _) in locked().items()}


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The function's files as the build lays them, over what pip left there."""
    out = tmp_path_factory.mktemp("artifact")
    (out / "bin").mkdir()
    (out / "bin" / "jp.py").write_text("# a script pip installs\n")
    stale = out / "telemetry" / "__pycache__"
    stale.mkdir(parents=True)
    (stale / "handler.cpython-311.pyc").write_bytes(b"stale")
    (out / "somelib").mkdir()
    (out / "somelib" / "__init__.py").write_text("VALUE = 1\n")
    (out / "somelib" / "__pycache__").mkdir()
    (out / "somelib" / "__pycache__" / "__init__.cpython-39.pyc").write_bytes(b"stale")
    done = _make("function-files", f"ARTIFACTS_DIR={out}", f"LAMBDA_PYTHON={sys.executable}")
    assert done.returncode == 0, done.stderr
    return out


def test_the_artifact_holds_what_the_function_imports_and_nothing_else(artifact: Path) -> None:
    # Given the artifact laid by the build's file selection
    top = {p.name for p in artifact.iterdir()}
    package = {
        p.relative_to(artifact / "telemetry").as_posix() for p in artifact.glob("telemetry/*")
    }

    # Then there is no bin/, no tests, no command line, local runs or samples
    assert top == {"telemetry", "rules", "somelib"}
    assert not {"local", "samples", "importers", "cli.py", "backtest.py", "terminal.py"} & package
    assert "__main__.py" not in package
    assert {"handler.py", "actions.py", "core", "adapters"} <= package
    assert (artifact / "rules" / "default.yaml").exists()


def test_the_artifact_carries_its_rules_compiled_for_the_yaml_it_ships(artifact: Path) -> None:
    # Given the artifact's rules directory
    rules = artifact / "rules"

    # When its compiled file is read for the YAML files beside it
    text = (rules / COMPILED_NAME).read_text(encoding="utf-8")
    compiled = compiled_rule_set(text, sources_digest(rule_files(rules)))

    # Then it stands for them, and holds the set their YAML makes
    assert compiled is not None
    parsed = load_rule_set(rules)
    assert repr(compiled.rules) == repr(parsed.rules)
    assert (compiled.gateways, compiled.notifications) == (parsed.gateways, parsed.notifications)


def test_the_artifact_has_bytecode_of_the_building_interpreter_only(artifact: Path) -> None:
    # Given the artifact, built with this interpreter standing in for the runtime's
    tag = sys.implementation.cache_tag
    sources = list(artifact.rglob("*.py"))
    compiled = list(artifact.rglob("*.pyc"))

    # Then every source has its bytecode for this interpreter and none of another one
    assert sources
    assert {p for p in compiled if f".{tag}." not in p.name} == set()
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        assert cached.exists(), source
        # and it is hash-based, never checked against the source (the zip's times
        # cannot make it stale): flags 0b01 in the header
        assert int.from_bytes(cached.read_bytes()[4:8], "little") == 1, cached


def test_the_function_imports_from_its_bytecode_without_compiling(artifact: Path) -> None:
    # Given the artifact whose sources are then made unusable: what imports them
    # instead of the bytecode fails
    tree = artifact.parent / "sources-broken"
    shutil.copytree(artifact, tree)
    for source in (tree / "telemetry").rglob("*.py"):
        source.write_text("raise SystemExit('compiled from source: ' + __name__)\n")

    # When the function's entry points are imported from it, read-only as Lambda runs it
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import telemetry.handler, telemetry.actions; print(telemetry.handler.__file__)",
        ],
        cwd=tree,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )

    # Then they load from the bytecode alone
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(tree))


def test_the_build_refuses_an_interpreter_other_than_the_runtime(tmp_path: Path) -> None:
    # Given the template's runtime and an interpreter that says it is another version
    runtime = re.findall(r"^\s*Runtime:\s*(python3\.\d+)\s*$", TEMPLATE_TEXT, re.MULTILINE)
    assert set(runtime) == {"python3.13"}
    other = tmp_path / "python"
    other.write_text("#!/bin/sh\necho python3.12\n")
    other.chmod(0o755)

    # When the build's check runs with it, and with no interpreter at all
    done = _make("lambda-python", f"LAMBDA_PYTHON={other}")
    missing = _make("lambda-python", "LAMBDA_PYTHON=")

    # Then it refuses, naming both versions; and names the one it needs
    assert done.returncode != 0
    assert "refusing" in done.stderr
    assert "python3.12" in done.stderr
    assert runtime[0] in done.stderr
    assert missing.returncode != 0
    assert runtime[0] in missing.stderr


def test_the_build_refuses_without_an_artifacts_dir() -> None:
    # Given no ARTIFACTS_DIR (a bare `make function-files`)
    done = _make("function-files", "ARTIFACTS_DIR=", f"LAMBDA_PYTHON={sys.executable}")
    # Then nothing is deleted in the repository: it refuses
    assert done.returncode != 0
    assert (ROOT / "telemetry" / "cli.py").exists()


FIRST_PARTY = {"telemetry", "tests", "benchmarks", "dashboards"}
COMES_WITH = {"botocore": "boto3", "urllib3": "botocore"}
"""Distributions the tests import that come with a declared one, which the function
itself relies on for them (boto3 pins its botocore; the InfluxDB writer uses the
urllib3 botocore has loaded): importing them needs no declaration of their own."""


def imported_top_levels(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.partition(".")[0])
    return names


def declared(project: dict[str, Any]) -> set[str]:
    """Distribution names the project declares, in its dependencies or any extra."""
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {canonical(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_package_the_tests_import_is_declared_itself() -> None:
    # Given the distributions the test suite imports (not the standard library's, not ours)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    owners = importlib.metadata.packages_distributions()
    third_party = imported_top_levels(ROOT / "tests") - FIRST_PARTY - sys.stdlib_module_names
    needed = {canonical(dist) for module in third_party for dist in owners.get(module, [module])}

    # Then each is declared by name, not merely pulled in by another package (which may
    # drop it): a missing one fails the suite instead of skipping or erroring in CI
    assert needed - declared(project) - set(COMES_WITH) == set()
