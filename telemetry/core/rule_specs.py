"""Rule files as operators write them: YAML, checked by pydantic models.

The models here are a rule file's schema (and its JSON Schema, for editors);
loading checks everything a rule must satisfy for the alert state machine to
behave, reports each problem naming the file, the rule and the field, and
compiles what is sound into the evaluator's forms (`telemetry.core.rules`).
None of this runs at a deployed cold start when the build compiled the rules
(`write_compiled`): the function then reads the compiled set instead.

    python -m telemetry.core.rule_specs RULES_DIRECTORY   # what the build runs
"""

from __future__ import annotations

import copy
import itertools
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from telemetry.core.conditions import FAULT_LEVEL, Condition
from telemetry.core.conditions.rate import Rate
from telemetry.core.conditions.span import Range
from telemetry.core.conditions.spike import Spike
from telemetry.core.conditions.stuck import Stuck
from telemetry.core.immutable import immutable
from telemetry.core.maintenance import (
    DEFAULT_TIMEZONE,
    EVERY_FORMS,
    Maintenance,
    Window,
    WindowError,
    names_unique,
    parse_every,
    zone,
)
from telemetry.core.messages import THING_NAME_PATTERN, parse_time_ms
from telemetry.core.rules import (
    COMPILED_NAME,
    DEFAULT_NOTIFICATIONS,
    FILE_SECTIONS,
    FLAP_CHANGES_MAX,
    FLAP_CHANGES_MIN,
    MATCH_KEYS,
    MAX_PER_WINDOW_MAX,
    MAX_PER_WINDOW_MIN,
    NODATA_MAX_MS,
    NODATA_MIN_MS,
    OFFLINE_MAX_MS,
    OFFLINE_MIN_MS,
    REPEAT_MIN_MS,
    RULE_NAME_PATTERN,
    WINDOW_MAX_MS,
    WINDOW_MIN_MS,
    Flapping,
    Gateway,
    Notifications,
    Rule,
    RuleFileError,
    RulePathError,
    RuleSet,
    Side,
    compiled_rules_text,
    parse_duration_ms,
    rule_files,
    sources_digest,
)

Finite = Annotated[float, Field(allow_inf_nan=False)]


class LevelsSpec(BaseModel):
    """The warning and critical levels of one side (above or below)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    warning: Finite | None = None
    critical: Finite | None = None


class MatchSpec(BaseModel):
    """Which readings a rule applies to: shell-style globs, all given must match."""

    model_config = ConfigDict(extra="forbid", strict=True)

    deviceId: str | None = None  # noqa: N815 - the message's names
    sensorId: str | None = None  # noqa: N815
    type: str | None = None
    location: str | None = None


class FlappingSpec(BaseModel):
    """When a key's changes of level within `within` reach `changes`, it is
    flapping: one FLAPPING message, then nothing until it is stable again."""

    model_config = ConfigDict(extra="forbid", strict=True)

    changes: int = Field(description="Changes of level (2 to 100) that make a key flapping.")
    within: str = Field(description="The window they are counted in (a duration, 1m to 24h).")


class RateSpec(BaseModel):
    """Change per `per`, measured over the last `over` of readings (event time),
    with levels on it as on a value (signed: a fall is negative)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    above: LevelsSpec | None = Field(None, description="Breach when the rate > level.")
    below: LevelsSpec | None = Field(
        None, description="Breach when the rate < level (a fall: levels such as -2)."
    )
    per: str = Field("1m", description="The rate's unit of time (a duration such as 1m).")
    over: str = Field(
        "5m", description="The window the slope is fitted over (a duration, at least `per`)."
    )


class StuckSpec(BaseModel):
    """A sensor unchanged (within ±tolerance) for `for` of event time, with at
    least 3 readings in that span."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    for_: str = Field(alias="for", description="How long unchanged (a duration such as 30m).")
    tolerance: Finite = Field(0, description="How far a reading may move and still be the same.")


class SpikeSpec(BaseModel):
    """A reading that jumps from the previous one by more than `jump`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    jump: Finite = Field(description="The largest |value - previous value| that is no spike.")


class RangeSpec(BaseModel):
    """Values a working sensor can produce; outside, the sensor is faulty and
    the reading is kept out of the sensor's other rules."""

    model_config = ConfigDict(extra="forbid", strict=True)

    min: Finite | None = Field(None, description="The lowest possible value.")
    max: Finite | None = Field(None, description="The highest possible value.")


