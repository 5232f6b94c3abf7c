"""Every Hypothesis strategy the tests use, in one place.

Values stay in ranges where the arithmetic is exact (levels on a 0.5 grid,
hysteresis and reading offsets on a 0.25 grid), so that a property never fails
on a rounding artefact instead of on the contract.
"""

from __future__ import annotations

import itertools
import json
import string
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from telemetry.core.alerts import (
    AlertState,
    Attention,
    Care,
    Episode,
    Flap,
    Heard,
    Severity,
    Silence,
    Status,
    Streak,
    Transition,
)
from telemetry.core.maintenance import Hold, Window, parse_every
from telemetry.core.messages import MAX_FUTURE_MS, Reading
from telemetry.core.rules import (
    GROUP_FIELDS,
    Flapping,
    Notifications,
    Rule,
    RuleSet,
    RuleSpec,
    compile_rule,
)

# 2025-11-27T10:00:00Z: the clock every test injects as `now_ms`.
NOW_MS = 1_764_237_600_000
DAY_MS = 86_400_000
THING_CHARS = string.ascii_letters + string.digits + ":_-"
RULE_NAME_FIRST = string.ascii_letters + string.digits
RULE_NAME_REST = RULE_NAME_FIRST + "._:-"
LEVEL_SLOTS = ("below.critical", "below.warning", "above.warning", "above.critical")
DURATIONS = ("500ms", "30s", "90s", "1m", "5m", "1h30m")
SENSOR_IDS = ("temp-1", "temp-2", "press:1")
READING_KEYS = (
    "sensorId",
    "value",
    "type",
    "unit",
    "location",
    "warningThreshold",
    "criticalThreshold",
    "timestamp",
)
MESSAGE_KEYS = ("deviceId", "timestamp", "receivedAt", "data")


# --- names and labels -------------------------------------------------------


def thing_names() -> st.SearchStrategy[str]:
    """AWS IoT thing names: 1..128 characters of [a-zA-Z0-9:_-]."""
    return st.text(alphabet=THING_CHARS, min_size=1, max_size=128)


def invalid_thing_names() -> st.SearchStrategy[str]:
    """Strings that must never pass as a deviceId or sensorId."""
    outside = st.characters(blacklist_characters=THING_CHARS)
    with_bad_char = st.tuples(
        st.text(alphabet=THING_CHARS, max_size=20),
        outside,
        st.text(alphabet=THING_CHARS, max_size=20),
    ).map("".join)
    too_long = st.text(alphabet=THING_CHARS, min_size=129, max_size=200)
    return st.one_of(st.just(""), with_bad_char, too_long)


def labels() -> st.SearchStrategy[str]:
    """Non-empty type/unit/location strings within the 256-character bound."""
    return st.text(min_size=1, max_size=40)


# --- numbers and times ------------------------------------------------------


def finite_numbers() -> st.SearchStrategy[float | int]:
    """What JSON can carry as a valid reading value or threshold."""
    return st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-(2**53), max_value=2**53),
    )


def epoch_ms(
    min_value: int = NOW_MS - 30 * DAY_MS, max_value: int = NOW_MS + MAX_FUTURE_MS
) -> st.SearchStrategy[int]:
    """Epoch milliseconds no later than the 15-minute future limit by default."""
    return st.integers(min_value=min_value, max_value=max_value)


def iso_text(time_ms: int, style: str) -> str:
    """One of the ISO-8601 spellings a device may send for `time_ms`."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=time_ms)
    if style == "Z":
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if style == "offset":
        return moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(
            timespec="milliseconds"
        )
    if style == "naive":
        return moment.replace(tzinfo=None).isoformat(timespec="milliseconds")
    return moment.isoformat(timespec="milliseconds")


ISO_STYLES = ("Z", "offset", "naive", "plain")


def iso_timestamps_with_ms(
    times: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[tuple[str, int]]:
    """An ISO-8601 spelling and the epoch ms it stands for (recent times by default)."""
    return st.tuples(times if times is not None else epoch_ms(), st.sampled_from(ISO_STYLES)).map(
        lambda pair: (iso_text(pair[0], pair[1]), pair[0])
    )


def timestamps_with_ms() -> st.SearchStrategy[tuple[Any, int]]:
    """A wire timestamp (epoch ms or ISO-8601) and the epoch ms it stands for."""
    return st.one_of(epoch_ms().map(lambda ms: (ms, ms)), iso_timestamps_with_ms())


def wire_timestamps() -> st.SearchStrategy[Any]:
    return timestamps_with_ms().map(lambda pair: pair[0])


# --- readings and messages --------------------------------------------------


def raw_readings() -> st.SearchStrategy[dict[str, Any]]:
    """A valid reading as a device sends it (JSON object)."""
    return st.fixed_dictionaries(
        {"sensorId": thing_names(), "value": finite_numbers()},
        optional={
            "type": labels(),
            "unit": labels(),
            "location": labels(),
            "warningThreshold": finite_numbers(),
            "criticalThreshold": finite_numbers(),
            "timestamp": wire_timestamps(),
        },
    )


def messages() -> st.SearchStrategy[dict[str, Any]]:
    """A valid message as the IoT topic rule hands it over."""
    return st.fixed_dictionaries(
        {"deviceId": thing_names(), "data": st.lists(raw_readings(), max_size=6)},
        optional={"timestamp": wire_timestamps(), "receivedAt": epoch_ms()},
    )


def readings(
    device_id: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[Reading]:
    """Validated Reading objects, as parse_message produces them."""
    return st.builds(
        Reading,
        device_id=device_id if device_id is not None else thing_names(),
        sensor_id=thing_names(),
        value=st.floats(allow_nan=False, allow_infinity=False),
        time_ms=epoch_ms(),
        type=st.none() | labels(),
        unit=st.none() | labels(),
        location=st.none() | labels(),
    )


def json_values() -> st.SearchStrategy[Any]:
    """Anything json.loads can return, NaN and the infinities included."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(["", "NaN", "2025-11-27T10:00:00Z", "pump-17", "81.2"]),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.sampled_from(READING_KEYS + MESSAGE_KEYS) | st.text(), children),
        ),
        max_leaves=12,
    )


