"""The rule index: the same rules, in the same order, as testing every rule; and
the bounded match cache in front of it, which never empties whole."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.core.alerts import evaluate
from telemetry.core.messages import Reading
from telemetry.core.rule_index import (
    MATCH_KEYS,
    MatchCache,
    MatchKey,
    RuleIndex,
    glob_test,
    literal_prefix,
)
from telemetry.core.rules import MATCH_KEYS as RULE_MATCH_KEYS
from telemetry.core.rules import Rule, RuleSet, Side, joined, matches
from tests.strategies import indexed_rules, match_globs, match_keys_near, message_keys, rules

NOW_MS = 1_764_237_600_000


def reading_of(key: MatchKey, value: float = 1.0) -> Reading:
    device, sensor, kind, location = key
    return Reading(device, sensor, value, NOW_MS, type=kind, location=location)


def linear(rules: list[Rule], key: MatchKey) -> tuple[Rule, ...]:
    """Today's matcher: every rule tested, in file order."""
    reading = reading_of(key)
    return tuple(r for r in rules if r.matches(reading))


@st.composite
def rules_and_keys(draw: st.DrawFn) -> tuple[list[Rule], list[MatchKey]]:
    rules = draw(indexed_rules())
    keys = draw(st.lists(match_keys_near(rules), min_size=1, max_size=8))
    return rules, keys


@settings(max_examples=400)
@given(rules_and_keys())
def test_the_index_finds_what_testing_every_rule_finds(
    drawn: tuple[list[Rule], list[MatchKey]],
) -> None:
    # Given random rules (globs with *, ?, classes, exact values, several keys)
    rules, keys = drawn
    index = RuleIndex(rules)

    # When each key is matched twice (the second answer from the per-key memo)
    first = [index.matching(key) for key in keys]
    again = [index.matching(key) for key in keys]

    # Then each answer is the linear matcher's: the same rules, in file order
    expected = [linear(rules, key) for key in keys]
    assert first == expected
    assert again == expected


@settings(max_examples=150)
@given(rules_and_keys())
def test_a_one_key_cache_changes_no_answer(drawn: tuple[list[Rule], list[MatchKey]]) -> None:
    # Given an index whose memos turn over at every new value
    rules, keys = drawn
    index = RuleIndex(rules, generation=1)

    # When keys are matched over and over, in turn
    answers = [index.matching(key) for _ in range(3) for key in keys]

    # Then every answer is still the linear matcher's
    assert answers == [linear(rules, key) for _ in range(3) for key in keys]


@settings(max_examples=150)
@given(rules_and_keys())
def test_a_rule_set_gives_readings_the_linear_matchers_rules(
    drawn: tuple[list[Rule], list[MatchKey]],
) -> None:
    # Given a rule set of random rules
    rules, keys = drawn
    rule_set = RuleSet(rules)

    # When the rules of readings with these keys are asked, through the evaluator's
    # direct read of the cache too
    found = [rule_set.for_reading(reading_of(key)) for key in keys]
    cached = [rule_set.matched.get(key) for key in keys]

    # Then they are the linear matcher's (no thresholds: nothing implicit)
    assert found == [linear(rules, key) for key in keys]
    assert [c for c in cached if c is not None] == [
        linear(rules, k) for k, c in zip(keys, cached, strict=True) if c is not None
    ]


@st.composite
def rules_and_messages(draw: st.DrawFn) -> tuple[list[Rule], list[MatchKey]]:
    rules = draw(indexed_rules())
    return rules, draw(message_keys(rules))


@settings(max_examples=400)
@given(rules_and_messages())
def test_the_readings_of_messages_get_the_linear_matchers_rules(
    drawn: tuple[list[Rule], list[MatchKey]],
) -> None:
    # Given random rules, and readings as messages bring them (runs sharing a
    # deviceId and location, devices coming back with another location)
    rules, keys = drawn
    rule_set = RuleSet(rules)

    # When each reading's rules are asked in turn, twice over (the second time
    # from the device's profile)
    found = [rule_set.for_reading(reading_of(key)) for _ in range(2) for key in keys]

    # Then each is the linear matcher's, in file order
    assert found == [linear(rules, key) for _ in range(2) for key in keys]


