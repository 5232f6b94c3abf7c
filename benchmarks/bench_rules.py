"""Rule matching at fleet scale: cost per reading by number of rules and of keys,
memory per key, and the cost of loading 10,000 rules; in one process, beside
the linear matcher (every rule tested, a cache of keys emptied when full).

The workload is a plant: 12 lines, pumps named `line{L}-pump-{NNNNN}` at
location `line-{L}` (L = N mod 12), each with 10 sensors (`{type}-{k}` over
temperature, pressure, vibration and humidity). Two rule sets per count:

- like for like (`handful_rules`, the target's): a reading matches about 3
  rules at every count, its type's, its line's, its pump's, finer as rules are
  added: 5 rules by `type` (3, one a class glob), `location` glob and
  `deviceId` prefix glob; from 100, the 5 shipped by `type`, 48 by line and type, and a
  `deviceId` layer matching each pump once (prefix globs per line, then per
  line and block of 100 pumps, each replaced by its pumps' own exact levels
  while the count allows: at 10,000 nearly every pump has its own).
- layered (`plant_rules`, the measure before): the 5 shipped rules, then by
  line, then a prefix glob per group of 10 pump numbers, then per-pump levels:
  1 rule a reading at 5 rules, 2 at 100, 3 at 10,000, so its ratio is mostly
  the evaluation of more matched rules, not matching.

- rules (5 / 100 / 1,000 / 10,000): CPU per reading of `evaluate` over a fleet
  of 2,500 pumps (25,000 keys), one call per pump's 10 readings. A run is
  RUN_PASSES passes from a fresh rule set, so a quarter of its readings are of
  a key not seen before (the issue's figures were such runs); "every key new"
  is the first pass alone, the worst case (a cold start's first batches).
  "Answers known": the same evaluation with every key's rules known beforehand
  (`KnownAnswers`), no matching at all: what evaluating the matched rules
  costs. The linear matcher beside it (like for like only), on the first 250
  pumps. Target: a like-for-like run with 10,000 rules at most 1.5x one with 5.
- keys (1,000 / 65,000 / 650,000, 100 rules like for like): the fleet read over
  and over, CPU per reading once every key was seen (a pass not measured
  first). Nothing is kept per key; the classes of deviceId values are
  remembered in two generations of 65,536 values, so 650,000 keys (65,000
  pumps) fit: "small memos" runs the same with generations of 6,554 values,
  which 65,000 pumps outnumber ten times, as 650,000 keys did the per-key
  cache this replaced. Target: at most 1.5x the cost below (each of 1,000 and
  65,000 keys), both ways.
- memory: bytes a rule set holds per key met (tracemalloc from before the
  readings are made to after they are dropped, so what matching keeps of them
  counts: a deviceId string and its class, per pump).
- loading 10,000 rules: `RuleSet(rules)` from compiled rules (the index built,
  the exact values named classified), and `load_rules` of a 10,000-rule YAML
  file; target 100 ms.
- cold start: a whole process importing the handler and building its runtime
  (`build_runtime`, rules loaded) with 5 rules and with 10,000, from YAML and
  compiled as the build ships them (`rule_specs.write_compiled`).

CPU is `time.process_time` with the cyclic collector off (as the handler and
backtest run), best of REPEATS for the in-process curves; median of whole
processes taking turns for the cold start.

    python -m benchmarks.bench_rules [--repeats R] [--cold-repeats R]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from benchmarks.processes import interleaved, measure
from benchmarks.workload import ROOT, function_environment, ratio, table, verdict
from telemetry.core.alerts import evaluate
from telemetry.core.messages import Reading
from telemetry.core.rule_index import CACHE_GENERATION, MatchKey
from telemetry.core.rule_specs import write_compiled
from telemetry.core.rules import Matches, Rule, RuleSet, Side, load_rules, matches

REPEATS: Final = 3
COLD_REPEATS: Final = 5
LINES: Final = 12
SENSORS_PER_DEVICE: Final = 10
GROUP: Final = 10
TYPES: Final = ("temperature", "pressure", "vibration", "humidity")
LEVELS: Final = {"temperature": 75.0, "pressure": 8.0, "vibration": 4.5, "humidity": 70.0}
QUIET: Final = {"temperature": 60.0, "pressure": 4.0, "vibration": 2.0, "humidity": 45.0}
RULE_COUNTS: Final = (5, 100, 1_000, 10_000)
RULES_FLEET: Final = 2_500
TODAY_FLEET: Final = 250
RUN_PASSES: Final = 4
KEY_COUNTS: Final = (1_000, 65_000, 650_000)
KEYS_RULES: Final = 100
KEYS_MEASURED: Final = 200_000
TARGET_RATIO: Final = 1.5
TARGET_LOAD_MS: Final = 100.0
START_MS: Final = 1_764_237_600_000
TODAY_CACHE: Final = 65_536
SMALL_GENERATION: Final = 6_554
MEMORY_KEYS: Final = (65_000, 650_000)


class LinearRuleSet(RuleSet):
    """The linear matcher, for comparison: every rule tested against each new key,
    the cache emptied at once when it holds 65,536 keys."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        super().__init__(rules)
        self._today: dict[MatchKey, Matches] = {}

    def matches_for(self, reading: Reading) -> Matches:
        key = (reading.device_id, reading.sensor_id, reading.type, reading.location)
        found = self._today.get(key)
        if found is None:
            if len(self._today) >= TODAY_CACHE:
                self._today.clear()
            found = self._today[key] = matches([r for r in self.rules if r.matches(reading)])
        return found if found[0] else self._implicit_rule(reading)