@st.composite
def mutated_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with one to four fields replaced by arbitrary JSON or removed."""
    message = draw(messages())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        data = message.get("data")
        if isinstance(data, list) and data and draw(st.booleans()):
            index = draw(st.integers(min_value=0, max_value=len(data) - 1))
            target = data[index]
            if not isinstance(target, dict):
                data[index] = draw(json_values())
                continue
            key = draw(st.sampled_from(READING_KEYS))
        else:
            target, key = message, draw(st.sampled_from(MESSAGE_KEYS))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(json_values())
    return message


# --- rules ------------------------------------------------------------------


def rule_names() -> st.SearchStrategy[str]:
    return st.tuples(
        st.sampled_from(RULE_NAME_FIRST), st.text(alphabet=RULE_NAME_REST, max_size=20)
    ).map("".join)


def match_dicts() -> st.SearchStrategy[dict[str, str]]:
    globs = st.sampled_from(["*", "temp*", "pump-?", "boiler-*", "line-[0-9]", "temperature"])
    return st.fixed_dictionaries(
        {}, optional=dict.fromkeys(("deviceId", "sensorId", "type", "location"), globs)
    )


GLOB_ALPHABET = "ab-1\\]!"
"""Few characters, so that random globs and values meet; `\\`, `]` and `!` are
literal outside a class and special inside one."""


def glob_pieces() -> st.SearchStrategy[str]:
    """One piece of a shell-style glob: literal text, `*`, `?`, a character class
    (`[ab]`, `[!a-1]`, `[]a]`, `[\\]`), or an unclosed `[` (a literal)."""
    literal = st.text(alphabet=GLOB_ALPHABET, min_size=1, max_size=3)
    members = st.text(alphabet=GLOB_ALPHABET + "-", min_size=1, max_size=3)
    klass = st.tuples(st.sampled_from(["[", "[!", "[]"]), members).map(lambda p: f"{p[0]}{p[1]}]")
    return st.one_of(literal, st.just("*"), st.just("?"), klass, st.just("["))


def match_globs() -> st.SearchStrategy[str]:
    """Patterns as operators write them: exact values, `prefix*`, `*suffix`,
    and any mix of literals, `*`, `?` and classes."""
    exact = st.text(alphabet=GLOB_ALPHABET, max_size=5)
    mixed = st.lists(glob_pieces(), min_size=1, max_size=5).map("".join)
    return st.one_of(exact, exact.map(lambda t: t + "*"), exact.map(lambda t: "*" + t), mixed)


@st.composite
def indexed_rules(draw: st.DrawFn, max_rules: int = 12) -> list[Rule]:
    """Rules with unique names whose `match` is random globs on zero to four
    keys (in the loader's key order, or any order and repeated keys, as code
    may build them)."""
    keys = ("deviceId", "sensorId", "type", "location")
    count = draw(st.integers(min_value=0, max_value=max_rules))
    found = []
    for number in range(count):
        chosen = draw(st.lists(st.sampled_from(keys), max_size=3))
        match = tuple((key, draw(match_globs())) for key in chosen)
        found.append(Rule(f"rule-{number}", (), match=match))
    return found


@st.composite
def match_keys_near(
    draw: st.DrawFn, rules: Sequence[Rule]
) -> tuple[str, str, str | None, str | None]:
    """A reading's (deviceId, sensorId, type, location) near one of the rules:
    where it has a pattern, a value made from it (its literal prefix, the
    pattern with `*` dropped and `?` filled, either with random text after it),
    elsewhere random text; type and location sometimes missing."""
    chosen: dict[str, str] = {}
    if rules and draw(st.integers(0, 4)) > 0:
        chosen = dict(draw(st.sampled_from(rules)).match)

    def value(key: str) -> str:
        tail = draw(st.text(alphabet=GLOB_ALPHABET + "[*?", max_size=4))
        pattern = chosen.get(key)
        if pattern is None or draw(st.integers(0, 5)) == 0:
            return tail
        filled = pattern.replace("*", "").replace("?", draw(st.sampled_from(GLOB_ALPHABET)))
        cut = len(pattern.split("*")[0].split("?")[0].split("[")[0])
        made = draw(st.sampled_from([pattern[:cut], filled, pattern[: max(cut - 1, 0)]]))
        return made if draw(st.booleans()) else made + tail

    device, sensor = value("deviceId"), value("sensorId")
    kind = None if draw(st.integers(0, 7)) == 0 else value("type")
    location = None if draw(st.integers(0, 7)) == 0 else value("location")
    return (device, sensor, kind, location)


@st.composite
def message_keys(
    draw: st.DrawFn, rules: Sequence[Rule]
) -> list[tuple[str, str, str | None, str | None]]:
    """Keys as messages bring them: runs of readings sharing a deviceId and a
    location, each with its own sensorId and type (all near the rules), a
    device sometimes coming back with another location or none."""
    near = st.lists(match_keys_near(rules), min_size=1, max_size=6)
    heads = draw(near)
    keys: list[tuple[str, str, str | None, str | None]] = []
    for _ in range(draw(st.integers(1, 6))):
        device, _, _, location = draw(st.sampled_from(heads))
        if keys and draw(st.booleans()):
            device = keys[-1][0]  # the same device again
        if draw(st.integers(0, 2)) == 0:
            location = draw(st.sampled_from(heads))[3]
        keys += [(device, sensor, kind, location) for _, sensor, kind, _ in draw(near)]
    return keys


def for_values() -> st.SearchStrategy[int | str]:
    return st.one_of(st.integers(min_value=1, max_value=4), st.sampled_from(DURATIONS))


@st.composite
def rule_dicts(
    draw: st.DrawFn,
    name: str | None = None,
    with_match: bool = True,
    for_: int | str | None = None,
    hysteresis: float | None = None,
    positive_hysteresis: bool = False,
) -> dict[str, Any]:
    """A rule as YAML holds it, satisfying every constraint of the loader.

    Levels are ordered (below.critical < below.warning < above.warning <
    above.critical, for those present) and the hysteresis is smaller than the
    smallest gap between neighbouring levels, which keeps every clear level
    strictly beyond the next level down. `for_` and `hysteresis` pin those
    fields when given (hysteresis 0 is always valid); `positive_hysteresis`
    draws one above 0 (at least 0.25: the smallest gap is 0.5).
    """
    sides = draw(st.sampled_from([("above",), ("below",), ("above", "below")]))
    present: list[str] = []
    for side in ("below", "above"):
        if side in sides:
            kinds = draw(st.sampled_from([("warning",), ("critical",), ("warning", "critical")]))
            present += [slot for slot in LEVEL_SLOTS if slot.startswith(side) and slot[6:] in kinds]
    present.sort(key=LEVEL_SLOTS.index)
    grid = draw(
        st.lists(
            st.integers(min_value=-400, max_value=400),
            min_size=len(present),
            max_size=len(present),
            unique=True,
        )
    )
    values = [g / 2 for g in sorted(grid)]
    rule: dict[str, Any] = {"name": name if name is not None else draw(rule_names())}
    for slot, value in zip(present, values, strict=True):
        side, kind = slot.split(".")
        rule.setdefault(side, {})[kind] = value
    if hysteresis is not None:
        rule["hysteresis"] = hysteresis
    else:
        gaps = [high - low for low, high in itertools.pairwise(values)]
        quarters = int(min(gaps) * 4) - 1 if gaps else 40
        if positive_hysteresis or draw(st.booleans()):
            least = 1 if positive_hysteresis else 0
            rule["hysteresis"] = draw(st.integers(min_value=least, max_value=quarters)) / 4
    if for_ is not None:
        rule["for"] = for_
    elif draw(st.booleans()):
        rule["for"] = draw(for_values())
    if with_match and draw(st.booleans()):
        rule["match"] = draw(match_dicts())
    return rule


@st.composite
def rule_file_dicts(draw: st.DrawFn, max_rules: int = 5) -> dict[str, Any]:
    """A whole rule file: rules with unique names."""
    names = draw(st.lists(rule_names(), max_size=max_rules, unique=True))
    return {"rules": [draw(rule_dicts(name=name)) for name in names]}


def flapping_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """A valid `flapping` setting: 2 to 100 changes within 1m to 24h."""
    return st.fixed_dictionaries(
        {
            "changes": st.integers(min_value=2, max_value=100),
            "within": st.sampled_from(["1m", "10m", "1h30m", "24h"]),
        }
    )


@st.composite
def full_rule_file_dicts(draw: st.DrawFn, max_rules: int = 4) -> dict[str, Any]:
    """A rule file using every section and setting a loader accepts: rules with
    no-data, reminders, latching, offline and flapping settings, gateways and
    notifications."""
    document = draw(rule_file_dicts(max_rules=max_rules))
    for rule in document["rules"]:
        optional = {
            "nodata": st.sampled_from(["1m", "5m", "1h", "7d"]),
            "nodataSeverity": st.sampled_from(["WARNING", "CRITICAL"]),
            "repeat": st.sampled_from(["1m", "30m", "1h"]),
            "latch": st.booleans(),
            "offline": st.sampled_from(["30s", "2m", "1h"]),
            "offlineSeverity": st.sampled_from(["WARNING", "CRITICAL"]),
            "flapping": flapping_dicts(),
            "description": st.text(max_size=20),
        }
        rule.update(draw(st.fixed_dictionaries({}, optional=optional)))
    gateways = draw(st.lists(thing_names(), max_size=3, unique=True))
    globs = st.sampled_from(["pump-*", "boiler-?", "line-[0-9]*", "sensor-17"])
    document["gateways"] = [
        {
            "gateway": name,
            "members": {"deviceId": draw(st.one_of(globs, st.lists(globs, min_size=1)))},
        }
        for name in gateways
    ]
    if draw(st.booleans()):
        window = draw(st.sampled_from(["10m", "1h", "24h"]))
        document["notifications"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "groupBy": st.lists(st.sampled_from(GROUP_FIELDS), unique=True),
                    "window": st.just(window),
                    "maxPerWindow": st.integers(min_value=1, max_value=1000),
                    "digestEvery": st.sampled_from(["1m", "2m", "10m"]),
                    "flapping": flapping_dicts(),
                },
            )
        )
    return document


def rule_specs(**kwargs: Any) -> st.SearchStrategy[RuleSpec]:
    return rule_dicts(**kwargs).map(RuleSpec.model_validate)


def rules(**kwargs: Any) -> st.SearchStrategy[Rule]:
    """Compiled rules that match every reading (no `match`) unless asked."""
    kwargs.setdefault("with_match", False)
    return rule_specs(**kwargs).map(compile_rule)


def rule_levels(rule: Rule) -> list[float]:
    return [
        level for side in rule.sides for level in (side.warning, side.critical) if level is not None
    ]


def values_near(levels: list[float]) -> st.SearchStrategy[float]:
    """Values on, just past and around the levels, plus some anywhere nearby."""
    offsets = st.sampled_from([-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0])
    on_levels = st.tuples(st.sampled_from(levels), offsets).map(lambda pair: pair[0] + pair[1])
    low, high = int(min(levels)) - 10, int(max(levels)) + 10
    around = st.integers(min_value=low * 4, max_value=high * 4).map(lambda q: q / 4)
    return st.one_of(on_levels, around)


@st.composite
def reading_sequences(
    draw: st.DrawFn,
    values: st.SearchStrategy[float],
    sensors: tuple[str, ...] = SENSOR_IDS,
    device_id: str = "pump-17",
    max_size: int = 40,
) -> list[Reading]:
    """Readings of one device, sorted as evaluate orders them.

    Timestamps are strictly increasing per sensor; different sensors may
    share one. Two readings of one sensor at the same millisecond are left out
    on purpose: they have no event-time order (evaluate breaks the tie by
    value, and the second is late once the first changed the state), so
    "one batch or several" and "any arrival order" would depend on which
    batch each lands in, which the contract does not promise.
    """
    count = draw(st.integers(min_value=0, max_value=max_size))
    time_ms = NOW_MS - DAY_MS
    last: dict[str, int] = {}
    out: list[Reading] = []
    for _ in range(count):
        sensor = draw(st.sampled_from(sensors))
        time_ms += draw(st.sampled_from([0, 1, 1_000, 15_000, 30_000, 60_000, 300_000]))
        time_ms = max(time_ms, last.get(sensor, -1) + 1)
        last[sensor] = time_ms
        out.append(
            Reading(
                device_id=device_id,
                sensor_id=sensor,
                value=draw(values),
                time_ms=time_ms,
                type="temperature",
                unit="C",
                location="line-3",
            )
        )
    out.sort(key=lambda r: (r.time_ms, r.sensor_id))
    return out


@st.composite
def rules_with_readings(draw: st.DrawFn, **rule_kwargs: Any) -> tuple[Rule, list[Reading]]:
    """A random valid rule and a reading sequence probing its levels."""
    rule = draw(rules(**rule_kwargs))
    return rule, draw(reading_sequences(values_near(rule_levels(rule))))


def clear_levels(rule: Rule) -> list[float]:
    """Where each level clears: hysteresis below an upper level, above a lower one."""
    h = rule.hysteresis
    return [
        level - h if side.name == "above" else level + h
        for side in rule.sides
        for level in (side.warning, side.critical)
        if level is not None
    ]


@st.composite
def rules_with_hysteresis(draw: st.DrawFn) -> tuple[Rule, list[Reading]]:
    """A rule with a hysteresis above 0 and `for` 1, and readings that often reach a
    level (one grid step past it) and often come back exactly to a clear level or one
    step either side of it, where a wrong band or an inclusive comparison shows."""
    rule = draw(rules(for_=1, positive_hysteresis=True))
    past = [
        level + (0.25 if side.name == "above" else -0.25)
        for side in rule.sides
        for level in (side.warning, side.critical)
        if level is not None
    ]
    clears = clear_levels(rule)
    edges = [c + step for c in clears for step in (-0.25, 0.25)]
    probes = st.one_of(
        st.sampled_from(past),
        st.sampled_from(clears),
        st.sampled_from(edges),
        values_near(rule_levels(rule)),
    )
    return rule, draw(reading_sequences(probes))


# --- InfluxDB line protocol ---------------------------------------------------

LINE_PROTOCOL_SPECIALS = " ,=\"'\\\t\n\r#"


def store_labels() -> st.SearchStrategy[str]:
    """type/unit/location values as validation lets them through (any text up to
    256 characters), weighted towards what line protocol must escape: spaces,
    commas, equals signs, quotes, backslashes, tabs and newlines, and unicode."""
    special = st.sampled_from(LINE_PROTOCOL_SPECIALS)
    plain = st.characters(codec="utf-8", exclude_categories=("Cs",))
    return st.text(alphabet=st.one_of(special, special, plain), min_size=1, max_size=60) | st.text(
        min_size=1, max_size=256
    )


def store_readings(count: int = 12) -> st.SearchStrategy[list[Reading]]:
    """Readings with hostile labels, each its own series (distinct sensorId)."""
    one = st.builds(
        lambda device, value, time_ms, kind, unit, location: (
            device,
            value,
            time_ms,
            kind,
            unit,
            location,
        ),
        thing_names().filter(lambda s: len(s) <= 40),
        st.floats(allow_nan=False, allow_infinity=False),
        epoch_ms(),
        st.none() | store_labels(),
        st.none() | store_labels(),
        st.none() | store_labels(),
    )
    return st.lists(one, min_size=1, max_size=count).map(
        lambda items: [
            Reading(device, f"s-{i}", value, time_ms, kind, unit, location)
            for i, (device, value, time_ms, kind, unit, location) in enumerate(items)
        ]
    )


# --- arrival and silence ---------------------------------------------------------

NODATA_WINDOWS_MS = (60_000, 5 * 60_000, 10 * 60_000)


@st.composite
def arrival_histories(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A `nodata` window and the arrival times of one sensor's readings: bursts,
    steady reporting and silences both shorter and longer than the window."""
    window = draw(st.sampled_from(NODATA_WINDOWS_MS))
    gaps = draw(
        st.lists(
            st.one_of(
                st.integers(1_000, window // 3),
                st.integers(window // 2, 3 * window),
            ),
            min_size=1,
            max_size=40,
        )
    )
    times = list(itertools.accumulate(gaps, initial=NOW_MS))
    return window, times


# --- raw JSON text, hostile included ---------------------------------------


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """The bytes of a stream record: mostly messages (valid, mutated, or any
    JSON), spelt with JSON's freedoms, and sometimes hostile: a key given twice,
    numbers of thousands of digits, nesting hundreds deep, NaN and Infinity
    literals, invalid UTF-8, cut short."""
    value = draw(st.one_of(messages(), mutated_messages(), json_values()))
    text = json.dumps(value, indent=draw(st.sampled_from([None, 0, 2])))
    if isinstance(value, dict) and text.startswith("{") and len(text) > 2:
        extra = draw(
            st.sampled_from(
                [
                    "",
                    '"deviceId": "pump-17", ',
                    '"data": [], ',
                    '"timestamp": 1764237600000, ',
                    f'"firmware": {_nested(draw(st.sampled_from([3, 199, 200, 201, 600])))}, ',
                    f'"serial": {"9" * draw(st.sampled_from([20, 4300, 4301, 6000]))}, ',
                    '"value": NaN, ',
                    '"value": -Infinity, ',
                ]
            )
        )
        text = "{" + extra + text[1:]  # a key given before its value in the text: the last wins
    raw = text.encode()
    damage = draw(st.sampled_from(["none"] * 6 + ["cut", "bad-utf8", "surrogate", "trailing"]))
    if damage == "cut":
        raw = raw[: draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))]
    elif damage == "bad-utf8":
        raw = raw.replace(b'"', b'"\xff', 1)
    elif damage == "surrogate":
        raw = raw.replace(b'"', b'"\\ud800', 1)
    elif damage == "trailing":
        raw += b" x"
    return raw


