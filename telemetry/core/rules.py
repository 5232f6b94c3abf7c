"""Threshold rules in the form the evaluator uses, and how a cold start gets them.

A rule file is `{"rules": [...]}`, and may list `gateways` (devices whose loss
explains their members' silence) and set `notifications` (the alarm load
operators accept: a budget per group, digests, flapping); `RULES_PATH` names
one file or a directory of `*.yaml`. `Rule`, `Gateway`, `Notifications` and
`RuleSet` are the checked, compiled forms. Checking a file as operators write
it (YAML, pydantic models, problems in their words, the JSON Schema) lives in
`telemetry.core.rule_specs`; its names are importable from here too, loaded on
first use: a cold start whose build compiled the rules (`COMPILED_NAME`, beside
the YAML it stands for) reads that instead and imports neither YAML nor pydantic.
"""

# ruff: noqa: PLC0414 - `X as X`: the names rule_specs lends are re-exported

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from telemetry.core.conditions import Condition, condition_from_json
from telemetry.core.immutable import immutable
from telemetry.core.maintenance import NO_MAINTENANCE, Maintenance, Window
from telemetry.core.messages import Reading
from telemetry.core.rule_index import CACHE_GENERATION, MatchKey, RuleIndex, compiled_glob

if TYPE_CHECKING:  # the names __getattr__ lends, as mypy should see them
    from telemetry.core.rule_specs import DURATION_PATTERN as DURATION_PATTERN
    from telemetry.core.rule_specs import FlappingSpec as FlappingSpec
    from telemetry.core.rule_specs import GatewaySpec as GatewaySpec
    from telemetry.core.rule_specs import LevelsSpec as LevelsSpec
    from telemetry.core.rule_specs import MatchSpec as MatchSpec
    from telemetry.core.rule_specs import MembersSpec as MembersSpec
    from telemetry.core.rule_specs import NotificationsSpec as NotificationsSpec
    from telemetry.core.rule_specs import RuleDocument as RuleDocument
    from telemetry.core.rule_specs import RuleFileSpec as RuleFileSpec
    from telemetry.core.rule_specs import RuleSpec as RuleSpec
    from telemetry.core.rule_specs import compile_gateway as compile_gateway
    from telemetry.core.rule_specs import compile_notifications as compile_notifications
    from telemetry.core.rule_specs import compile_rule as compile_rule
    from telemetry.core.rule_specs import flapping_problems as flapping_problems
    from telemetry.core.rule_specs import notifications_problems as notifications_problems
    from telemetry.core.rule_specs import parse_rule_document as parse_rule_document
    from telemetry.core.rule_specs import parse_rule_file as parse_rule_file
    from telemetry.core.rule_specs import rule_file_schema as rule_file_schema
    from telemetry.core.rule_specs import rule_problems as rule_problems

RULE_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
DEVICE_THRESHOLD_RULE: Final = "device-thresholds"
_DURATION: Final = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MATCH_KEYS: Final = ("deviceId", "sensorId", "type", "location")
NODATA_MIN_MS: Final = 60_000
NODATA_MAX_MS: Final = 7 * 86_400_000
REPEAT_MIN_MS: Final = 60_000
OFFLINE_MIN_MS: Final = 30_000
OFFLINE_MAX_MS: Final = 7 * 86_400_000
GROUP_FIELDS: Final = ("rule", "location", "type", "deviceId", "severity")
"""What a notification group may be keyed by: fields every transition carries."""
WINDOW_MIN_MS: Final = 60_000
WINDOW_MAX_MS: Final = 86_400_000
MAX_PER_WINDOW_MIN: Final = 1
MAX_PER_WINDOW_MAX: Final = 1_000
FLAP_CHANGES_MIN: Final = 2
FLAP_CHANGES_MAX: Final = 100
FILE_SECTIONS: Final = ("rules", "gateways", "notifications", "maintenance")
COMPILED_NAME: Final = ".compiled.json"
"""The compiled rule set the build writes into a rules directory, beside the
`*.yaml` it stands for (not itself a rule file: `rule_files` never lists it)."""
COMPILED_FORMAT: Final = 2
"""2: rules may carry a condition (rate, stuck, spike, range)."""