class RuleSpec(BaseModel):
    """One rule as an operator writes it."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: Annotated[str, StringConstraints(pattern=RULE_NAME_PATTERN)] = Field(
        description="Unique across all rule files; appears in alerts and the shadow."
    )
    description: str | None = None
    match: MatchSpec = Field(default_factory=MatchSpec)
    above: LevelsSpec | None = Field(None, description="Breach when value > level.")
    below: LevelsSpec | None = Field(None, description="Breach when value < level.")
    hysteresis: Annotated[float, Field(allow_inf_nan=False)] = Field(
        0,
        description="A level clears once value <= level - hysteresis (above) or >= "
        "level + hysteresis (below).",
    )
    for_: int | str = Field(
        1,
        alias="for",
        description="Consecutive breaching readings (a whole number >= 1), or how long "
        "the breach must hold in reading time (a duration such as 90s, 5m, 1h30m).",
    )
    nodata: str | None = Field(
        None,
        description="Raise a no-data alert when a matched sensor has sent nothing for this "
        "long, in arrival time (a duration from 1m to 7d, such as 5m or 1h).",
    )
    nodataSeverity: Literal["WARNING", "CRITICAL"] = Field(  # noqa: N815 - the file's names
        "WARNING", description="Severity of the no-data alert."
    )
    repeat: str | None = Field(
        None,
        description="Remind operators of an active, unacknowledged alert this often "
        "(a duration of at least 1m, such as 1h).",
    )
    latch: bool = Field(
        default=False,
        description="When the value returns inside the levels, keep the alert LATCHED until "
        "an operator resets or acknowledges it.",
    )
    offline: str | None = Field(
        None,
        description="Raise one device-level offline alert when a matched device has been "
        "disconnected (IoT Core lifecycle events) this long with no connect since "
        "(a duration from 30s to 7d). Match devices by deviceId only.",
    )
    offlineSeverity: Literal["WARNING", "CRITICAL"] = Field(  # noqa: N815 - the file's names
        "WARNING", description="Severity of the offline alert."
    )
    flapping: FlappingSpec | None = Field(
        None, description="Chattering suppression for this rule's alerts (overrides the default)."
    )
    rate: RateSpec | None = Field(
        None, description="Alert on the rate of change instead of the value (direction: rate)."
    )
    stuck: StuckSpec | None = Field(
        None, description="Alert on a sensor frozen at one value (direction: stuck)."
    )
    stuckSeverity: Literal["WARNING", "CRITICAL"] = Field(  # noqa: N815 - the file's names
        "WARNING", description="Severity of the stuck alert."
    )
    spike: SpikeSpec | None = Field(
        None, description="Alert on a reading that jumps from the previous one (direction: spike)."
    )
    spikeSeverity: Literal["WARNING", "CRITICAL"] = Field(  # noqa: N815 - the file's names
        "WARNING", description="Severity of the spike alert."
    )
    range: RangeSpec | None = Field(
        None,
        description="Values the sensor can produce; outside is a sensor fault (direction: "
        "range), kept out of the sensor's other rules.",
    )
    rangeSeverity: Literal["WARNING", "CRITICAL"] = Field(  # noqa: N815 - the file's names
        "WARNING", description="Severity of the range fault."
    )


class MembersSpec(BaseModel):
    """Which devices sit behind a gateway: deviceId glob(s)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    deviceId: str | list[str]  # noqa: N815 - the message's names


class GatewaySpec(BaseModel):
    """A device whose loss explains its members' silence."""

    model_config = ConfigDict(extra="forbid", strict=True)

    gateway: Annotated[str, StringConstraints(pattern=THING_NAME_PATTERN)] = Field(
        description="The gateway's deviceId (its thing name)."
    )
    members: MembersSpec = Field(description="The devices behind it, by deviceId glob(s).")


class NotificationsSpec(BaseModel):
    """The alarm load operators accept, per group of transitions."""

    model_config = ConfigDict(extra="forbid", strict=True)

    groupBy: list[Literal["rule", "location", "type", "deviceId", "severity"]] = Field(  # noqa: N815
        default_factory=list,
        description="Transition fields that make a group (default: one group for all).",
    )
    window: str = Field("10m", description="The sliding window of the budget (1m to 24h).")
    maxPerWindow: int = Field(  # noqa: N815 - the file's names
        5, description="Messages published one by one per group per window (1 to 1,000)."
    )
    digestEvery: str = Field(  # noqa: N815 - the file's names
        "2m", description="How often held transitions are sent as a digest (1m up to window)."
    )
    flapping: FlappingSpec | None = Field(
        None, description="Chattering suppression for every rule that sets none."
    )