# --- transitions and the notification budget --------------------------------

NOTIFY_DEVICES = ("pump-1", "pump-2", "line3-a")
NOTIFY_RULES = ("hot", "cold")
NOTIFY_LOCATIONS = (None, "line-3", "line-4")
NOTIFY_TYPES = (None, "temperature")


@st.composite
def transitions(
    draw: st.DrawFn, statuses: Sequence[Status] | None = None, time_ms: int = NOW_MS
) -> Transition:
    """Transitions of a few devices, rules, locations and types: every status
    (operators' actions too), sometimes muted (snoozed)."""
    status = draw(st.sampled_from(list(statuses or Status)))
    severity = draw(st.sampled_from(list(Severity)))
    previous = draw(st.sampled_from(list(Severity)))
    device = draw(st.sampled_from(NOTIFY_DEVICES))
    rule = draw(st.sampled_from(NOTIFY_RULES))
    since = time_ms - draw(st.integers(0, 3_600_000))
    return Transition(
        alert_id=f"{device}-{rule}-{since}",
        status=status,
        severity=severity,
        previous_severity=previous,
        device_id=device,
        sensor_id=draw(st.sampled_from(SENSOR_IDS)),
        rule=rule,
        value=draw(st.none() | st.integers(-100, 100).map(float)),
        threshold=None,
        time_ms=time_ms + draw(st.integers(0, 10_000_000)),
        since_ms=since,
        direction="above",
        type=draw(st.sampled_from(NOTIFY_TYPES)),
        location=draw(st.sampled_from(NOTIFY_LOCATIONS)),
        muted=draw(st.integers(0, 9)) == 0,
    )