_SPEC_NAMES: Final = frozenset(
    {
        "DURATION_PATTERN",
        "FlappingSpec",
        "GatewaySpec",
        "LevelsSpec",
        "MatchSpec",
        "MembersSpec",
        "NotificationsSpec",
        "RuleDocument",
        "RuleFileSpec",
        "RuleSpec",
        "compile_gateway",
        "compile_notifications",
        "compile_rule",
        "flapping_problems",
        "notifications_problems",
        "parse_rule_document",
        "parse_rule_file",
        "rule_file_schema",
        "rule_problems",
    }
)
"""Names of `telemetry.core.rule_specs` also importable from here (PEP 562)."""


def __getattr__(name: str) -> Any:
    if name in _SPEC_NAMES:
        from telemetry.core import rule_specs  # noqa: PLC0415 - pydantic and YAML on first use

        return getattr(rule_specs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RuleFileError(ValueError):
    """A rule file is unusable. `problems` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class RulePathError(RuleFileError):
    """A path names no rule file to read: missing, not a regular file, an empty
    directory. `unusable` holds those problems; `problems` also those of the
    files that could be read."""

    def __init__(self, problems: Sequence[str], unusable: Sequence[str] | None = None) -> None:
        super().__init__(problems)
        self.unusable = list(problems if unusable is None else unusable)


@immutable
class Side:
    """The levels of one direction. `sign` is +1 above, -1 below: evaluation
    multiplies values and levels by it so that both sides read as "above"."""

    name: Literal["above", "below"]
    warning: float | None
    critical: float | None
    sign: float = field(init=False)
    trigger: float = field(init=False, repr=False, compare=False)
    """The least of its levels times `sign`: a value (times `sign`) past it breaches one."""
    warning_at: float | None = field(init=False, repr=False, compare=False)
    """`warning` times `sign`, as the alarm compares it (None: no warning level)."""
    critical_at: float | None = field(init=False, repr=False, compare=False)
    warning_key: str = field(init=False, repr=False, compare=False)
    """The name of a streak towards its warning level (`above.warning`)."""
    critical_key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sign = 1.0 if self.name == "above" else -1.0
        warning = None if self.warning is None else self.warning * sign
        critical = None if self.critical is None else self.critical * sign
        levels = [level for level in (warning, critical) if level is not None]
        object.__setattr__(self, "sign", sign)
        object.__setattr__(self, "trigger", min(levels, default=math.inf))
        object.__setattr__(self, "warning_at", warning)
        object.__setattr__(self, "critical_at", critical)
        object.__setattr__(self, "warning_key", f"{self.name}.warning")
        object.__setattr__(self, "critical_key", f"{self.name}.critical")


@immutable
class Flapping:
    """A key whose changes of level within `within_ms` reach `changes` is flapping."""

    changes: int
    within_ms: int


@immutable
class Gateway:
    """A device (`device_id`) whose loss explains its members' silence: while it
    is down, its members' offline and no-data alerts are inhibited. `members`
    are deviceId globs; the gateway is never its own member."""

    device_id: str
    members: tuple[str, ...]

    def has_member(self, device_id: str) -> bool:
        return device_id != self.device_id and any(
            compiled_glob(pattern).match(device_id) for pattern in self.members
        )


@immutable
class Notifications:
    """The alarm load operators accept: per group of transitions (keyed by
    `group_by`, transition fields), at most `max_per_window` published one by
    one in any `window_ms` (arrival time); the rest are held and sent as a
    digest at most `digest_every_ms` after the first held one. `flapping` is the
    default for rules that set none."""

    group_by: tuple[str, ...] = ()
    window_ms: int = 600_000
    max_per_window: int = 5
    digest_every_ms: int = 120_000
    flapping: Flapping | None = None


DEFAULT_NOTIFICATIONS: Final = Notifications()
"""What a rule file that says nothing of `notifications` gets: with it, a group
never sends more than 10 messages (5 alone, 5 digests) in any 10 minutes."""


@immutable
class Rule:
    """A checked rule, ready for evaluation.

    `for_readings` and `for_ms` say how long a breach must last before a level
    is reached: `for_readings` consecutive readings, or (when `for_ms` is set)
    a breach held for that long in reading time. `nodata_ms`, when set, is how
    long a matched sensor may stay silent (in arrival time) before a no-data
    alert of `nodata_severity`. `repeat_ms` is how often operators are
    reminded of an active alert nobody acknowledged; `latch` keeps an alert
    whose value came back LATCHED until an operator resets it. `offline_ms`,
    when set, is how long a matched device may stay disconnected before one
    device-level offline alert of `offline_severity` (matched by deviceId
    alone). `flapping` is the rule's own chattering suppression.

    `condition`, when set (telemetry.core.conditions: rate, stuck, spike,
    range), is what the rule measures instead of the reading's value; `sides`
    are then levels of that measure, and every reading is evaluated (no quiet
    band).
    """

    name: str
    sides: tuple[Side, ...]
    hysteresis: float = 0.0
    for_readings: int = 1
    for_ms: int | None = None
    match: tuple[tuple[str, str], ...] = ()
    nodata_ms: int | None = None
    nodata_severity: Literal["WARNING", "CRITICAL"] = "WARNING"
    repeat_ms: int | None = None
    latch: bool = False
    offline_ms: int | None = None
    offline_severity: Literal["WARNING", "CRITICAL"] = "WARNING"
    flapping: Flapping | None = None
    condition: Condition | None = None
    quiet_low: float = field(init=False)
    quiet_high: float = field(init=False)
    level_low: float = field(init=False)
    level_high: float = field(init=False)

    def __post_init__(self) -> None:
        # Levels in [level_low, level_high] breach nothing; readings whose value is in
        # [quiet_low, quiet_high] change nothing on a quiet key: the evaluator's fast path.
        above = [lv for s in self.sides if s.name == "above" for lv in (s.warning, s.critical)]
        below = [lv for s in self.sides if s.name == "below" for lv in (s.warning, s.critical)]
        high = min((lv for lv in above if lv is not None), default=math.inf)
        low = max((lv for lv in below if lv is not None), default=-math.inf)
        object.__setattr__(self, "level_high", high)
        object.__setattr__(self, "level_low", low)
        condition = self.condition
        if condition is not None:
            # A range keeps nothing: a reading inside it is quiet. Other conditions
            # keep a memo that every reading updates: no quiet band.
            bounds = condition.quiet_band()
            low, high = bounds if bounds is not None else (math.inf, -math.inf)
        object.__setattr__(self, "quiet_high", high)
        object.__setattr__(self, "quiet_low", low)

    def breaches(self, level: float) -> bool:
        """Whether `level` (a value, or what the rule's condition measured) is past
        any level of this rule."""
        return level > self.level_high or level < self.level_low

    def watches_device(self, device_id: str) -> bool:
        """Whether this rule's offline alert applies to the device: `offline` set
        and the deviceId glob (if any) matching; other match keys judge readings."""
        if self.offline_ms is None:
            return False
        return all(compiled_glob(p).match(device_id) for k, p in self.match if k == "deviceId")

    def matches(self, reading: Reading) -> bool:
        for key, pattern in self.match:
            value = _match_value(reading, key)
            if value is None or not compiled_glob(pattern).match(value):
                return False
        return True


def _match_value(reading: Reading, key: str) -> str | None:
    if key == "deviceId":
        return reading.device_id
    if key == "sensorId":
        return reading.sensor_id
    if key == "type":
        return reading.type
    return reading.location


def parse_duration_ms(text: str) -> int:
    """Milliseconds in a duration such as `90s`, `5m` or `1h30m`."""
    compact = text.replace(" ", "")
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration such as 90s, 5m or 1h30m")
    total = sum(int(n) * _UNIT_MS[u] for n, u in parts)
    if total <= 0:
        raise ValueError("a duration must be longer than zero")
    return total


def rule_files(path: Path) -> list[Path]:
    """The files a RULES_PATH names: itself, or the sorted *.yaml/*.yml in it."""
    if not str(path):
        raise RulePathError(["(empty path): name a rule file or a directory of *.yaml"])
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            raise RulePathError([f"{path}: no *.yaml rule files in this directory"])
        return files
    if not path.exists():
        raise RulePathError([f"{path}: no such rule file or directory"])
    if not path.is_file():
        raise RulePathError([f"{path}: not a regular file or a directory"])
    return [path]


def load_rules(paths: Path | Sequence[Path], *, digest: str | None = None) -> RuleSet:
    """Load, check and compile every rule under `paths` (a RULES_PATH, or several
    checked as one set), reporting all problems. RulePathError when a path
    names no file to read, RuleFileError when a file read is not valid. The
    set's `notifications` come from the one file that sets them (two files
    setting them is an error), else the defaults.

    A directory holding a compiled set (`COMPILED_NAME`) whose digest is that of
    its rule files' names and bytes as they are now is read from it, without
    parsing YAML; any other compiled file (stale, altered, unreadable) is
    ignored and the files are parsed. `digest`: the `sources_digest` of the rule
    files of `paths` (one path), when the caller has it; they are not read
    again for it, and it is the set's version."""
    if isinstance(paths, Path):
        compiled = _compiled_rules(paths, digest)
        if compiled is not None:
            return compiled
    from telemetry.core.rule_specs import load_rule_set  # noqa: PLC0415 - pydantic, YAML

    rules = load_rule_set(paths)
    if digest is not None and isinstance(paths, Path):
        rules.version = f"sha256:{digest}"
    else:
        rules.version = files_version([paths] if isinstance(paths, Path) else paths)
    return rules


def files_version(paths: Sequence[Path]) -> str | None:
    """The `rulesVersion` of the rule files under `paths`: `sha256:` and their
    `sources_digest` (None when one cannot be read)."""
    try:
        files = list(dict.fromkeys(f for path in paths for f in rule_files(path)))
        return f"sha256:{sources_digest(files)}"
    except (OSError, RuleFileError):
        return None


def _compiled_rules(directory: Path, digest: str | None) -> RuleSet | None:
    try:
        text = (directory / COMPILED_NAME).read_text(encoding="utf-8")
        if digest is None:
            digest = sources_digest(rule_files(directory))
    except (OSError, UnicodeDecodeError, RuleFileError):
        return None
    rules = compiled_rule_set(text, digest)
    if rules is not None:
        rules.version = f"sha256:{digest}"
    return rules


def sources_digest(files: Sequence[Path]) -> str:
    """SHA-256 of the rule files a compiled set stands for: each file's name
    and bytes, length-prefixed, in order. OSError when one cannot be read."""
    digest = hashlib.sha256()
    for file in files:
        name = file.name.encode("utf-8", "surrogateescape")
        data = file.read_bytes()
        digest.update(len(name).to_bytes(8, "big") + name + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def compiled_rules_text(rules: RuleSet, sources: str) -> str:
    """The compiled file of a rule set: a header line (format, the digest of the
    rule files it stands for, the digest of the payload) and the payload line."""
    payload = json.dumps(rule_set_to_json(rules), separators=(",", ":"), allow_nan=False)
    header = {
        "format": COMPILED_FORMAT,
        "sources": sources,
        "payload": hashlib.sha256(payload.encode("utf-8")).hexdigest(),
    }
    return json.dumps(header) + "\n" + payload + "\n"


def compiled_rule_set(text: str, sources: str) -> RuleSet | None:
    """The rule set a compiled file holds, when it is of this format, stands for
    rule files of digest `sources` and its payload is intact; else None."""
    header, _, payload = text.partition("\n")
    payload = payload.removesuffix("\n")
    expected = {
        "format": COMPILED_FORMAT,
        "sources": sources,
        "payload": hashlib.sha256(payload.encode("utf-8")).hexdigest(),
    }
    try:
        if json.loads(header) != expected:
            return None
        return rule_set_from_json(json.loads(payload))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def rule_set_to_json(rules: RuleSet) -> dict[str, Any]:
    """A rule set as plain JSON values (floats kept exactly: JSON numbers by repr)."""
    notifications = rules.notifications
    return {
        "rules": [_rule_to_json(rule) for rule in rules.rules],
        "gateways": [[g.device_id, list(g.members)] for g in rules.gateways],
        "notifications": None
        if notifications is None
        else [
            list(notifications.group_by),
            notifications.window_ms,
            notifications.max_per_window,
            notifications.digest_every_ms,
            _flapping_to_json(notifications.flapping),
        ],
    } | ({"maintenance": [_window_to_json(w) for w in rules.maintenance.windows]}
         if rules.maintenance else {})  # fmt: skip


def _window_to_json(window: Window) -> list[Any]:
    return [
        window.name,
        [list(pair) for pair in window.match],
        None if window.days is None else sorted(window.days),
        window.start_min,
        window.end_min,
        window.timezone,
        window.from_ms,
        window.to_ms,
    ]


def _window_from_json(data: list[Any]) -> Window:
    name, match, days, start, end, timezone, from_ms, to_ms = data
    return Window(
        name,
        tuple((key, pattern) for key, pattern in match),
        None if days is None else frozenset(days),
        start,
        end,
        timezone,
        from_ms,
        to_ms,
    )


def rule_set_from_json(data: dict[str, Any]) -> RuleSet:
    """The rule set `rule_set_to_json` made those values of: equal to it."""
    notifications = data["notifications"]
    return RuleSet(
        [_rule_from_json(rule) for rule in data["rules"]],
        gateways=[Gateway(device_id, tuple(members)) for device_id, members in data["gateways"]],
        notifications=None
        if notifications is None
        else Notifications(
            group_by=tuple(notifications[0]),
            window_ms=notifications[1],
            max_per_window=notifications[2],
            digest_every_ms=notifications[3],
            flapping=_flapping_from_json(notifications[4]),
        ),
        maintenance=Maintenance(_window_from_json(w) for w in data.get("maintenance", ())),
    )


def _flapping_to_json(flapping: Flapping | None) -> list[int] | None:
    return None if flapping is None else [flapping.changes, flapping.within_ms]


def _flapping_from_json(data: list[int] | None) -> Flapping | None:
    return None if data is None else Flapping(data[0], data[1])


def _rule_to_json(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "sides": [[side.name, side.warning, side.critical] for side in rule.sides],
        "hysteresis": rule.hysteresis,
        "for_readings": rule.for_readings,
        "for_ms": rule.for_ms,
        "match": [list(pair) for pair in rule.match],
        "nodata_ms": rule.nodata_ms,
        "nodata_severity": rule.nodata_severity,
        "repeat_ms": rule.repeat_ms,
        "latch": rule.latch,
        "offline_ms": rule.offline_ms,
        "offline_severity": rule.offline_severity,
        "flapping": _flapping_to_json(rule.flapping),
        "condition": None if rule.condition is None else rule.condition.to_json(),
    }


def _rule_from_json(data: dict[str, Any]) -> Rule:
    return Rule(
        name=data["name"],
        sides=tuple(Side(name, warning, critical) for name, warning, critical in data["sides"]),
        hysteresis=data["hysteresis"],
        for_readings=data["for_readings"],
        for_ms=data["for_ms"],
        match=tuple((key, pattern) for key, pattern in data["match"]),
        nodata_ms=data["nodata_ms"],
        nodata_severity=data["nodata_severity"],
        repeat_ms=data["repeat_ms"],
        latch=data["latch"],
        offline_ms=data["offline_ms"],
        offline_severity=data["offline_severity"],
        flapping=_flapping_from_json(data["flapping"]),
        condition=None if data["condition"] is None else condition_from_json(data["condition"]),
    )


Matches = tuple[tuple[Rule, ...], float, float, bool]
"""The rules a reading matches, in rule order, and what the evaluator may decide
from them at once for a sensor that holds no alert state: a value in [low,
high] (where every one of them is quiet) changes nothing, unless arrival is
recorded and the last is true (one of them has `nodata`). A plain tuple, read
in one unpacking: made for every key's first reading, read on every reading."""


def matches(rules: Sequence[Rule]) -> Matches:
    """The rules, with their quiet band and whether one tracks arrival."""
    return joined(NO_MATCH, tuple(rules))


def joined(shared: Matches, own: tuple[Rule, ...]) -> Matches:
    """`matches(shared's rules + own)`, the band worked out from `shared`'s and
    `own`'s rules only: a device's own levels added to what it shares with its
    line."""
    rules, low, high, tracks = shared
    # One loop of comparisons (no call per rule): a key's first reading makes one.
    for rule in own:
        if rule.quiet_low > low:  # noqa: PLR1730
            low = rule.quiet_low
        if rule.quiet_high < high:  # noqa: PLR1730
            high = rule.quiet_high
        if rule.nodata_ms is not None:
            tracks = True
    return (rules + own if rules else own), low, high, tracks


NO_MATCH: Final[Matches] = ((), -math.inf, math.inf, False)
"""A reading only to be stored."""


class RuleSet:
    """The rules in force, and which of them apply to a reading.

    A reading is evaluated against every rule that matches it; a reading no
    rule matches, but that carries its own thresholds, gets an implicit
    `above` rule named `device-thresholds` built from them.
    """

    _CACHE_LIMIT: Final = 65_536
    _MEMO_GENERATION: int = CACHE_GENERATION
    """Values per generation of the index's memos of values' classes."""

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        gateways: Iterable[Gateway] = (),
        notifications: Notifications | None = None,
        maintenance: Maintenance = NO_MAINTENANCE,
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.maintenance = maintenance
        """The maintenance windows in force (telemetry.core.maintenance)."""
        self.gateways: tuple[Gateway, ...] = tuple(gateways)
        self.notifications = notifications
        """The notification policy in force; None (a set built in code without
        one) publishes every transition. `load_rules` always sets one."""
        self.version: str | None = None
        """Which rules these are, as every transition they decide says
        (`rulesVersion`): `load_rules` sets `sha256:` and the digest of the rule
        files (`sources_digest`); rules from AWS AppConfig carry the
        configuration version. None: a set built in code."""
        self.offline_rules: tuple[Rule, ...] = tuple(
            r for r in self.rules if r.offline_ms is not None
        )
        self.ranged: bool = any(
            r.condition is not None and r.condition.kind == "range" for r in self.rules
        )
        """Whether a rule has a `range`: only then does the evaluator look for
        readings to keep out of a sensor's other rules."""
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise RuleFileError(["rule names must be unique"])
        self._index = RuleIndex(self.rules, self._MEMO_GENERATION, bundle=matches, join=joined)
        # The last reading's deviceId and location, and their profile: the readings
        # of a message share them.
        self._device: str | None = None
        self._location: str | None = None
        self._profile = self._index.profile("", None)
        self._by_name = {r.name: r for r in self.rules}
        self._implicit: dict[tuple[float | None, float | None], Matches] = {}
        self._gateway_by_id = {g.device_id: g for g in self.gateways}
        # deviceId -> (the offline rules watching it, the gateways it sits behind):
        # asked on every commit, so matched once per device.
        self._device_links: dict[str, tuple[tuple[Rule, ...], tuple[Gateway, ...]]] = {}

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def matched(self) -> KeyedMatches:
        """(deviceId, sensorId, type, location) -> the rules that match (no
        implicit rule), read by key."""
        return KeyedMatches(self._index)

    def named(self, name: str) -> Rule | None:
        """The rule of that name in force, if any."""
        return self._by_name.get(name)

    def flapping_for(self, rule: Rule) -> Flapping | None:
        """The rule's own flapping setting, else the notifications' default."""
        if rule.flapping is not None:
            return rule.flapping
        return self.notifications.flapping if self.notifications is not None else None

    def _links(self, device_id: str) -> tuple[tuple[Rule, ...], tuple[Gateway, ...]]:
        found = self._device_links.get(device_id)
        if found is None:
            if len(self._device_links) >= self._CACHE_LIMIT:
                self._device_links.clear()
            found = self._device_links[device_id] = (
                tuple(r for r in self.offline_rules if r.watches_device(device_id)),
                tuple(g for g in self.gateways if g.has_member(device_id)),
            )
        return found

    def watching(self, device_id: str) -> tuple[Rule, ...]:
        """The rules whose offline alert applies to this device, in rule order."""
        if not self.offline_rules:
            return ()
        return self._links(device_id)[0]

    def gateways_of(self, device_id: str) -> tuple[Gateway, ...]:
        """The gateways this device sits behind."""
        if not self.gateways:
            return ()
        return self._links(device_id)[1]

    def gateway(self, device_id: str) -> Gateway | None:
        """The gateway entry of this device, if it is one."""
        return self._gateway_by_id.get(device_id)

    def for_reading(self, reading: Reading) -> tuple[Rule, ...]:
        """The rules that apply, in rule order; empty when the reading is only
        to be stored."""
        return self.matches_for(reading)[0]

    def matches_for(self, reading: Reading) -> Matches:
        """The rules that apply, with what the evaluator may decide from them
        at once (`Matches`).

        Nothing is kept per key: a reading of the last reading's device and
        location costs a lookup of its type in their profile (the index's), a
        reading of another device the classes of its deviceId and location."""
        device, location = reading.device_id, reading.location
        if device != self._device or location != self._location:
            self._profile = self._index.profile(device, location)
            self._device, self._location = device, location
        profile = self._profile
        found = profile.by_type.get(reading.type)
        if found is None:
            found = self._index.answer(profile, reading.sensor_id, reading.type)
        if found[0]:
            return found
        return self._implicit_rule(reading)

    def _implicit_rule(self, reading: Reading) -> Matches:
        w, c = reading.warning_threshold, reading.critical_threshold
        if (w is None and c is None) or reading.device_threshold_problem is not None:
            return NO_MATCH
        found = self._implicit.get((w, c))
        if found is None:
            if len(self._implicit) >= self._CACHE_LIMIT:
                self._implicit.clear()
            rule = Rule(DEVICE_THRESHOLD_RULE, (Side("above", w, c),))
            found = self._implicit[(w, c)] = matches((rule,))
        return found


class KeyedMatches:
    """The rules matching a reading key (deviceId, sensorId, type, location),
    no implicit rule, asked by key as of a mapping; nothing is stored per key."""

    def __init__(self, index: RuleIndex[Rule, Matches]) -> None:
        self._index = index

    def __getitem__(self, key: MatchKey) -> tuple[Rule, ...]:
        return self._index.matching(key)[0]

    def get(self, key: MatchKey) -> tuple[Rule, ...]:
        return self._index.matching(key)[0]