class MaintenanceSpec(BaseModel):
    """A maintenance window: matched keys' changes are stored and mirrored but
    not published while it lasts; operators hear what is still true at its end."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: Annotated[str, StringConstraints(pattern=RULE_NAME_PATTERN)] = Field(
        description="Unique across all rule files; the shadow shows it on held alerts."
    )
    description: str | None = None
    match: MatchSpec = Field(
        default_factory=MatchSpec,
        description="Which keys it holds: the same keys and globs as a rule's match.",
    )
    every: str | None = Field(
        None,
        description="A recurring window: days (MON..SUN, a range such as MON-FRI, a list "
        "such as SAT,SUN, or *) and a time range HH:MM-HH:MM in `timezone`; a range that "
        "ends before it starts crosses midnight and belongs to the day it starts.",
    )
    timezone: str | None = Field(
        None, description="The IANA time zone of `every` (DST handled); default UTC."
    )
    from_: str | datetime | None = Field(
        None, alias="from", description="A one-off window's start (ISO-8601; UTC if no zone)."
    )
    to: str | datetime | None = Field(
        None, description="A one-off window's end (ISO-8601; UTC if no zone), after `from`."
    )


class RuleFileSpec(BaseModel):
    """A rule file: a list of rules under `rules`, optionally `gateways`,
    `notifications` (one file of a set at most) and `maintenance` windows."""

    model_config = ConfigDict(extra="forbid", strict=True)

    rules: list[RuleSpec] = Field(default_factory=list)
    gateways: list[GatewaySpec] = Field(default_factory=list)
    notifications: NotificationsSpec | None = None
    maintenance: list[MaintenanceSpec] = Field(default_factory=list)


def _instant_ms(field: str, raw: str | datetime) -> int:
    if isinstance(raw, datetime):
        raw = (raw if raw.tzinfo is not None else raw.replace(tzinfo=UTC)).isoformat()
    try:
        return parse_time_ms(raw)
    except ValueError as exc:
        raise WindowError(
            field, f"must be a date and time such as 2026-12-20T08:00:00Z ({exc})"
        ) from None


def compile_window(spec: MaintenanceSpec) -> Window:
    """The checked window of a spec; WindowError naming the field at fault."""
    match = tuple((k, getattr(spec.match, k)) for k in MATCH_KEYS if getattr(spec.match, k))
    one_off = spec.from_ is not None or spec.to is not None
    if spec.every is not None and one_off:
        raise WindowError("every", "a window is either recurring (every) or one-off (from, to)")
    if spec.every is not None:
        days, start, end = parse_every(spec.every)
        timezone = spec.timezone or DEFAULT_TIMEZONE
        zone(timezone)
        return Window(spec.name, match, days, start, end, timezone)
    if not one_off:
        raise WindowError("every", f"needs every ({EVERY_FORMS}), or from and to")
    if spec.timezone is not None:
        raise WindowError(
            "timezone", "only a recurring window (every) takes one; from and to carry their own"
        )
    if spec.from_ is None or spec.to is None:
        raise WindowError("from" if spec.from_ is None else "to", "a one-off window needs both")
    from_ms, to_ms = _instant_ms("from", spec.from_), _instant_ms("to", spec.to)
    if to_ms <= from_ms:
        raise WindowError("to", "must come after from: this window never occurs")
    return Window(spec.name, match, from_ms=from_ms, to_ms=to_ms)


def _file_maintenance(source: str, raw: Any) -> tuple[list[Window], list[str]]:
    entries = raw.get("maintenance") if isinstance(raw, dict) else None
    if entries is None:
        return [], []
    if not isinstance(entries, list):
        return [], [f"{source}: maintenance: must be a list (each starting with '- name:')"]
    windows: list[Window] = []
    problems: list[str] = []
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"maintenance {name!r}" if isinstance(name, str) else f"maintenance #{index + 1}"
        try:
            windows.append(compile_window(MaintenanceSpec.model_validate(entry)))
        except ValidationError as exc:
            problems.extend(f"{source}: {label}: {p}" for p in _spec_problems(exc, MaintenanceSpec))
        except WindowError as exc:
            problems.append(f"{source}: {label}: {exc}")
    problems += [f"{source}: {p}" for p in names_unique(windows)]
    return windows, problems


def _ordered_levels(spec: RuleSpec) -> list[tuple[str, float]]:
    levels: list[tuple[str, float | None]] = []
    if spec.below is not None:
        levels += [("below.critical", spec.below.critical), ("below.warning", spec.below.warning)]
    if spec.above is not None:
        levels += [("above.warning", spec.above.warning), ("above.critical", spec.above.critical)]
    return [(name, value) for name, value in levels if value is not None]


def _clear_problems(levels: list[tuple[str, float]], h: float) -> Iterable[str]:
    for i, (name, value) in enumerate(levels):
        if name.startswith("above") and i > 0:
            lower_name, lower = levels[i - 1]
            if not value - h > lower:
                yield (
                    f"hysteresis: {name} clears at {value - h:g} ({value:g} - {h:g}), "
                    f"which is not above {lower_name} ({lower:g})"
                )
        if name.startswith("below") and i + 1 < len(levels):
            upper_name, upper = levels[i + 1]
            if not value + h < upper:
                yield (
                    f"hysteresis: {name} clears at {value + h:g} ({value:g} + {h:g}), "
                    f"which is not below {upper_name} ({upper:g})"
                )


CONDITION_KEYS: Final = ("rate", "stuck", "spike", "range")
_CONDITION_SETTINGS: Final = (*CONDITION_KEYS, "stuckSeverity", "spikeSeverity", "rangeSeverity")


def _kinds(spec: RuleSpec) -> list[str]:
    """The kinds of condition a rule has: levels (above/below) and the others."""
    kinds = ["above/below"] if spec.above is not None or spec.below is not None else []
    return kinds + [k for k in CONDITION_KEYS if getattr(spec, k) is not None]


def rule_problems(spec: RuleSpec) -> list[str]:
    """Every reason this rule cannot be evaluated coherently, as `field: message`."""
    problems: list[str] = []
    kinds = _kinds(spec)
    if not kinds and spec.nodata is None and spec.offline is None:
        problems.append(
            "above/below/nodata/offline: a rule needs above, below, nodata, offline or a mix"
        )
    if len(kinds) > 1:
        problems.append(
            f"{'/'.join(kinds)}: a rule has one kind of condition; this one has "
            f"{' and '.join(kinds)}: write one rule for each"
        )
    problems.extend(_condition_problems(spec))
    problems.extend(_level_problems(spec))
    problems.extend(_timing_problems(spec))
    problems.extend(_offline_problems(spec))
    if spec.flapping is not None:
        problems.extend(f"flapping.{p}" for p in flapping_problems(spec.flapping))
    if spec.latch and not kinds:
        problems.append("latch: only a rule with above or below levels can latch")
    return problems


def _condition_problems(spec: RuleSpec) -> list[str]:
    problems: list[str] = []
    if spec.rate is not None:
        problems.extend(_rate_problems(spec.rate))
    faults = [k for k in ("stuck", "spike", "range") if getattr(spec, k) is not None]
    if faults and spec.hysteresis:
        problems.append(f"hysteresis: a {faults[0]} rule has no levels to clear; remove hysteresis")
    if spec.stuck is not None:
        problems.extend(f"stuck.for: {p}" for p in _duration_problems(spec.stuck.for_, 1, None))
        if spec.stuck.tolerance < 0:
            problems.append(
                f"stuck.tolerance: must not be negative (got {spec.stuck.tolerance:g}); "
                "0 means exactly the same value"
            )
    if spec.spike is not None and spec.spike.jump < 0:
        problems.append(
            f"spike.jump: must not be negative (got {spec.spike.jump:g}); it is the largest "
            "change between two readings that is not a spike"
        )
    if spec.range is not None:
        low, high = spec.range.min, spec.range.max
        if low is None and high is None:
            problems.append("range: needs a min, a max or both")
        elif low is not None and high is not None and not low < high:
            problems.append(
                f"range.min: {low:g} must be below range.max ({high:g}); readings between "
                "them are the ones a working sensor can produce"
            )
    return problems


def _rate_problems(rate: RateSpec) -> list[str]:
    problems: list[str] = []
    if rate.above is None and rate.below is None:
        problems.append(
            "rate: needs a level: above: {warning: 2} for a rise and/or below: "
            "{warning: -2} for a fall, in the rate's unit (per `per`)"
        )
    levels: list[tuple[str, float]] = []
    for side_name, side in (("below", rate.below), ("above", rate.above)):
        if side is not None and side.warning is None and side.critical is None:
            problems.append(f"rate.{side_name}: needs a warning or a critical level")
        if side is not None:
            pair = [("critical", side.critical), ("warning", side.warning)]
            if side_name == "above":
                pair.reverse()
            levels += [(f"rate.{side_name}.{n}", v) for n, v in pair if v is not None]
    for (low_name, low), (high_name, high) in itertools.pairwise(levels):
        if not low < high:
            problems.append(
                f"{high_name}: {high:g} must be greater than {low_name} ({low:g}); levels go "
                "below.critical < below.warning < above.warning < above.critical"
            )
    spans: list[tuple[str, int]] = []
    for name, text in (("per", rate.per), ("over", rate.over)):
        found = _duration_problems(text, 1, None)
        problems.extend(f"rate.{name}: {p}" for p in found)
        if not found:
            spans.append((name, parse_duration_ms(text)))
    if len(spans) == 2 and spans[1][1] < spans[0][1]:
        problems.append(
            f"rate.over: {rate.over!r} is shorter than rate.per ({rate.per!r}); the window a "
            "rate is measured over must be at least its unit"
        )
    return problems


def _offline_problems(spec: RuleSpec) -> list[str]:
    if spec.offline is None:
        return []
    problems = [
        f"offline: {p}" for p in _duration_problems(spec.offline, OFFLINE_MIN_MS, OFFLINE_MAX_MS)
    ]
    offline_only = spec.above is None and spec.below is None and spec.nodata is None
    others = [k for k in MATCH_KEYS if k != "deviceId" and getattr(spec.match, k) is not None]
    if offline_only and others:
        problems.append(
            f"match: an offline rule selects devices by deviceId only; {', '.join(others)} "
            "name readings, which a disconnected device does not send"
        )
    return problems


def flapping_problems(spec: FlappingSpec) -> list[str]:
    """What is wrong with a flapping setting, as `field: message`."""
    problems: list[str] = []
    if not FLAP_CHANGES_MIN <= spec.changes <= FLAP_CHANGES_MAX:
        problems.append(
            f"changes: must be from {FLAP_CHANGES_MIN} to {FLAP_CHANGES_MAX} (got {spec.changes})"
        )
    problems.extend(
        f"within: {p}" for p in _duration_problems(spec.within, WINDOW_MIN_MS, WINDOW_MAX_MS)
    )
    return problems


def _level_problems(spec: RuleSpec) -> list[str]:
    problems: list[str] = []
    for side_name, side in (("above", spec.above), ("below", spec.below)):
        if side is not None and side.warning is None and side.critical is None:
            problems.append(f"{side_name}: needs a warning or a critical level")
    levels = _ordered_levels(spec)
    for (low_name, low), (high_name, high) in itertools.pairwise(levels):
        if not low < high:
            problems.append(
                f"{high_name}: {high:g} must be greater than {low_name} ({low:g}); "
                "levels go below.critical < below.warning < above.warning < above.critical"
            )
    if spec.hysteresis < 0:
        problems.append(f"hysteresis: must not be negative (got {spec.hysteresis:g})")
    elif not problems:
        problems.extend(_clear_problems(levels, spec.hysteresis))
    return problems


def _timing_problems(spec: RuleSpec) -> list[str]:
    problems: list[str] = []
    if isinstance(spec.for_, int):
        if spec.for_ < 1:
            problems.append(f"for: must be at least 1 reading (got {spec.for_})")
    else:
        try:
            parse_duration_ms(spec.for_)
        except ValueError as exc:
            problems.append(f"for: {exc}")
    bounds: tuple[tuple[str, str | None, int, int | None], ...] = (
        ("nodata", spec.nodata, NODATA_MIN_MS, NODATA_MAX_MS),
        ("repeat", spec.repeat, REPEAT_MIN_MS, None),
    )
    for name, text, least, most in bounds:
        if text is not None:
            problems.extend(f"{name}: {p}" for p in _duration_problems(text, least, most))
    return problems


def _duration_problems(text: str, low_ms: int, high_ms: int | None) -> list[str]:
    try:
        ms = parse_duration_ms(text)
    except ValueError as exc:
        return [str(exc)]
    if ms < low_ms:
        return [f"{text!r} is shorter than the least allowed, {duration_words(low_ms)}"]
    if high_ms is not None and ms > high_ms:
        return [f"{text!r} is longer than the most allowed, {duration_words(high_ms)}"]
    return []


def duration_words(ms: int) -> str:
    """A whole duration in its largest exact unit, as rule files write it (`5m`, `90s`)."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def compile_rule(spec: RuleSpec) -> Rule:
    """The evaluator's form of a spec that `rule_problems` found sound."""
    named: tuple[tuple[Literal["above", "below"], LevelsSpec | None], ...] = (
        ("above", spec.above),
        ("below", spec.below),
    )
    sides = tuple(
        Side(name, levels.warning, levels.critical) for name, levels in named if levels is not None
    )
    condition = _compile_condition(spec)
    if spec.rate is not None:
        rated = (("above", spec.rate.above), ("below", spec.rate.below))
        sides = tuple(Side(n, lv.warning, lv.critical) for n, lv in rated if lv is not None)  # type: ignore[arg-type]
    elif condition is not None:
        severity = {"stuck": spec.stuckSeverity, "spike": spec.spikeSeverity}.get(
            condition.kind, spec.rangeSeverity
        )
        warning = FAULT_LEVEL if severity == "WARNING" else None
        sides = (Side("above", warning, FAULT_LEVEL if warning is None else None),)
    for_ms = parse_duration_ms(spec.for_) if isinstance(spec.for_, str) else None
    match = tuple(
        (key, value) for key in MATCH_KEYS if (value := getattr(spec.match, key)) is not None
    )
    return Rule(
        name=spec.name,
        sides=sides,
        hysteresis=spec.hysteresis,
        for_readings=spec.for_ if isinstance(spec.for_, int) else 1,
        for_ms=for_ms,
        match=match,
        nodata_ms=parse_duration_ms(spec.nodata) if spec.nodata is not None else None,
        nodata_severity=spec.nodataSeverity,
        repeat_ms=parse_duration_ms(spec.repeat) if spec.repeat is not None else None,
        latch=spec.latch,
        offline_ms=parse_duration_ms(spec.offline) if spec.offline is not None else None,
        offline_severity=spec.offlineSeverity,
        flapping=_compile_flapping(spec.flapping),
        condition=condition,
    )