@settings(max_examples=150)
@given(rules_and_messages())
def test_profiles_with_one_value_memos_change_no_answer(
    drawn: tuple[list[Rule], list[MatchKey]],
) -> None:
    # Given an index whose memos of values turn over at every new value
    rules, keys = drawn
    index = RuleIndex(rules, generation=1)

    # When the readings' rules are asked through their device's profile, in turn
    answers = [
        index.answer(index.profile(device, location), sensor, kind)
        for _ in range(2)
        for device, sensor, kind, location in keys
    ]

    # Then every answer is still the linear matcher's
    assert answers == [linear(rules, key) for _ in range(2) for key in keys]


def test_rules_alike_in_their_patterns_are_all_found_in_file_order() -> None:
    # Given rules sharing their patterns, some with one more, and one by type between
    same = (("deviceId", "pump-7"), ("type", "temperature"))
    rules = [
        Rule("first", (), match=same),
        Rule("by-type", (), match=(("type", "temperature"),)),
        Rule("second", (), match=same),
        Rule("on-line-3", (), match=(*same, ("location", "line-*"))),
        Rule("third", (), match=tuple(reversed(same))),
    ]
    rule_set = RuleSet(rules)

    # When a reading of pump-7's temperature on line 3 is matched, twice
    reading = Reading("pump-7", "t1", 1.0, NOW_MS, type="temperature", location="line-3")
    found = [[r.name for r in rule_set.for_reading(reading)] for _ in range(2)]

    # Then every rule matches, in file order, both times
    assert found == [[r.name for r in rules]] * 2


def test_nothing_is_kept_per_sensor_when_no_rule_names_one() -> None:
    # Given per-pump levels by type, and one pump's 1,000 sensors of two types
    rules = RuleSet(
        [
            Rule(f"pump-{n}-{kind}", (), match=(("deviceId", f"pump-{n}"), ("type", kind)))
            for n in range(20)
            for kind in ("temperature", "pressure")
        ]
    )
    readings = [
        Reading("pump-7", f"s{n}", 1.0, NOW_MS, type=("temperature", "pressure")[n % 2])
        for n in range(1_000)
    ]

    # When each reading's rules are asked
    found = {rules.for_reading(r)[0].name for r in readings}

    # Then each got its type's rule, and the pump's profile holds one answer per type
    assert found == {"pump-7-temperature", "pump-7-pressure"}
    assert len(rules._index.profile("pump-7", None).by_type) == 2


def test_pumps_without_rules_of_their_own_share_one_profile() -> None:
    # Given a rule for one pump and one by line
    index = RuleIndex(
        [
            Rule("pump-7", (), match=(("deviceId", "pump-7"),)),
            Rule("line-3", (), match=(("location", "line-3"),)),
        ]
    )

    # When the profiles of many pumps on line 3 are found
    profiles = {id(index.profile(f"pump-{n}", "line-3")) for n in range(8, 200)}

    # Then they are one object; pump-7's and another line's are others
    assert len(profiles) == 1
    assert id(index.profile("pump-7", "line-3")) not in profiles
    assert id(index.profile("pump-8", "line-4")) not in profiles


def line_and_pump_rules(*, pumps_first: bool = False) -> list[Rule]:
    """Levels by type, by line and type, and two pumps' own levels by type."""
    shared = [
        Rule("temperature", (), match=(("type", "temperature"),)),
        Rule("line-3-temperature", (), match=(("type", "temperature"), ("location", "line-3"))),
        Rule("line-3-pressure", (), match=(("type", "pressure"), ("location", "line-3"))),
    ]
    own = [
        Rule(f"{pump}-temperature", (), match=(("deviceId", pump), ("type", "temperature")))
        for pump in ("pump-1", "pump-2")
    ]
    return own + shared if pumps_first else shared + own


def test_pumps_with_levels_of_their_own_share_their_lines_rules() -> None:
    # Given levels by type and line, and two pumps with temperature levels of their own
    rules = line_and_pump_rules()
    index = RuleIndex(rules)

    # When a temperature and a pressure reading of each pump on line 3 are matched
    keys = [
        (pump, sensor, sensor, "line-3")
        for pump in ("pump-1", "pump-2")
        for sensor in ("temperature", "pressure")
    ]
    answers = [index.matching(key) for key in keys]

    # Then each pump gets its own level after its line's rules, as the linear
    # matcher finds them; the pressure rules the pumps do not add to are one
    # answer, worked out once for the line
    assert answers == [linear(rules, key) for key in keys]
    assert [r.name for r in answers[0]] == [
        "temperature",
        "line-3-temperature",
        "pump-1-temperature",
    ]
    assert answers[1] is answers[3]
    assert index.profile("pump-1", "line-3").base is index.profile("pump-2", "line-3").base