class KnownAnswers(RuleSet):
    """A matcher that knows every key's rules beforehand (never a miss): what the
    evaluation of the matched rules costs without any matching."""

    def __init__(self, rules: Iterable[Rule], keys: Iterable[Reading]) -> None:
        super().__init__(rules)
        self._known = {
            (r.device_id, r.sensor_id, r.type, r.location): RuleSet.matches_for(self, r)
            for r in keys
        }

    def matches_for(self, reading: Reading) -> Matches:
        return self._known[(reading.device_id, reading.sensor_id, reading.type, reading.location)]


# --- the plant ---------------------------------------------------------------------


def device_id(number: int) -> str:
    return f"line{number % LINES}-pump-{number:05d}"


def fleet(devices: int) -> list[list[Reading]]:
    """Each pump's 10 readings (one message), quiet values."""
    sensors = [(f"{TYPES[k % 4]}-{k}", TYPES[k % 4]) for k in range(SENSORS_PER_DEVICE)]
    return [
        [
            Reading(
                device_id(n),
                sensor,
                QUIET[kind] + (n % 7) * 0.1,
                START_MS,
                type=kind,
                location=f"line-{n % LINES}",
            )
            for sensor, kind in sensors
        ]
        for n in range(devices)
    ]


def _levels(kind: str, offset: float = 0.0) -> tuple[Side, ...]:
    return (Side("above", LEVELS[kind] + offset, LEVELS[kind] * 1.2 + offset),)