def notification_settings() -> st.SearchStrategy[Notifications]:
    """Notification policies within the file's ranges, small budgets included."""
    return st.builds(
        lambda group_by, window, per_window, every: Notifications(
            tuple(group_by), window, per_window, min(every, window)
        ),
        st.lists(st.sampled_from(GROUP_FIELDS), unique=True, max_size=3),
        st.sampled_from((60_000, 600_000, 3_600_000)),
        st.integers(1, 12),
        st.sampled_from((60_000, 120_000, 600_000)),
    )


@st.composite
def arrival_batches(draw: st.DrawFn, max_batches: int = 30) -> list[tuple[int, list[Transition]]]:
    """Invocations' arrival times (increasing, bursts and lulls) with the
    transitions each delivers, each transition once (unique keys)."""
    gaps = draw(
        st.lists(
            st.one_of(st.integers(0, 5_000), st.integers(5_000, 900_000)),
            min_size=1,
            max_size=max_batches,
        )
    )
    times = list(itertools.accumulate(gaps, initial=NOW_MS))[1:]
    batches: list[tuple[int, list[Transition]]] = []
    serial = itertools.count()
    for at in times:
        batch = draw(st.lists(transitions(time_ms=at), max_size=8))
        # A distinct time per transition: a distinct key, as the evaluator makes them.
        batches.append((at, [replace(t, time_ms=at + next(serial)) for t in batch]))
    return batches