def _compile_condition(spec: RuleSpec) -> Condition | None:
    if spec.rate is not None:
        return Rate(parse_duration_ms(spec.rate.per), parse_duration_ms(spec.rate.over))
    if spec.stuck is not None:
        return Stuck(parse_duration_ms(spec.stuck.for_), spec.stuck.tolerance)
    if spec.spike is not None:
        return Spike(spec.spike.jump)
    if spec.range is not None:
        return Range(spec.range.min, spec.range.max)
    return None


def _compile_flapping(spec: FlappingSpec | None) -> Flapping | None:
    if spec is None:
        return None
    return Flapping(spec.changes, parse_duration_ms(spec.within))


def notifications_problems(spec: NotificationsSpec) -> list[str]:
    """What is wrong with a file's `notifications`, as `field: message`."""
    problems: list[str] = []
    if len(set(spec.groupBy)) != len(spec.groupBy):
        problems.append("groupBy: names a field twice")
    problems.extend(
        f"window: {p}" for p in _duration_problems(spec.window, WINDOW_MIN_MS, WINDOW_MAX_MS)
    )
    if not MAX_PER_WINDOW_MIN <= spec.maxPerWindow <= MAX_PER_WINDOW_MAX:
        problems.append(
            f"maxPerWindow: must be from {MAX_PER_WINDOW_MIN} to {MAX_PER_WINDOW_MAX:,} "
            f"(got {spec.maxPerWindow})"
        )
    digest = _duration_problems(spec.digestEvery, WINDOW_MIN_MS, None)
    problems.extend(f"digestEvery: {p}" for p in digest)
    window_ok = not any(p.startswith("window") for p in problems)
    if (
        not digest
        and window_ok
        and parse_duration_ms(spec.digestEvery) > parse_duration_ms(spec.window)
    ):
        problems.append(
            f"digestEvery: {spec.digestEvery!r} is longer than the window "
            f"({spec.window!r}); digests come at least once a window"
        )
    if spec.flapping is not None:
        problems.extend(f"flapping.{p}" for p in flapping_problems(spec.flapping))
    return problems