def plant_rules(count: int) -> list[Rule]:
    """`count` rules: by type, by line, by pump group (prefix globs), by pump."""
    rules = [
        Rule("temperature-high", _levels("temperature"), match=(("type", "temperature"),)),
        Rule(
            "temperature-freezing",
            (Side("below", 3.0, 0.0),),
            match=(("type", "temperature"), ("location", "outdoor*")),
        ),
        Rule("pressure-range", _levels("pressure"), match=(("type", "pressure"),)),
        Rule("vibration-high", _levels("vibration"), match=(("type", "vibration"),)),
        Rule("humidity-range", _levels("humidity"), match=(("type", "humidity"),)),
    ]
    rules.extend(
        Rule(
            f"line-{line}-{kind}",
            _levels(kind, 1.0),
            match=(("type", kind), ("location", f"line-{line}")),
        )
        for line in range(LINES)
        for kind in TYPES
    )
    left = count - len(rules)
    groups = min(max(left // 10, 0), RULES_FLEET // GROUP)
    for group in range(groups):
        first = device_id(group * GROUP)
        rules.append(
            Rule(
                f"group-{group:04d}",
                _levels("vibration", 0.5),
                match=(("deviceId", first[:-1] + "*"), ("type", "vibration")),
            )
        )
    number = 0
    while len(rules) < count:
        kind = TYPES[number % 4]
        pump = device_id(number // 4)
        rules.append(
            Rule(
                f"{pump}-{kind}",
                _levels(kind, 2.0),
                match=(("deviceId", pump), ("type", kind)),
            )
        )
        number += 1
    return rules[:count]


ANY_TYPE: Final = (Side("above", 90.0, 110.0),)
"""Levels for rules matching every type, above every quiet value."""


def _pump_levels(pump: str) -> list[Rule]:
    return [
        Rule(f"{pump}-{kind}", _levels(kind, 2.0), match=(("deviceId", pump), ("type", kind)))
        for kind in TYPES
    ]


def handful_rules(count: int) -> list[Rule]:
    """`count` rules of which a reading matches about 3 at every count (like for
    like): its type's, its line's, its pump's (finer as rules are added).

    5 rules: three by `type` (temperature, pressure, and `[hv]*` for vibration
    and humidity), one by `location` glob (`line-*`), one by `deviceId` prefix
    glob (`line*`): 3 a reading.
    From 100 rules: the 5 shipped by `type`, 48 by line and type, then a
    `deviceId` layer that matches each pump once: a prefix glob per line
    (`line3-pump-*`, 12) while the rules are too few for groups; else a prefix
    glob per group of a line's pumps in a block of 100 (`line3-pump-012*`, 300
    over the 2,500 pumps), each group replaced by its pumps' own levels
    (`deviceId` and `type`, exact: 4 a pump) while the count allows. Rules left
    over are the next pumps' own levels (a few readings then match 4)."""
    if count < len(plant_rules(53)) + LINES:
        five = [
            plant_rules(5)[0],
            plant_rules(5)[2],
            Rule("vibration-humidity", ANY_TYPE, match=(("type", "[hv]*"),)),
            Rule("line-levels", ANY_TYPE, match=(("location", "line-*"),)),
            Rule("pump-levels", ANY_TYPE, match=(("deviceId", "line*"),)),
        ]
        return five[:count]
    rules = plant_rules(53)
    pumps = [device_id(n) for n in range(RULES_FLEET)]
    groups: dict[str, list[str]] = {}
    for pump in pumps:
        groups.setdefault(pump[: pump.index("-pump-") + 9], []).append(pump)
    left = count - len(rules)
    owned: list[str] = []
    if left < len(groups):
        rules += [
            Rule(f"line{line}-pumps", ANY_TYPE, match=(("deviceId", f"line{line}-pump-*"),))
            for line in range(LINES)
        ]
    else:
        globbed = list(groups)
        for prefix, members in groups.items():
            if left - len(globbed) - len(TYPES) * len(owned) < len(TYPES) * len(members) - 1:
                break
            globbed.remove(prefix)
            owned += members
        rules += [
            Rule(f"group-{prefix}", ANY_TYPE, match=(("deviceId", prefix + "*"),))
            for prefix in globbed
        ]
    rules += [rule for pump in owned for rule in _pump_levels(pump)]
    mine = set(owned)
    extra = iter([pump for pump in pumps if pump not in mine])
    while len(rules) < count:
        rules += _pump_levels(next(extra))
    return rules[:count]


def rule_file(rules: Sequence[Rule]) -> str:
    """The rules as a YAML rule file."""
    specs = []
    for rule in rules:
        spec: dict[str, Any] = {"name": rule.name, "match": dict(rule.match)}
        for side in rule.sides:
            levels = {"warning": side.warning, "critical": side.critical}
            spec[side.name] = {k: v for k, v in levels.items() if v is not None}
        specs.append(spec)
    return yaml.safe_dump({"rules": specs}, sort_keys=False)


# --- measuring ---------------------------------------------------------------------


def _best(repeats: int, prepare: Callable[[], Any], step: Callable[[Any], object]) -> float:
    """Least CPU seconds of `step(prepare())` over `repeats` runs (prepare untimed)."""
    times = []
    for _ in range(repeats):
        subject = prepare()
        gc.collect()
        gc.disable()  # as the handler and backtest run (telemetry.collector)
        began = time.process_time()
        step(subject)
        times.append(time.process_time() - began)
        gc.enable()
    return min(times)


def _evaluate_all(rules: RuleSet, messages: Sequence[list[Reading]]) -> None:
    for readings in messages:
        evaluate(readings, {}, rules)


def _passes(rule_set: RuleSet, messages: Sequence[list[Reading]], passes: int) -> list[float]:
    """CPU seconds of each pass of `evaluate` over the fleet, the collector off."""
    times = []
    gc.collect()
    gc.disable()  # as the handler and backtest run (telemetry.collector)
    try:
        for _ in range(passes):
            began = time.process_time()
            _evaluate_all(rule_set, messages)
            times.append(time.process_time() - began)
    finally:
        gc.enable()
    return times


def _run(
    make: Callable[[], RuleSet], messages: Sequence[list[Reading]], repeats: int
) -> dict[str, float]:
    """Microseconds per reading: the first pass (every key new), and the run of
    RUN_PASSES passes from a fresh rule set (best of `repeats` each)."""
    readings = len(messages) * SENSORS_PER_DEVICE
    best = [
        min(pass_)
        for pass_ in zip(
            *(_passes(make(), messages, RUN_PASSES) for _ in range(repeats)), strict=True
        )
    ]
    return {
        "new_keys_us": 1e6 * best[0] / readings,
        "run_us": 1e6 * sum(best) / (readings * RUN_PASSES),
    }


WORKLOADS: Final = {"handful": handful_rules, "layered": plant_rules}
"""Rule sets by count: "handful" matches about 3 rules a reading at every count
(like for like); "layered" (the measure before it) adds layers as rules grow,
1 rule a reading at 5 rules, 3 at 10,000."""


def rules_curve(repeats: int, counts: Sequence[int] = RULE_COUNTS) -> dict[str, Any]:
    messages = fleet(RULES_FLEET)
    today_messages = messages[:TODAY_FLEET]
    every = [r for m in messages for r in m]
    out: dict[str, Any] = {}
    for count in counts:
        row: dict[str, Any] = {"rules": count}
        for name, make in WORKLOADS.items():
            rules = make(count)
            check = RuleSet(rules)
            matches = [len(check.for_reading(r)) for r in every]
            ours = _run(lambda rules=rules: RuleSet(rules), messages, repeats)
            known = min(_passes(KnownAnswers(rules, every), messages, 1)[0] for _ in range(repeats))
            row[name] = {
                "matches_per_reading": sum(matches) / len(matches),
                "tested_always": sum(len(p) for p in check._index.tested_always().values()),
                "run_us": ours["run_us"],
                "new_keys_us": ours["new_keys_us"],
                "known_answers_us": 1e6 * known / len(every),
            }
        rules = handful_rules(count)
        today = _run(
            lambda rules=rules: LinearRuleSet(rules),
            today_messages,
            repeats if count < 1_000 else 1,
        )
        row["handful"]["linear_run_us"] = today["run_us"]
        row["handful"]["linear_new_keys_us"] = today["new_keys_us"]
        out[str(count)] = row
    return out


class SmallMemos(RuleSet):
    """The rule set with per-value memos of `SMALL_GENERATION` values (two
    generations): 65,000 pumps are then ten generations, five times all they
    hold, as 650,000 keys were for the per-key cache it replaced."""

    _MEMO_GENERATION = SMALL_GENERATION


def _steady_cost(
    make: Callable[[], RuleSet],
    messages: Sequence[list[Reading]],
    measured: int,
    repeats: int,
) -> float:
    """Microseconds per reading of `measured` readings, the fleet read over and
    over, once a pass over every key was made (not measured)."""
    cycle = [messages[i % len(messages)] for i in range(measured // SENSORS_PER_DEVICE)]

    def warmed() -> RuleSet:
        rule_set = make()
        _evaluate_all(rule_set, messages)
        return rule_set

    return 1e6 / measured * _best(repeats, warmed, lambda s: _evaluate_all(s, cycle))


def keys_curve(
    repeats: int, counts: Sequence[int] = KEY_COUNTS, measured: int = KEYS_MEASURED
) -> dict[str, Any]:
    rules = handful_rules(KEYS_RULES)
    out: dict[str, Any] = {}
    for keys in counts:
        messages = fleet(keys // SENSORS_PER_DEVICE)
        every = [r for m in messages for r in m]
        row = {
            "keys": keys,
            "ours_evaluate_us": _steady_cost(lambda: RuleSet(rules), messages, measured, repeats),
            "small_memos_us": _steady_cost(lambda: SmallMemos(rules), messages, measured, repeats),
            "known_answers_us": _steady_cost(
                lambda every=every: KnownAnswers(rules, every), messages, measured, repeats
            ),
            "today_evaluate_us": _steady_cost(lambda: LinearRuleSet(rules), messages, measured, 1),
        }
        del every
        out[str(keys)] = row
    return out


def memory_per_key(counts: Sequence[int] = MEMORY_KEYS) -> dict[str, Any]:
    """Bytes a rule set holds per key met, once its readings are dropped: the
    index's per-value classes (their strings), profiles and answers."""
    out: dict[str, Any] = {}
    for keys in counts:
        rules = RuleSet(handful_rules(KEYS_RULES))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        messages = fleet(keys // SENSORS_PER_DEVICE)
        _evaluate_all(rules, messages)
        del messages
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        out[str(keys)] = {"keys": keys, "bytes_per_key": (after - before) / keys}
    return out


def loading(repeats: int, count: int = 10_000) -> dict[str, float]:
    rules = handful_rules(count)
    built = _best(repeats, lambda: rules, RuleSet)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "plant.yaml"
        path.write_text(rule_file(rules), encoding="utf-8")
        loaded = _best(max(1, repeats // 2), lambda: path, load_rules)
        if len(load_rules(path)) != count:
            raise RuntimeError("the rule file lost rules")
    return {"rules": count, "ruleset_ms": built * 1e3, "load_rules_ms": loaded * 1e3}


COLD: Final = (
    "import os; import telemetry.handler as h; from telemetry.settings import Settings; "
    "h.build_runtime(Settings.from_env(os.environ))"
)


def cold_start(repeats: int) -> dict[str, float]:
    """Median CPU milliseconds of a process building the handler's runtime: 5 and
    10,000 rules, from YAML and compiled."""
    with tempfile.TemporaryDirectory() as scratch:
        cases = {}
        for count in (5, 10_000):
            for form in ("yaml", "compiled"):
                folder = Path(scratch) / f"rules-{count}-{form}"
                folder.mkdir()
                rules = rule_file(handful_rules(count))
                (folder / "plant.yaml").write_text(rules, encoding="utf-8")
                if form == "compiled":
                    write_compiled(folder)
                env = {**function_environment(), "RULES_PATH": str(folder)}
                cases[f"{count}-{form}"] = lambda env=env: measure(["-c", COLD], env=env, cwd=ROOT)
        samples = interleaved(cases, repeats)
    return {name: s.median() * 1e3 for name, s in samples.items()}


def run(repeats: int = REPEATS, cold_repeats: int = COLD_REPEATS) -> dict[str, Any]:
    return {
        "rules": rules_curve(repeats),
        "keys": keys_curve(repeats),
        "memory": memory_per_key(),
        "loading": loading(repeats * 2),
        "cold_start_ms": cold_start(cold_repeats),
    }


def _rules_report(curve: Mapping[str, Any]) -> None:
    print(
        f"rules: {RULES_FLEET:,} pumps x {SENSORS_PER_DEVICE} sensors, `evaluate` one pump's "
        f"message at a time, the collector off; CPU microseconds per reading. A run: "
        f"{RUN_PASSES} passes from a fresh rule set (a key is new in the first); the linear "
        f"matcher on the first {TODAY_FLEET} pumps. Like for like: about 3 rules matched a "
        "reading at every count (handful_rules)"
    )
    print(
        table(
            [
                "rules",
                "matched/reading",
                "run",
                "every key new",
                "answers known",
                "linear: run",
                "linear: every key new",
            ],
            [
                [
                    f"{row['rules']:,}",
                    f"{row['handful']['matches_per_reading']:.2f}",
                    f"{row['handful']['run_us']:.2f}",
                    f"{row['handful']['new_keys_us']:.2f}",
                    f"{row['handful']['known_answers_us']:.2f}",
                    f"{row['handful']['linear_run_us']:.2f}",
                    f"{row['handful']['linear_new_keys_us']:.2f}",
                ]
                for row in curve.values()
            ],
        )
    )
    first, last = curve[str(RULE_COUNTS[0])]["handful"], curve[str(RULE_COUNTS[-1])]["handful"]
    run_ratio = ratio(last["run_us"], first["run_us"])
    new_ratio = ratio(last["new_keys_us"], first["new_keys_us"])
    known = ratio(last["known_answers_us"], first["known_answers_us"])
    print(
        f"10,000 rules / 5 rules, like for like: a run {run_ratio:.2f}x, target <= "
        f"{TARGET_RATIO}x: {verdict(run_ratio <= TARGET_RATIO)}; every key new {new_ratio:.2f}x "
        f"({verdict(new_ratio <= TARGET_RATIO)}); answers known {known:.2f}x; linear "
        f"{ratio(last['linear_run_us'], first['linear_run_us']):.0f}x and "
        f"{ratio(last['linear_new_keys_us'], first['linear_new_keys_us']):.0f}x"
    )
    print()
    print(
        "the measure before (layered: the 5-rule set matches 1 rule a reading, 10,000 "
        "rules 3; not like for like)"
    )
    print(
        table(
            ["rules", "matched/reading", "run", "every key new", "answers known"],
            [
                [
                    f"{row['rules']:,}",
                    f"{row['layered']['matches_per_reading']:.2f}",
                    f"{row['layered']['run_us']:.2f}",
                    f"{row['layered']['new_keys_us']:.2f}",
                    f"{row['layered']['known_answers_us']:.2f}",
                ]
                for row in curve.values()
            ],
        )
    )
    first, last = curve[str(RULE_COUNTS[0])]["layered"], curve[str(RULE_COUNTS[-1])]["layered"]
    print(
        f"10,000 rules / 5 rules, layered: a run "
        f"{ratio(last['run_us'], first['run_us']):.2f}x, every key new "
        f"{ratio(last['new_keys_us'], first['new_keys_us']):.2f}x, answers known "
        f"{ratio(last['known_answers_us'], first['known_answers_us']):.2f}x (the evaluation "
        f"of {last['matches_per_reading']:.0f} matched rules instead of "
        f"{first['matches_per_reading']:.0f})"
    )


def _keys_report(keys: Mapping[str, Any], memory: Mapping[str, Any]) -> None:
    print(
        f"keys: {KEYS_RULES} rules (like for like), the fleet read over and over, "
        f"{KEYS_MEASURED:,} readings measured after a pass over every key; CPU microseconds "
        f"per reading. Small memos: per-value memos of {SMALL_GENERATION:,} values a "
        "generation (65,000 pumps are 10 generations)"
    )
    print(
        table(
            ["keys", "ours", "ours, small memos", "answers known", "linear"],
            [
                [
                    f"{row['keys']:,}",
                    f"{row['ours_evaluate_us']:.2f}",
                    f"{row['small_memos_us']:.2f}",
                    f"{row['known_answers_us']:.2f}",
                    f"{row['today_evaluate_us']:.2f}",
                ]
                for row in keys.values()
            ],
        )
    )
    beyond = keys[str(KEY_COUNTS[-1])]
    for below in KEY_COUNTS[:-1]:
        under = keys[str(below)]
        keys_ratio = ratio(beyond["ours_evaluate_us"], under["ours_evaluate_us"])
        small = ratio(beyond["small_memos_us"], under["small_memos_us"])
        print(
            f"{KEY_COUNTS[-1]:,} keys / {below:,}: {keys_ratio:.2f}x, small memos "
            f"{small:.2f}x, answers known "
            f"{ratio(beyond['known_answers_us'], under['known_answers_us']):.2f}x, linear "
            f"{ratio(beyond['today_evaluate_us'], under['today_evaluate_us']):.1f}x; target <= "
            f"{TARGET_RATIO}x: {verdict(keys_ratio <= TARGET_RATIO and small <= TARGET_RATIO)}"
        )
    print(
        "memory: "
        + "; ".join(
            f"{row['bytes_per_key']:.1f} bytes per key over {row['keys']:,} keys"
            for row in memory.values()
        )
        + f" (bounded: at most {2 * CACHE_GENERATION:,} values per match key are remembered)"
    )


def report(numbers: Mapping[str, Any]) -> None:
    _rules_report(numbers["rules"])
    print()
    _keys_report(numbers["keys"], numbers["memory"])
    print()
    load = numbers["loading"]
    print(
        f"loading {load['rules']:,} rules: RuleSet from compiled rules {load['ruleset_ms']:.1f} ms "
        f"({verdict(load['ruleset_ms'] <= TARGET_LOAD_MS)}); load_rules of a YAML file "
        f"{load['load_rules_ms']:.0f} ms ({verdict(load['load_rules_ms'] <= TARGET_LOAD_MS)}); "
        f"target <= {TARGET_LOAD_MS:.0f} ms"
    )
    cold = numbers["cold_start_ms"]
    for form, how in (("compiled", "compiled as the build ships them"), ("yaml", "from YAML")):
        few, many = cold[f"5-{form}"], cold[f"10000-{form}"]
        print(
            f"cold start (import + build_runtime, whole process, median CPU), rules {how}: "
            f"5 rules {few:.0f} ms, 10,000 rules {many:.0f} ms (+{many - few:.0f} ms)"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--cold-repeats", type=int, default=COLD_REPEATS)
    args = parser.parse_args(argv)
    report(run(args.repeats, args.cold_repeats))


if __name__ == "__main__":
    main()