def test_levels_of_its_own_written_before_the_shared_rules_keep_file_order() -> None:
    # Given the pumps' own levels written first in the file
    rules = line_and_pump_rules(pumps_first=True)
    rule_set = RuleSet(rules)

    # When a temperature reading of pump-2 on line 3 is matched
    found = rule_set.for_reading(reading_of(("pump-2", "t-1", "temperature", "line-3")))

    # Then its rules come in file order: its own level first
    assert [r.name for r in found] == ["pump-2-temperature", "temperature", "line-3-temperature"]


@settings(max_examples=200)
@given(st.lists(rules(), max_size=4), st.lists(rules(), min_size=1, max_size=3))
def test_rules_joined_to_matches_make_the_matches_of_them_all(
    shared: list[Rule], own: list[Rule]
) -> None:
    # Given a reading's matches, and rules of a device's own that come after them
    found = matches(shared)

    # When the device's are joined to them
    together = joined(found, tuple(own))

    # Then they are the matches of all of them: the rules in order, their quiet
    # band, whether one tracks arrival
    assert together == matches(shared + own)


def test_a_pumps_own_levels_narrow_the_quiet_band_of_its_readings() -> None:
    # Given a line's temperature levels at 90, and pump-1's own at 70
    rule_set = RuleSet(
        [
            Rule(
                "line-3-temperature",
                (Side("above", 90.0, 95.0),),
                match=(("type", "temperature"), ("location", "line-3")),
            ),
            Rule(
                "pump-1-temperature",
                (Side("above", 70.0, None),),
                match=(("deviceId", "pump-1"), ("type", "temperature")),
                nodata_ms=60_000,
            ),
        ]
    )

    # When a temperature reading of pump-1 and one of pump-2 are matched
    _, _, first_high, first_tracks = rule_set.matches_for(
        reading_of(("pump-1", "t", "temperature", "line-3"))
    )
    _, _, second_high, second_tracks = rule_set.matches_for(
        reading_of(("pump-2", "t", "temperature", "line-3"))
    )

    # Then pump-1's readings are quiet only below its own level, and it tracks
    # arrival; pump-2's are quiet below the line's
    assert (first_high, first_tracks) == (70.0, True)
    assert (second_high, second_tracks) == (90.0, False)


@given(match_globs(), st.text(alphabet="ab-1\\]![*?", max_size=6))
def test_a_glob_test_answers_as_fnmatch(pattern: str, value: str) -> None:
    # Given a pattern and a value, When the pattern's test reads the value
    answer = glob_test(pattern)(value)

    # Then it says what fnmatch says, and every match starts with the literal prefix
    assert bool(answer) is fnmatch.fnmatchcase(value, pattern)
    if answer:
        assert value.startswith(literal_prefix(pattern))


def test_the_literal_prefix_stops_at_the_first_glob_character() -> None:
    # Given patterns with and without glob characters, Then their prefixes are
    assert [literal_prefix(p) for p in ("line3-*", "pump-?1", "a[bc]", "*-temp", "exact")] == [
        "line3-",
        "pump-",
        "a",
        "",
        "exact",
    ]


def test_patterns_without_a_literal_are_the_only_ones_tested_for_every_value() -> None:
    # Given rules with exact values and literal prefixes, and patterns with neither
    rules = [
        Rule("by-type", (), match=(("type", "temperature"),)),
        Rule("line-3", (), match=(("deviceId", "line3-*"), ("type", "*"))),
        Rule("suffix", (), match=(("sensorId", "*-temp"),)),
        Rule("one-char", (), match=(("location", "?x"), ("location", "[ab]x"))),
        Rule("everything", ()),
    ]

    # When they are indexed
    index = RuleIndex(rules)

    # Then only those with no literal prefix are tested for every new value
    assert index.tested_always() == {
        "sensorId": ("*-temp",),
        "type": ("*",),
        "location": ("?x", "[ab]x"),
    }


