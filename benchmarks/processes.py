"""Whole processes, measured as the kernel bills them: CPU (user + system) and wall
time from wait4, and the peak resident memory of the process's own address space.

Peak memory comes from /proc/self/status (VmHWM) read by the process itself at exit
(`benchmarks.peak` runs the measured module and writes it): ru_maxrss would carry the
forking parent's high-water mark over into the child across exec.
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def reset_local_aws(url: str) -> None:
    """Empty moto's server at `url` (every backend), for a fresh stack."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"not a local AWS: {url}")
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - checked above
        pass


def ensure_bytecode(*roots: Path) -> None:
    """Write the bytecode caches of every module under `roots` (as pip does for
    installed packages), so that no measured process compiles source: not even
    when PYTHONDONTWRITEBYTECODE keeps the processes themselves from writing it."""
    for root in roots:
        compileall.compile_dir(root, quiet=1)


@dataclass(frozen=True, slots=True)
class Measured:
    cpu_seconds: float
    wall_seconds: float
    peak_mb: float | None = None


def measure(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdin: bytes | None = None,
    peak: bool = False,
) -> Measured:
    """Run `python args...` to completion; raise if it fails. With `peak`, `args`
    is `-m module ...` run under benchmarks.peak, which reports VmHWM."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "peak"
        command = [sys.executable, *args]
        if peak:
            if args[0] != "-m":
                raise ValueError("peak memory is measured for `-m module` runs")
            command = [sys.executable, "-m", "benchmarks.peak", str(report), *args[1:]]
        with tempfile.TemporaryFile() as errors:
            began = time.perf_counter()
            process = subprocess.Popen(
                command,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
            if stdin is not None and process.stdin is not None:
                process.stdin.write(stdin)
                process.stdin.close()
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - began
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                errors.seek(0)
                detail = errors.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"{' '.join(command)} failed:\n{detail}")
        megabytes = float(report.read_text()) if peak else None
    return Measured(usage.ru_utime + usage.ru_stime, wall, megabytes)


@dataclass(slots=True)
class Samples:
    """Repeated measurements of one case."""

    runs: list[Measured] = field(default_factory=list)

    def median(self, attribute: str = "cpu_seconds") -> float:
        return statistics.median(getattr(m, attribute) for m in self.runs)

    def values(self, attribute: str = "cpu_seconds") -> list[float]:
        return [getattr(m, attribute) for m in self.runs]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cpu_seconds": self.values(),
            "wall_seconds": self.values("wall_seconds"),
            "median_cpu_seconds": self.median(),
            "median_wall_seconds": self.median("wall_seconds"),
        }
        if self.runs and self.runs[0].peak_mb is not None:
            out["peak_mb"] = self.values("peak_mb")
            out["median_peak_mb"] = self.median("peak_mb")
        return out


def interleaved(
    cases: Mapping[str, Callable[[], Measured]], repeats: int, *, warm_up: bool = True
) -> dict[str, Samples]:
    """Each case `repeats` times, taking turns (so that the machine's load falls
    on all alike), after one unmeasured run of each (bytecode and file caches)."""
    if warm_up:
        for run in cases.values():
            run()
    samples = {name: Samples() for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            samples[name].runs.append(run())
    return samples