# --- chattering ------------------------------------------------------------------

CHATTER_VALUES = (70.0, 80.0, 95.0)
"""OK, WARNING and CRITICAL under levels of 75 and 90."""
FLAPPING_WINDOWS_MS = (60_000, 5 * 60_000, 10 * 60_000, 20 * 60_000)


@st.composite
def chattering_histories(draw: st.DrawFn) -> tuple[Flapping, list[tuple[str, int, float]]]:
    """A flapping setting, and one sensor's readings with the sweeps between them,
    in time order, as ("reading" | "sweep", time, value): bursts of changes seconds
    apart, quiet stretches longer than the window, silences long enough for a
    no-data alert of 5 minutes."""
    setting = Flapping(
        draw(st.integers(min_value=2, max_value=6)), draw(st.sampled_from(FLAPPING_WINDOWS_MS))
    )
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(("reading", "reading", "sweep")),
                st.one_of(st.integers(1_000, 90_000), st.integers(5 * 60_000, 40 * 60_000)),
                st.sampled_from(CHATTER_VALUES),
            ),
            max_size=50,
        )
    )
    at = NOW_MS
    history = []
    for what, gap, value in steps:
        at += gap
        history.append((what, at, value))
    return setting, history


# --- IoT Core lifecycle events -----------------------------------------------