def compile_notifications(spec: NotificationsSpec | None) -> Notifications:
    """The evaluator's form of a `notifications` that `notifications_problems`
    found sound; the defaults when the file has none."""
    if spec is None:
        return DEFAULT_NOTIFICATIONS
    return Notifications(
        group_by=tuple(spec.groupBy),
        window_ms=parse_duration_ms(spec.window),
        max_per_window=spec.maxPerWindow,
        digest_every_ms=parse_duration_ms(spec.digestEvery),
        flapping=_compile_flapping(spec.flapping),
    )


def compile_gateway(spec: GatewaySpec) -> Gateway:
    members = spec.members.deviceId
    return Gateway(spec.gateway, (members,) if isinstance(members, str) else tuple(members))


_UNION_TAGS: Final = frozenset({"int", "str", "float", "bool", "function-after"})
_DURATION_FIELDS: Final = {
    "nodata": "must be a duration such as 5m or 1h",
    "repeat": "must be a duration such as 30m or 1h",
    "offline": "must be a duration such as 2m or 1h",
    "within": "must be a duration such as 10m",
    "window": "must be a duration such as 10m",
    "digestEvery": "must be a duration such as 2m",
}
_TYPE_WORDS: Final = {
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "int_type": "must be a whole number",
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of settings (key: value)",
    "model_type": "must be a mapping of settings (key: value)",
    "model_attributes_type": "must be a mapping of settings (key: value)",
    "finite_number": "must be a finite number (not .nan or .inf)",
    "missing": "is required",
}


