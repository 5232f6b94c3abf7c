"""The package's metadata as setuptools reads it: no deprecation warnings on a
fresh clone's `make demo` (issue 12 found ~50 lines of them)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