def lifecycle_event(
    client: str, kind: str, version: int, time_ms: int, **extra: Any
) -> dict[str, Any]:
    """An IoT Core presence event as IoT Core publishes it (and the connectivity
    rule's `SELECT *` hands it over): disconnected ones add their reason."""
    event: dict[str, Any] = {
        "clientId": client,
        "timestamp": time_ms,
        "eventType": kind,
        "sessionIdentifier": f"00000000-0000-0000-0000-{version:012d}",
        "principalIdentifier": "12345678901234567890123456789012",
        "versionNumber": version,
        "ipAddress": "192.0.2.10",
    }
    if kind == "disconnected":
        event |= {"clientInitiatedDisconnect": False, "disconnectReason": "CONNECTION_LOST"}
    return event | extra


@st.composite
def lifecycle_histories(draw: st.DrawFn, client: str = "pump-17") -> list[dict[str, Any]]:
    """One client's lifecycle events in the order they happened: sessions with
    increasing versionNumbers (gaps allowed), each a `connected` then its
    `disconnected` (the last session may still be open)."""
    count = draw(st.integers(min_value=1, max_value=5))
    versions = sorted(draw(st.sets(st.integers(1, 1_000), min_size=count, max_size=count)))
    time_ms = NOW_MS
    events = []
    for index, version in enumerate(versions):
        time_ms += draw(st.integers(1, 600_000))
        events.append(lifecycle_event(client, "connected", version, time_ms))
        if index < count - 1 or draw(st.booleans()):
            time_ms += draw(st.integers(1, 600_000))
            events.append(lifecycle_event(client, "disconnected", version, time_ms))
    return events


@st.composite
def redelivered(draw: st.DrawFn, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same events as IoT Core may deliver them: in any order, some twice or more."""
    copies = draw(st.lists(st.sampled_from(events), max_size=len(events) + 2))
    return draw(st.permutations([*events, *copies]))


# --- timestamps that are epoch seconds ----------------------------------------

MILLENNIUM_S = 978_307_200  # 2001-01-01T00:00:00Z
LATEST_S = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second validation takes as ms


def epoch_seconds() -> st.SearchStrategy[int | float]:
    """A time since 2001 in epoch seconds, whole or with a fraction, as a hand-written
    history may hold it (each is before 2001 read as milliseconds)."""
    whole = st.integers(min_value=MILLENNIUM_S, max_value=LATEST_S)
    return st.one_of(whole, st.tuples(whole, st.sampled_from((0.25, 0.5))).map(sum))


@st.composite
def messages_with_seconds(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """A valid message with some of its timestamps (the message's, receivedAt, a
    reading's) replaced by epoch seconds, and the fields replaced."""
    message = draw(messages())
    fields = ["timestamp", "receivedAt"] + [
        f"data[{i}].timestamp" for i in range(len(message["data"]))
    ]
    chosen = draw(st.sets(st.sampled_from(fields), max_size=len(fields)))
    for field in chosen:
        seconds = draw(epoch_seconds())
        if field.startswith("data["):
            message["data"][int(field[5 : field.index("]")])]["timestamp"] = seconds
        else:
            message[field] = seconds
    return message, chosen


# --- IoT Events alarm models ----------------------------------------------------


def iotevents_thresholds() -> st.SearchStrategy[float]:
    """A literal threshold an alarm model may hold: any finite double, integers and
    tiny or huge magnitudes alike (the double next to it must be finite too)."""
    return st.one_of(
        st.integers(min_value=-1_000_000, max_value=1_000_000).map(float),
        st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False),
    )


def readings_near(threshold: float) -> st.SearchStrategy[float]:
    """A reading at, just beside, or anywhere around a threshold."""
    beside = st.sampled_from((-2, -1, 0, 1, 2)).map(lambda steps: _steps_from(threshold, steps))
    return st.one_of(
        beside, st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)
    )


def _steps_from(value: float, steps: int) -> float:
    import math

    direction = math.inf if steps > 0 else -math.inf
    for _ in range(abs(steps)):
        value = math.nextafter(value, direction)
    return value


# --- maintenance windows ----------------------------------------------------

WINDOW_ZONES = (
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",  # a DST change of half an hour
    "Asia/Kolkata",
    "Pacific/Chatham",
)
DAY_NAMES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@st.composite
def day_lists(draw: st.DrawFn) -> tuple[str, frozenset[int]]:
    """An `every` days field and the weekdays (Monday 0) it means: `*`, days,
    ranges (wrapping too) and comma lists of them, in any case."""
    if draw(st.booleans()) and draw(st.booleans()):
        return "*", frozenset(range(7))
    parts: list[str] = []
    days: set[int] = set()
    for _ in range(draw(st.integers(1, 3))):
        first = draw(st.integers(0, 6))
        if draw(st.booleans()):
            parts.append(DAY_NAMES[first])
            days.add(first)
            continue
        last = draw(st.integers(0, 6))
        parts.append(f"{DAY_NAMES[first]}-{DAY_NAMES[last]}")
        day = first
        days.add(day)
        while day != last:
            day = (day + 1) % 7
            days.add(day)
    text = ",".join(parts)
    return (text.lower() if draw(st.booleans()) else text), frozenset(days)