def test_values_no_pattern_tells_apart_share_a_class() -> None:
    # Given a rule for one pump among many, and one by type
    index = RuleIndex(
        [
            Rule("pump-7", (), match=(("deviceId", "pump-7"),)),
            Rule("temperature", (), match=(("type", "temperature"),)),
        ]
    )

    # When the keys of other pumps and sensors are classified
    others = {index.classes((f"pump-{n}", f"s{n}", "temperature", None)) for n in range(8, 40)}

    # Then they all share one combination of classes, pump-7's is another
    assert len(others) == 1
    assert index.classes(("pump-7", "s1", "temperature", None)) not in others


def test_a_rule_is_reached_by_its_rarest_pattern() -> None:
    # Given per-pump levels (each pump's own) on types many rules share
    rules = [
        Rule(f"pump-{n}-{kind}", (), match=(("deviceId", f"pump-{n}"), ("type", kind)))
        for n in range(50)
        for kind in ("temperature", "pressure")
    ]

    # When they are indexed and a pump's temperature is matched
    index = RuleIndex(rules)
    key: MatchKey = ("pump-7", "t1", "temperature", None)

    # Then only that pump's rules were looked at, and its temperature rule matches
    assert index.candidates(key) == 2
    assert [r.name for r in index.matching(key)] == ["pump-7-temperature"]


def test_two_patterns_at_one_match_key_must_both_match() -> None:
    # Given rules with two patterns for deviceId, one shared, one each its own
    rules = [
        Rule(f"r{n}", (), match=(("deviceId", "pump-*"), ("deviceId", f"*-{n}"))) for n in range(5)
    ]

    # When a pump is matched
    index = RuleIndex(rules)
    key: MatchKey = ("pump-3", "t1", None, None)

    # Then only the rule both patterns accept matches, reached by its rarer pattern
    assert [r.name for r in index.matching(key)] == ["r3"]
    assert index.candidates(key) == 1


def test_a_glob_is_reached_by_its_literal_prefix() -> None:
    # Given group levels (a deviceId prefix each) on a type many rules share
    rules = [Rule("vibration", (), match=(("type", "vibration"),))] + [
        Rule(f"group-{n}", (), match=(("deviceId", f"pump-{n}*"), ("type", "vibration")))
        for n in range(10, 60)
    ]

    # When they are indexed and a vibration sensor of group 17 is matched
    index = RuleIndex(rules)
    key: MatchKey = ("pump-170", "v1", "vibration", None)

    # Then the group rules were reached by their prefix, not by the shared type
    assert index.candidates(key) == 2
    assert [r.name for r in index.matching(key)] == ["vibration", "group-17"]


def test_the_index_reads_the_same_match_keys_as_rules() -> None:
    # Given the index's key order, Then it is the rule files' one
    assert MATCH_KEYS == RULE_MATCH_KEYS


def test_the_cache_holds_at_most_two_generations() -> None:
    # Given a cache of generations of 3 keys
    cache: MatchCache[str, int] = MatchCache(3)

    # When 10 keys are put
    for n in range(10):
        cache.put(f"k{n}", n)

    # Then it holds the last full generation and the current one, no more
    assert len(cache) == 4
    assert [cache.get(f"k{n}") for n in range(10)] == [None] * 6 + [6, 7, 8, 9]


def test_a_key_asked_for_every_generation_stays() -> None:
    # Given a cache of generations of 4 keys, and a key put first
    cache: MatchCache[str, int] = MatchCache(4)
    cache.put("hot", 1)

    # When 100 other keys are put, the hot one asked for after every three
    kept = []
    for n in range(100):
        cache.put(f"k{n}", n)
        if n % 3 == 2:
            kept.append(cache.get("hot"))

    # Then it was found every time, and the cache never held more than 8 keys
    assert kept == [1] * len(kept)
    assert len(cache) <= 8


def test_the_cache_is_never_emptied_whole() -> None:
    # Given a cache of generations of 5 keys
    cache: MatchCache[int, int] = MatchCache(5)

    # When keys are put one after another
    sizes = []
    for n in range(40):
        cache.put(n, n)
        sizes.append(len(cache))

    # Then, once full, it never drops below one generation, and the newest keys are found
    assert min(sizes[5:]) >= 5
    assert all(cache.get(n) == n for n in range(35, 40))