def _known_keys(model: type[BaseModel]) -> str:
    names = [f.alias or name for name, f in model.model_fields.items()]
    return ", ".join(n for n in names if model is not RuleSpec or n not in _CONDITION_SETTINGS)


_NESTED: Final[dict[str, type[BaseModel]]] = {
    "match": MatchSpec,
    "rate": RateSpec,
    "stuck": StuckSpec,
    "spike": SpikeSpec,
    "range": RangeSpec,
    "above": LevelsSpec,
    "below": LevelsSpec,
    "flapping": FlappingSpec,
    "members": MembersSpec,
}


def _field_words(
    path: tuple[str, ...], error_type: str, message: str, top: type[BaseModel] = RuleSpec
) -> str:
    """What is wrong with one field, in the words of the person who wrote it."""
    name = path[-1] if path else ""
    if error_type == "extra_forbidden":
        model = _NESTED.get(path[-2], top) if len(path) > 1 else top
        known = f"not a setting here (known: {_known_keys(model)})"
        if model is RuleSpec:
            known += f"; conditions: {', '.join(_CONDITION_SETTINGS)}"
        return known
    if (
        name in _DURATION_FIELDS
        and error_type in {"string_type", "missing"}
        and top is not RuleSpec
    ):
        return _DURATION_FIELDS[name] if error_type != "missing" else "is required"
    if path == ("for",) and error_type != "missing":
        return "must be a whole number of readings (such as 3) or a duration (such as 5m)"
    if name in _DURATION_FIELDS and len(path) == 1 and error_type != "missing":
        return _DURATION_FIELDS[name]
    if path == ("name",) and error_type == "string_pattern_mismatch":
        return (
            "must be 1-64 letters, digits or . _ : - (starting with a letter or digit), "
            "with no spaces"
        )
    if error_type == "literal_error":
        return message.replace("Input should be", "must be")
    return _TYPE_WORDS.get(error_type, message)


def _spec_problems(error: ValidationError, top: type[BaseModel] = RuleSpec) -> list[str]:
    """One `field: problem` line per field, however many union members pydantic tried."""
    found: dict[tuple[str, ...], str] = {}
    for item in error.errors(include_url=False, include_input=False):
        path = tuple(str(p) for p in item["loc"] if str(p) not in _UNION_TAGS)
        found.setdefault(path, _field_words(path, item["type"], item["msg"], top))
    return [f"{'.'.join(path) or '(rule)'}: {words}" for path, words in found.items()]


