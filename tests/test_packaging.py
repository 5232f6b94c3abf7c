"""The package's metadata as setuptools reads it: no deprecation warnings on a
fresh clone's `make demo` (issue 12 found ~50 lines of them)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


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