def test_once_turned_over_a_cache_keeps_one_new_key_in_admit_every() -> None:
    # Given a cache of generations of 4 keys keeping one new key in 3 once turned over
    cache: MatchCache[int, int] = MatchCache(4, admit_every=3)
    for n in range(5):
        cache.put(n, n)  # the fifth turns it over

    # When 9 more new keys are put
    for n in range(5, 14):
        cache.put(n, n)

    # Then it holds the 5 kept before and every third of the new ones
    assert len(cache) == 8
    assert [n for n in range(5, 14) if cache.get(n) is not None] == [7, 10, 13]


def test_a_key_met_again_in_the_old_generation_is_always_kept() -> None:
    # Given a turned-over cache that keeps one new key in 100
    cache: MatchCache[str, int] = MatchCache(2, admit_every=100)
    for key in ("a", "b", "c"):
        cache.put(key, 1)

    # When a key of the old generation is asked for, and new keys are put after it
    found = cache.get("a")
    cache.put("d", 1)
    cache.put("e", 1)

    # Then it was found, and it stays although new keys were declined
    assert found == 1
    assert cache.get("a") == 1
    assert cache.get("d") is None


def test_a_cache_generation_holds_at_least_one_key() -> None:
    # Given no room, When a cache is made, Then it is refused
    with pytest.raises(ValueError, match="at least one key"):
        MatchCache(0)


def test_past_the_cache_evaluation_keeps_its_answers() -> None:
    # Given a rule set whose match cache turns over many times during one evaluation
    rule = Rule("hot", (Side("above", 50.0, None),), match=(("deviceId", "pump-*"),))
    rules = RuleSet([rule])
    rules._matches = MatchCache(2)  # a tiny cache, turned over often
    readings = [
        Reading("pump-1", f"s{n}", 60.0 if n % 2 else 10.0, NOW_MS + n, type="t") for n in range(20)
    ]

    # When they are evaluated
    evaluation = evaluate(readings, {}, rules)

    # Then every breaching sensor raised once, as with a cache large enough
    assert sorted(t.sensor_id for t in evaluation.transitions) == sorted(
        f"s{n}" for n in range(20) if n % 2
    )


def test_an_index_that_bundles_its_answers_must_say_how_to_join_them() -> None:
    # When an index is given a bundle without a join (or a join alone)
    # Then it is refused: the default join would add rules to a bundle it cannot read
    with pytest.raises(TypeError, match="bundle and join go together"):
        RuleIndex([], bundle=matches)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="bundle and join go together"):
        RuleIndex([], join=joined)  # type: ignore[call-overload]


class OneValueMemos(RuleSet):
    """A rule set whose memos of values' classes turn over at every new value."""

    _MEMO_GENERATION = 1


def test_with_memos_of_one_value_evaluation_keeps_its_answers() -> None:
    # Given levels by line and pumps' own levels, in a rule set whose memos of values
    # turn over at every new deviceId, location and type
    rules = OneValueMemos(
        [
            Rule("line", (Side("above", 50.0, None),), match=(("location", "line-*"),)),
            *(
                Rule(f"pump-{n}", (Side("above", 40.0, None),), match=(("deviceId", f"pump-{n}"),))
                for n in range(0, 20, 3)
            ),
        ]
    )
    readings = [
        Reading(
            f"pump-{n}", f"s{k}", 45.0 + 10 * k, NOW_MS + n, type=f"t{k}", location=f"line-{n % 4}"
        )
        for n in range(20)
        for k in range(2)
    ]

    # When they are evaluated, device by device
    raised = [
        (t.device_id, t.sensor_id, t.rule)
        for n in range(20)
        for t in evaluate(readings[2 * n : 2 * n + 2], {}, rules).transitions
    ]

    # Then each rule raised for the readings past its level, as the linear matcher says
    assert raised == [
        (r.device_id, r.sensor_id, rule.name)
        for r in readings
        for rule in rules.rules
        if rule.matches(r) and r.value > rule.sides[0].warning  # type: ignore[operator]
    ]