class _RuleFileLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML that notes every key given twice in one mapping (YAML would keep
    the last silently), so that the file is refused with all of them named."""

    duplicates: list[str]

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    line = key_node.start_mark.line + 1
                    self.duplicates.append(f"line {line}: key {key!r} is given twice")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> tuple[Any, list[str]]:
    """The document, and the keys given twice in it (file order)."""
    loader = _RuleFileLoader(text)
    loader.duplicates = []
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()


def _yaml_problem(source: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{source}: not valid YAML{where}: {problem}"


def _file_rules(source: str, raw: Any) -> tuple[list[Any], list[str]]:
    """The raw rule entries of a parsed file, or why the file is not a rule file."""
    if raw is None:
        return [], []
    if not isinstance(raw, dict):
        return [], [f"{source}: (file): a rule file must be a mapping with a 'rules:' list"]
    problems = [
        f"{source}: {key}: not a setting of a rule file (known: {', '.join(FILE_SECTIONS)})"
        for key in raw
        if key not in FILE_SECTIONS
    ]
    rules = raw.get("rules", [])
    if rules is None:
        rules = []
    if not isinstance(rules, list):
        problems.append(f"{source}: rules: must be a list of rules (each starting with '- ')")
        return [], problems
    return rules, problems


def _file_gateways(source: str, raw: Any) -> tuple[list[Gateway], list[str]]:
    entries = raw.get("gateways") if isinstance(raw, dict) else None
    if entries is None:
        return [], []
    if not isinstance(entries, list):
        return [], [f"{source}: gateways: must be a list (each starting with '- gateway:')"]
    gateways: list[Gateway] = []
    problems: list[str] = []
    for index, entry in enumerate(entries):
        name = entry.get("gateway") if isinstance(entry, dict) else None
        label = f"gateway {name!r}" if isinstance(name, str) else f"gateway #{index + 1}"
        try:
            spec = GatewaySpec.model_validate(entry)
        except ValidationError as exc:
            problems.extend(f"{source}: {label}: {p}" for p in _spec_problems(exc, GatewaySpec))
            continue
        globs = (
            [spec.members.deviceId]
            if isinstance(spec.members.deviceId, str)
            else (spec.members.deviceId)
        )
        if not globs or not all(g.strip() for g in globs):
            problems.append(f"{source}: {label}: members.deviceId: needs at least one glob")
            continue
        gateways.append(compile_gateway(spec))
    return gateways, problems


def _file_notifications(source: str, raw: Any) -> tuple[Notifications | None, list[str]]:
    entry = raw.get("notifications") if isinstance(raw, dict) else None
    if entry is None:
        return None, []
    try:
        spec = NotificationsSpec.model_validate(entry)
    except ValidationError as exc:
        return None, [
            f"{source}: notifications: {p}" for p in _spec_problems(exc, NotificationsSpec)
        ]
    problems = notifications_problems(spec)
    if problems:
        return None, [f"{source}: notifications: {p}" for p in problems]
    return compile_notifications(spec), []


def _without_bad_settings(entry: Any, error: ValidationError) -> RuleSpec | None:
    """The rule without the settings its schema problems name, if what remains is
    a rule (its name and levels intact): to check the rest of it as well."""
    if not isinstance(entry, dict):
        return None
    bad = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
    if bad & {"name", "above", "below", "nodata", *CONDITION_KEYS}:
        return None
    kept = {k: v for k, v in entry.items() if k not in bad}
    try:
        return RuleSpec.model_validate(kept)
    except ValidationError:
        return None


@immutable
class RuleDocument:
    """One rule file, checked: its rules, gateways, and notifications (None
    when the file says nothing of them)."""

    rules: list[Rule]
    gateways: list[Gateway]
    notifications: Notifications | None
    maintenance: list[Window] = field(default_factory=list)


def parse_rule_file(text: str, source: str) -> list[Rule]:
    """Parse and check one rule file's text; `source` names it in errors. Every
    problem of the file is reported at once: schema and rule-level alike."""
    return parse_rule_document(text, source).rules


def parse_rule_document(text: str, source: str) -> RuleDocument:
    """Parse and check one rule file, all of its sections; every problem at once."""
    try:
        raw, duplicates = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise RuleFileError([_yaml_problem(source, exc)]) from None
    entries, problems = _file_rules(source, raw)
    problems = [f"{source}: {d}" for d in duplicates] + problems
    gateways, gateway_problems = _file_gateways(source, raw)
    notifications, notification_problems = _file_notifications(source, raw)
    windows, window_problems = _file_maintenance(source, raw)
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"rule {name!r}" if isinstance(name, str) else f"rule #{index + 1}"
        try:
            spec = RuleSpec.model_validate(entry)
        except ValidationError as exc:
            problems.extend(f"{source}: {label}: {p}" for p in _spec_problems(exc))
            # The rest of the rule may have problems of its own: report them too.
            salvaged = _without_bad_settings(entry, exc)
            if salvaged is not None:
                problems.extend(f"{source}: {label}: {p}" for p in rule_problems(salvaged))
            continue
        found = rule_problems(spec)
        if spec.name in seen:
            found.append("name: duplicate; already defined in this file")
        seen.add(spec.name)
        problems.extend(f"{source}: {label}: {p}" for p in found)
        if not found:
            rules.append(compile_rule(spec))
    problems += gateway_problems + notification_problems + window_problems
    if problems:
        raise RuleFileError(problems)
    return RuleDocument(rules, gateways, notifications, windows)


_Named = TypeVar("_Named")


def _first_of_each(
    items: Iterable[_Named],
    name_of: Callable[[_Named], str],
    file: Path,
    origin: dict[str, Path],
    kept: list[_Named],
) -> list[_Named]:
    """Keep in `kept` each item whose name no file has used yet (noting in
    `origin` which file did); the others, the duplicates, are returned."""
    duplicates: list[_Named] = []
    for item in items:
        name = name_of(item)
        if name in origin:
            duplicates.append(item)
        else:
            origin[name] = file
            kept.append(item)
    return duplicates


class _SetBuilder:
    """Rule files merged into one set: names unique across files, a gateway
    listed once, `notifications` set by one file at most."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.rules: list[Rule] = []
        self.gateways: list[Gateway] = []
        self.notifications: tuple[Path, Notifications] | None = None
        self._origin: dict[str, Path] = {}
        self._gateway_origin: dict[str, Path] = {}
        self.windows: list[Window] = []
        self._window_origin: dict[str, Path] = {}

    def add(self, file: Path, loaded: RuleDocument) -> None:
        where = f"{file}: "
        for rule in _first_of_each(loaded.rules, lambda r: r.name, file, self._origin, self.rules):
            self.problems.append(
                f"{where}rule {rule.name!r}: name: duplicate; already defined in "
                f"{self._origin[rule.name]}"
            )
        for gateway in _first_of_each(
            loaded.gateways, lambda g: g.device_id, file, self._gateway_origin, self.gateways
        ):
            self.problems.append(
                f"{where}gateway {gateway.device_id!r}: listed twice (also in "
                f"{self._gateway_origin[gateway.device_id]})"
            )
        for window in _first_of_each(
            loaded.maintenance, lambda w: w.name, file, self._window_origin, self.windows
        ):
            self.problems.append(
                f"{where}maintenance {window.name!r}: name: duplicate; already defined "
                f"in {self._window_origin[window.name]}"
            )
        if loaded.notifications is not None:
            if self.notifications is not None:
                self.problems.append(
                    f"{file}: notifications: already set in {self.notifications[0]}; "
                    "one file of a set says how operators are notified"
                )
            else:
                self.notifications = (file, loaded.notifications)

    def build(self) -> RuleSet:
        return RuleSet(
            self.rules,
            gateways=self.gateways,
            notifications=self.notifications[1] if self.notifications else DEFAULT_NOTIFICATIONS,
            maintenance=Maintenance(self.windows),
        )


