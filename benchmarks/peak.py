"""Run a module as `python -m` would, then write the process's peak memory.

    python -m benchmarks.peak REPORT MODULE [ARGS...]

REPORT receives VmHWM in MB (the peak resident set of this process's own address
space) when the interpreter exits, however the module ends.
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    report, module, *args = sys.argv[1:]
    atexit.register(lambda: Path(report).write_text(f"{_peak_mb():.2f}"))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