@st.composite
def every_texts(draw: st.DrawFn) -> tuple[str, frozenset[int], int, int]:
    """A valid `every`, with its days and its start and end in minutes."""
    days_text, days = draw(day_lists())
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(st.integers(1, 24 * 60).filter(lambda e: e != start))
    end_text = "24:00" if end == 24 * 60 else f"{end // 60:02d}:{end % 60:02d}"
    return f"{days_text} {start // 60:02d}:{start % 60:02d}-{end_text}", days, start, end


def recurring_windows(zones: Sequence[str] = WINDOW_ZONES) -> st.SearchStrategy[Window]:
    """Recurring maintenance windows in zones with and without DST."""

    def build(every: tuple[str, frozenset[int], int, int], zone: str) -> Window:
        days, start, end = parse_every(every[0])
        return Window("w", (), days, start, end, zone)

    return st.builds(build, every_texts(), st.sampled_from(zones))


def window_instants() -> st.SearchStrategy[int]:
    """Instants over 2020-2035, minute-aligned half the time (range edges)."""
    low, high = 1_577_836_800_000, 2_082_758_400_000
    return st.one_of(
        st.integers(low, high),
        st.integers(low // 60_000, high // 60_000).map(lambda m: m * 60_000),
    )


REPLAY_RULES = (
    """
rules:
  - name: hot
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    hysteresis: 2
  - name: pressure
    match: {type: pressure, deviceId: "pump-*"}
    above: {warning: 8}
    below: {warning: 1.2}
    for: 2
""",
    """
rules:
  - name: hot
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    nodata: 2m
    flapping: {changes: 3, within: 5m}
  - name: heartbeat
    match: {deviceId: "boiler-*"}
    nodata: 1m
notifications: {maxPerWindow: 3, window: 10m, digestEvery: 2m}
""",
    """
rules:
  - name: hot
    match: {type: temperature}
    above: {warning: 75, critical: 90}
    for: 90s
notifications: {flapping: {changes: 2, within: 3m}}
""",
)
"""Rule files a replay is tried with: hysteresis and `for`, no-data and
flapping, a notification budget."""


@st.composite
def replay_histories(draw: st.DrawFn, max_lines: int = 40) -> tuple[str, list[dict[str, Any]]]:
    """A rule file of REPLAY_RULES and a recorded history for it: a few devices
    sending temperatures and pressures near the levels, with gaps, repeated
    times, receivedAt sometimes behind, and lines out of order by a few places."""
    rules = draw(st.sampled_from(REPLAY_RULES))
    count = draw(st.integers(1, max_lines))
    clock = NOW_MS
    lines: list[dict[str, Any]] = []
    for _ in range(count):
        clock += draw(st.sampled_from([0, 5_000, 30_000, 60_000, 200_000]))
        device = draw(st.sampled_from(["pump-1", "pump-2", "boiler-3"]))
        sensor, kind, levels = draw(
            st.sampled_from(
                [
                    ("temp-1", "temperature", [60.0, 74.0, 76.0, 80.0, 89.0, 91.0, 95.0]),
                    ("press-1", "pressure", [0.5, 1.3, 4.0, 7.9, 8.5]),
                ]
            )
        )
        data = [{"sensorId": sensor, "type": kind, "value": draw(st.sampled_from(levels))}]
        line: dict[str, Any] = {"deviceId": device, "timestamp": clock, "data": data}
        if draw(st.booleans()):
            line["receivedAt"] = clock + draw(st.sampled_from([0, 100, 400]))
        lines.append(line)
    for _ in range(draw(st.integers(0, count))):
        i = draw(st.integers(0, count - 1))
        j = min(count - 1, i + draw(st.integers(0, 3)))
        lines[i], lines[j] = lines[j], lines[i]
    return rules, lines


# --- conditions: rate, stuck, spike, range (issue 20) ------------------------


@st.composite
def ramps(draw: st.DrawFn) -> tuple[float, list[tuple[int, float]]]:
    """A monotone ramp: its slope per minute (on a 0.25 grid) and its readings,
    (time ms, value), at increasing times a few seconds to minutes apart."""
    slope = draw(st.integers(-80, 80)) / 4
    start = draw(st.integers(-200, 200)) / 2
    gaps = draw(st.lists(st.integers(5_000, 120_000), min_size=2, max_size=40))
    times = list(itertools.accumulate([NOW_MS, *gaps]))
    return slope, [(t, start + slope * (t - NOW_MS) / 60_000) for t in times]


@st.composite
def constant_signals(draw: st.DrawFn) -> tuple[float, list[int]]:
    """A constant value and the increasing times it was read at (gaps from
    seconds to an hour, so that some windows hold fewer than three readings)."""
    value = draw(st.integers(-1000, 1000)) / 4
    gaps = draw(st.lists(st.integers(1_000, 3_600_000), min_size=0, max_size=30))
    return value, list(itertools.accumulate([NOW_MS, *gaps]))


def range_fault_values() -> st.SearchStrategy[list[float]]:
    """Values of a thermocouple whose range is [-40, 150] and whose process
    levels are 75 and 90: mostly near the levels, sometimes impossible."""
    plausible = st.integers(120, 200).map(lambda v: v / 2)
    impossible = st.sampled_from([-273.0, -41.0, 150.5, 850.0, 1372.0])
    return st.lists(st.one_of(plausible, plausible, impossible), min_size=1, max_size=40)


def attentions(time_ms: int = NOW_MS) -> st.SearchStrategy[Attention]:
    """An episode's attention: acknowledged or not, told, a reminder due."""
    acks = st.sampled_from([("maria@plant.example", time_ms), (None, None)])
    reminders = st.sampled_from([time_ms + 3_600_000, None])
    return st.builds(
        lambda ack, remind: Attention(ack[0], ack[1], time_ms, remind), acks, reminders
    )


@st.composite
def threshold_episodes(draw: st.DrawFn, before_ms: int = NOW_MS - DAY_MS) -> Episode:
    """A threshold episode whose late-data line is before `before_ms`: quiet,
    counting a streak, or active (latched, acknowledged, maybe)."""
    last = before_ms - draw(st.integers(1, 3_600_000))
    severity = draw(st.sampled_from(list(Severity)))
    streaks = draw(
        st.sampled_from(
            [{}, {"above.warning": Streak(1, last)}, {"below.critical": Streak(2, last - 1)}]
        )
    )
    if severity is Severity.OK:
        return Episode(last_ms=last, streaks=streaks)
    return Episode(
        severity=severity,
        side=draw(st.sampled_from(["above", "below"])),
        alert_id="e" * 32,
        since_ms=last - 60_000,
        value=draw(st.integers(-500, 500).map(float)),
        last_ms=last,
        streaks=streaks,
        latched=draw(st.booleans()),
        attention=draw(st.none() | attentions(last)),
    )


@st.composite
def silences(draw: st.DrawFn, before_ms: int = NOW_MS - DAY_MS) -> Silence:
    """Arrival tracking, with or without an active no-data episode."""
    seen = before_ms - draw(st.integers(0, 3_600_000))
    severity = draw(st.sampled_from(list(Severity)))
    quiet = severity is Severity.OK
    return Silence(
        seen_ms=seen,
        window_ms=draw(st.sampled_from([60_000, 600_000])),
        value=draw(st.integers(-500, 500).map(float)),
        type="temperature",
        location="line-3",
        unit="C",
        severity=severity,
        alert_id=None if quiet else "n" * 32,
        since_ms=None if quiet else seen + 60_000,
        attention=None if quiet else draw(st.none() | attentions(seen)),
    )


@st.composite
def cares(draw: st.DrawFn, time_ms: int = NOW_MS) -> Care:
    """What operators keep on a key, every part of it set (not disabled: a
    disabled key is not evaluated)."""
    flapping = draw(st.booleans())
    return Care(
        snoozed_until_ms=time_ms + draw(st.integers(1, DAY_MS)),
        heard=Heard(Severity.WARNING, "h" * 32, Severity.OK, None),
        flaps={
            "above": Flap(
                changes=((time_ms - DAY_MS, Severity.WARNING),),
                within_ms=600_000,
                flapping=flapping,
                worst=Severity.WARNING if flapping else Severity.OK,
            )
        },
        maintenance=Hold("night-shift", time_ms + draw(st.integers(1, DAY_MS))),
    )


@st.composite
def alert_states(draw: st.DrawFn) -> AlertState:
    """A key's state with every part set: an episode, arrival tracking and
    what operators keep."""
    return AlertState(
        episode=draw(threshold_episodes()), silence=draw(silences()), care=draw(cares())
    )


@st.composite
def wire_transitions(draw: st.DrawFn) -> Transition:
    """Transitions as `to_json` may meet them: any status and levels, any text
    (quotes, control and non-ASCII characters), numbers of every kind (whole,
    non-finite, absent), and each optional field sometimes set."""
    text = st.text(max_size=12)
    maybe_text = st.none() | text
    number = st.none() | st.floats() | st.integers(-(2**70), 2**70)
    maybe_ms = st.none() | st.integers(0, 253_402_300_799_999)
    optional = st.none() | st.integers(0, 3_600_000)
    rare = draw(st.sampled_from([0, 5]))  # 0: none of the operators' or flapping's fields

    def sometimes(values: st.SearchStrategy[Any]) -> Any:
        return draw(values) if rare and draw(st.integers(0, rare - 1)) == 0 else None

    return Transition(
        alert_id=draw(text),
        status=draw(st.sampled_from(list(Status))),
        severity=draw(st.sampled_from(list(Severity))),
        previous_severity=draw(st.sampled_from(list(Severity))),
        device_id=draw(text),
        sensor_id=draw(text),
        rule=draw(text),
        value=draw(number),
        threshold=draw(number),
        time_ms=draw(st.integers(0, 253_402_300_799_999)),
        since_ms=draw(st.integers(0, 253_402_300_799_999)),
        direction=draw(st.sampled_from(["above", "below", "nodata", "rate", 'é"\n'])),
        type=draw(maybe_text),
        location=draw(maybe_text),
        unit=draw(maybe_text),
        by=sometimes(text),
        note=sometimes(text),
        until_ms=sometimes(maybe_ms),
        muted=bool(sometimes(st.just(True))),
        suppressed=sometimes(maybe_text),
        changes=sometimes(optional),
        within_ms=sometimes(optional),
        members=sometimes(optional),
        maintenance=sometimes(maybe_text),
        rules_version=draw(maybe_text),
        per_ms=sometimes(optional),
    )


@st.composite
def rule_sets_with_readings(draw: st.DrawFn) -> tuple[RuleSet, list[Reading]]:
    """One to three rules matching the same readings (a sensor's keys at rest,
    counting a streak and alerting side by side) and readings probing every
    rule's levels."""
    drawn = [replace(draw(rules()), name=f"rule-{i}") for i in range(draw(st.integers(1, 3)))]
    levels = [level for rule in drawn for level in rule_levels(rule)]
    return RuleSet(drawn), draw(reading_sequences(values_near(levels)))