def load_rule_set(paths: Path | Sequence[Path]) -> RuleSet:
    """Parse, check and compile every rule under `paths` (a RULES_PATH, or several
    checked as one set), reporting all problems. RulePathError when a path
    names no file to read, RuleFileError when a file read is not valid. The
    set's `notifications` come from the one file that sets them (two files
    setting them is an error), else the defaults."""
    path_problems: list[str] = []
    builder = _SetBuilder()
    files: dict[Path, None] = {}
    for path in [paths] if isinstance(paths, Path) else paths:
        try:
            files.update(dict.fromkeys(rule_files(path)))
        except RulePathError as exc:
            path_problems.extend(exc.problems)
    for file in files:
        try:
            loaded = parse_rule_document(file.read_text(encoding="utf-8"), str(file))
        except RuleFileError as exc:
            builder.problems.extend(exc.problems)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            builder.problems.append(f"{file}: cannot read: {exc}")
            continue
        builder.add(file, loaded)
    if path_problems:
        raise RulePathError(path_problems + builder.problems, path_problems)
    if builder.problems:
        raise RuleFileError(builder.problems)
    return builder.build()


DURATION_PATTERN: Final = r"^\s*(\d+\s*(ms|s|m|h|d)\s*)+$"
_DAY: Final = r"(MON|TUE|WED|THU|FRI|SAT|SUN)"
_DAYS: Final = rf"({_DAY}(-{_DAY})?)(,{_DAY}(-{_DAY})?)*"
EVERY_PATTERN: Final = (
    rf"^\s*(\*|{_DAYS})\s+([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)\s*$"
)
"""The syntax of `every` (days in capitals; the loader also takes lower case)."""


def rule_file_schema() -> dict[str, Any]:
    """JSON Schema of a rule file, generated from the same models that load it,
    with what the models check in code: durations' syntax, and a rule's need for
    levels or a `nodata` (bounds such as nodata's 1m to 7d stay in the
    descriptions; `telemetry rules check` applies them)."""
    schema = RuleFileSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Telemetry alert rules"
    rule = schema["$defs"]["RuleSpec"]
    for name in ("for", "nodata", "repeat", "offline"):
        for variant in rule["properties"][name].get("anyOf", []):
            if variant.get("type") == "string":
                variant["pattern"] = DURATION_PATTERN
    defs = schema["$defs"]
    # A rule of levels (RuleSpec) or of one condition (ConditionRuleSpec): one kind each.
    conditioned = copy.deepcopy(rule)
    conditioned["title"] = "ConditionRuleSpec"
    conditioned["description"] = (
        "One rule whose condition is a rate, stuck, spike or range (docs/conditions.md)."
    )
    for name in ("above", "below"):
        del conditioned["properties"][name]
    for name in _CONDITION_SETTINGS:
        del rule["properties"][name]
    rule["anyOf"] = [{"required": [side]} for side in ("above", "below", "nodata", "offline")]
    conditioned["anyOf"] = [{"required": [kind]} for kind in CONDITION_KEYS]
    defs["ConditionRuleSpec"] = conditioned
    schema["properties"]["rules"]["items"] = {
        "anyOf": [{"$ref": "#/$defs/RuleSpec"}, {"$ref": "#/$defs/ConditionRuleSpec"}]
    }
    for name in ("per", "over"):
        defs["RateSpec"]["properties"][name]["pattern"] = DURATION_PATTERN
    defs["StuckSpec"]["properties"]["for"]["pattern"] = DURATION_PATTERN
    defs["StuckSpec"]["properties"]["tolerance"]["minimum"] = 0
    defs["SpikeSpec"]["properties"]["jump"]["minimum"] = 0
    defs["FlappingSpec"]["properties"]["within"]["pattern"] = DURATION_PATTERN
    defs["FlappingSpec"]["properties"]["changes"] |= {
        "minimum": FLAP_CHANGES_MIN,
        "maximum": FLAP_CHANGES_MAX,
    }
    notes = defs["NotificationsSpec"]["properties"]
    for name in ("window", "digestEvery"):
        notes[name]["pattern"] = DURATION_PATTERN
    notes["maxPerWindow"] |= {"minimum": MAX_PER_WINDOW_MIN, "maximum": MAX_PER_WINDOW_MAX}
    notes["groupBy"]["uniqueItems"] = True
    window = defs["MaintenanceSpec"]
    for name in ("from", "to"):
        window["properties"][name]["anyOf"] = [
            {"type": "string", "format": "date-time"},
            {"type": "null"},
        ]
    window["properties"]["every"]["anyOf"][0]["pattern"] = EVERY_PATTERN
    window["oneOf"] = [{"required": ["every"]}, {"required": ["from", "to"]}]
    return schema


def write_compiled(directory: Path) -> Path:
    """Check and compile the rule files of `directory` into its compiled file
    (`COMPILED_NAME`), stamped with the digest of the files it stands for: what
    the build ships, so that a cold start reads rules without YAML or pydantic.
    RuleFileError (or RulePathError) when the files are not a valid set."""
    files = rule_files(directory)
    digest = sources_digest(files)
    compiled = load_rule_set(directory)
    if sources_digest(files) != digest:
        raise RuleFileError([f"{directory}: the rule files changed while being compiled"])
    target = directory / COMPILED_NAME
    target.write_text(compiled_rules_text(compiled, digest), encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Compile each rules directory named; 1 (and every problem) when one is invalid."""
    status = 0
    for name in sys.argv[1:] if argv is None else argv:
        try:
            write_compiled(Path(name))
        except RuleFileError as exc:
            sys.stderr.write("\n".join(exc.problems) + "\n")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
