"""The baseline commit's code, checked out at run time, and processes that run it.

Benchmarks that compare with "today" run the function's code of BASELINE_COMMIT
(the commit before the speed work, issue 13) beside this tree's, in the same
run on the same machine. Its `telemetry` and `rules` are extracted with
`git archive` into benchmarks/results/ (git-ignored) once; nothing of it is
ever committed. A process runs one tree or the other by its working directory
and PYTHONPATH (this tree's `benchmarks` package stays importable in both).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
BASELINE_COMMIT: Final = "4536061"
_CACHE: Final = ROOT / "benchmarks" / "results"


class BaselineUnavailableError(RuntimeError):
    """The baseline commit cannot be checked out (no git, or a shallow clone)."""


def baseline_tree(commit: str = BASELINE_COMMIT) -> Path:
    """A directory holding the commit's `telemetry/` and `rules/`."""
    target = _CACHE / f"baseline-{commit}"
    if (target / "telemetry" / "handler.py").is_file():
        return target
    git = shutil.which("git")
    if git is None:
        raise BaselineUnavailableError("cannot check out the baseline commit: no git")
    try:
        archive = subprocess.run(
            [git, "-C", str(ROOT), "archive", "--format=tar", commit, "telemetry", "rules"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip()
        raise BaselineUnavailableError(
            f"cannot check out baseline commit {commit}: {detail}"
        ) from None
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


@dataclass(frozen=True, slots=True)
class CodeTree:
    """Which code a process runs: this tree, or the baseline commit's."""

    name: str
    root: Path

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` with PYTHONPATH set so that `telemetry` is this tree's code."""
        path = [str(self.root)] if self.root == ROOT else [str(self.root), str(ROOT)]
        return {**env, "PYTHONPATH": os.pathsep.join(path)}

    def run(
        self, args: Sequence[str], env: Mapping[str, str], **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        """`python args...` in this tree (its directory first on sys.path)."""
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [sys.executable, *args],
            cwd=self.root,
            env=self.environment(env),
            check=True,
            capture_output=True,
            text=True,
            **kwargs,
        )


def trees() -> tuple[CodeTree, CodeTree]:
    """(ours, baseline), their bytecode compiled."""
    from benchmarks.processes import ensure_bytecode

    ours, today = CodeTree("ours", ROOT), CodeTree(f"baseline {BASELINE_COMMIT}", baseline_tree())
    ensure_bytecode(ROOT / "telemetry", ROOT / "benchmarks", today.root / "telemetry")
    return ours, today
