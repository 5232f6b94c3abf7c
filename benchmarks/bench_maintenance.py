"""Maintenance windows: what judging them costs the function, beside the same
work with no window, in one process.

- readings: `evaluate` then `finalize` (what every invocation does) of a device
  whose 10 sensors all change level (10 transitions, the case where windows are
  looked at), with no window; with one weekly window in Europe/Paris holding
  it (inside and outside the window); and with 50 windows of which one
  matches. A quiet reading (no transition) never looks at a window.
- sweep: `telemetry.core.silence.sweep` of a device with 10 sensors tracked by
  `nodata`, none silent yet (the common visit), with no window and with the
  same windows.

CPU is `time.process_time` with the cyclic collector off, best of REPEATS.
Target: with one or 50 windows, at most 1.5x the work without.

    python -m benchmarks.bench_maintenance [--repeats R]
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any, Final

from benchmarks.workload import ratio, table, verdict
from telemetry.core.alerts import AlertState, Silence, StateKey, evaluate
from telemetry.core.maintenance import Maintenance, Window, parse_every
from telemetry.core.messages import Reading
from telemetry.core.operators import finalize
from telemetry.core.rules import Rule, RuleSet, Side
from telemetry.core.silence import sweep

REPEATS: Final = 5
CALLS: Final = 2_000
SENSORS: Final = 10
TARGET_RATIO: Final = 1.5
DEVICE: Final = "line3-pump-00001"
INSIDE_MS: Final = 1_796_518_800_000 + 30 * 60_000  # Sunday 2026-12-06 01:30Z: in the window
OUTSIDE_MS: Final = INSIDE_MS + 3 * 86_400_000  # the Wednesday after


def _window(name: str, device_glob: str) -> Window:
    days, start, end = parse_every("SUN 02:00-04:00")
    return Window(name, (("deviceId", device_glob),), days, start, end, "Europe/Paris")


def rule_sets() -> dict[str, RuleSet]:
    rules = [
        Rule("temperature-high", (Side("above", 75.0, 90.0),), match=(("type", "temperature"),)),
        Rule("temperature-silent", (), match=(("type", "temperature"),), nodata_ms=600_000),
    ]
    one = Maintenance([_window("line-3", "line3-*")])
    many = Maintenance(
        [_window(f"line-{n}", f"line{n}-*") for n in range(4, 53)] + [_window("line-3", "line3-*")]
    )
    return {
        "no window": RuleSet(rules),
        "1 window": RuleSet(rules, maintenance=one),
        "50 windows": RuleSet(rules, maintenance=many),
    }


def _cpu(work: Callable[[], Any], repeats: int) -> float:
    """Best CPU seconds per call of `work` over CALLS calls."""
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeats):
            started = time.process_time()
            for _ in range(CALLS):
                work()
            best = min(best, time.process_time() - started)
    finally:
        gc.enable()
    return best / CALLS


def _readings(now_ms: int) -> list[Reading]:
    return [Reading(DEVICE, f"temp-{k}", 95.0, now_ms, "temperature") for k in range(SENSORS)]


def _tracked(now_ms: int) -> dict[StateKey, AlertState]:
    seen = now_ms - 60_000
    return {
        (f"temp-{k}", "temperature-silent"): AlertState(
            silence=Silence(seen, 600_000, 60.0, "temperature")
        )
        for k in range(SENSORS)
    }


def run(repeats: int = REPEATS) -> dict[str, Any]:
    out: dict[str, Any] = {"readings": {}, "sweep": {}}
    for label, rules in rule_sets().items():
        for where, now_ms in (("inside", INSIDE_MS), ("outside", OUTSIDE_MS)):
            readings = _readings(now_ms)
            tracked = _tracked(now_ms)

            def evaluated(
                rules: RuleSet = rules, readings: list[Reading] = readings, now_ms: int = now_ms
            ) -> None:
                finalize(evaluate(readings, {}, rules, now_ms), rules, now_ms)

            def swept(
                rules: RuleSet = rules,
                tracked: dict[StateKey, AlertState] = tracked,
                now_ms: int = now_ms,
            ) -> None:
                sweep(DEVICE, tracked, rules, now_ms)

            out["readings"][f"{label}, {where}"] = _cpu(evaluated, repeats)
            out["sweep"][f"{label}, {where}"] = _cpu(swept, repeats)
    return out


def report(results: dict[str, Any]) -> None:
    for part, title in (("readings", "evaluate + finalize, 10 transitions"), ("sweep", "sweep")):
        numbers = results[part]
        rows = []
        worst = 0.0
        for label, seconds in numbers.items():
            where = label.split(", ")[1]
            base = numbers[f"no window, {where}"]
            worst = max(worst, ratio(seconds, base))
            rows.append((label, f"{seconds * 1e6:.1f}", f"{ratio(seconds, base):.2f}"))
        print(f"{title} (per device call):")
        print(table(("rules", "us", "x no window"), rows))
        print(f"target: at most {TARGET_RATIO}x: {verdict(worst <= TARGET_RATIO)}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    report(run(parser.parse_args().repeats))


if __name__ == "__main__":
    main()
