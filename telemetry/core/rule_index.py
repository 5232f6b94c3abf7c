"""Which rules match a reading, found without testing every rule.

A rule matches a reading when each of its `(key, glob)` pairs matches the
reading's value for that key (deviceId, sensorId, type, location; shell-style
globs as `fnmatch` reads them, case-sensitive); a missing value matches no
pattern. Most patterns say literally what they match: an exact value
(`temperature`, `pump-0042`), or a literal prefix every match starts with
(`line3-` of `line3-*`). `RuleIndex` files each rule once, under the most
selective of its literals (its anchor): a reading's values reach only the rules
whose anchor they hit, and only those are checked in full. Rules with no literal
to file them under (`*`, `*-temp`, `?x`, no `match` at all) are checked for every
key; they are the only part of the cost that grows with the number of rules.

`MatchCache` is the bounded memo in front of it: two generations, never emptied
whole, so that a fleet with more keys than it holds pays the index's cost on a
miss, not a cliff.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Final, Generic, Protocol, TypeVar

MATCH_KEYS: Final = ("deviceId", "sensorId", "type", "location")
"""The reading values a rule may match on, in the order of a `MatchKey`."""
MatchKey = tuple[str, str, str | None, str | None]
"""A reading's (deviceId, sensorId, type, location): all that matching reads."""
GLOB_CHARACTERS: Final = frozenset("*?[")
_POSITION: Final = {key: position for position, key in enumerate(MATCH_KEYS)}
_LOCATION: Final = 3
CACHE_GENERATION: Final = 32_768
"""Keys per generation of a `MatchCache`: it holds at most twice that."""


class Matchable(Protocol):
    """What the index needs of a rule: its `(key, glob)` pairs."""

    @property
    def match(self) -> tuple[tuple[str, str], ...]: ...


R = TypeVar("R", bound=Matchable)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Test = Callable[[str], object]


def literal_prefix(pattern: str) -> str:
    """The characters before the first glob character: every string the pattern
    matches starts with them (the whole pattern when it has none)."""
    for position, character in enumerate(pattern):
        if character in GLOB_CHARACTERS:
            return pattern[:position]
    return pattern


def is_exact(pattern: str) -> bool:
    """Whether the pattern matches exactly one string, itself."""
    return GLOB_CHARACTERS.isdisjoint(pattern)


def glob_test(pattern: str) -> Test:
    """A function telling whether a value matches the glob, with the answer of
    `fnmatch.fnmatchcase`: a string comparison when the pattern is an exact
    value, `prefix*` or `*suffix` (`*` among them), else its regular expression,
    compiled when first used."""
    head, tail = pattern[:-1], pattern[1:]
    if is_exact(pattern):
        return pattern.__eq__
    if pattern.startswith("*") and is_exact(tail):
        return _ends_with(tail)
    if pattern.endswith("*") and is_exact(head):
        return _starts_with(head)
    return _regex(pattern)


def _starts_with(prefix: str) -> Test:
    def test(value: str) -> bool:
        return value.startswith(prefix)

    return test


def _ends_with(suffix: str) -> Test:
    def test(value: str) -> bool:
        return value.endswith(suffix)

    return test


def _regex(pattern: str) -> Test:
    compiled: list[Test] = []

    def test(value: str) -> object:
        if not compiled:
            compiled.append(re.compile(fnmatch.translate(pattern)).match)
        return compiled[0](value)

    return test


class MatchCache(Generic[K, V]):
    """A bounded memo that is never emptied whole.

    Two generations of at most `generation` keys each: new answers go to the
    young one; when it is full it becomes the old one (the previous old one is
    dropped) and a new young one starts. A key found only in the old generation
    is copied to the young one, so a key asked for at least once a generation
    stays. At most `2 * generation` keys are held. `young` is a plain dict that
    a hot loop may read directly, asking `get` for a key it lacks."""

    def __init__(self, generation: int = CACHE_GENERATION) -> None:
        if generation < 1:
            raise ValueError("a generation holds at least one key")
        self.generation = generation
        self.young: dict[K, V] = {}
        self._old: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self.young.keys() | self._old.keys())

    def get(self, key: K) -> V | None:
        found = self.young.get(key)
        if found is None:
            found = self._old.get(key)
            if found is not None:
                self.put(key, found)
        return found

    def put(self, key: K, value: V) -> None:
        young = self.young
        if len(young) >= self.generation:
            self._old = young
            young = self.young = {}
        young[key] = value


class RuleIndex(Generic[R]):
    """The rules of a sequence that match a reading key, in the sequence's order:
    exactly those for which every `(key, pattern)` of `rule.match` matches the
    key's value (`fnmatch.fnmatchcase`; a missing value matches nothing).

    Each rule is filed under one anchor, among its patterns' literals (an exact
    value, else a non-empty literal prefix) the one the fewest rules share, so
    that a value hitting it brings the fewest candidates. Which anchored rules a
    value hits is remembered per match key (a `MatchCache`): a new sensor of a
    known device costs a few lookups and a check of its candidates' other
    patterns. Answers with the same rules share one tuple."""

    def __init__(self, rules: Sequence[R], generation: int = CACHE_GENERATION) -> None:
        self.rules: tuple[R, ...] = tuple(rules)
        tests: dict[str, Test] = {}

        def test_of(pattern: str) -> Test:
            found = tests.get(pattern)
            if found is None:
                found = tests[pattern] = glob_test(pattern)
            return found

        literals = [_literals(rule) for rule in self.rules]
        shared = Counter(literal for found in literals for literal in found)
        exact: list[dict[str, list[int]]] = [{} for _ in MATCH_KEYS]
        prefixed: list[dict[int, dict[str, list[int]]]] = [{} for _ in MATCH_KEYS]
        always: list[int] = []
        anchor_tests: list[Test | None] = []
        rest: list[tuple[tuple[int, Test], ...]] = []
        for index, (rule, found) in enumerate(zip(self.rules, literals, strict=True)):
            pairs = [(_position(key), test_of(pattern)) for key, pattern in rule.match]
            if not found:
                always.append(index)
                anchor_tests.append(None)
                rest.append(tuple(pairs))
                continue
            anchor = min(found, key=lambda o: (shared[o], o[2] == "prefix", -len(o[1])))
            position, literal, kind = anchor
            if kind == "exact":
                exact[position].setdefault(literal, []).append(index)
            else:
                bucket = prefixed[position].setdefault(len(literal), {})
                bucket.setdefault(literal, []).append(index)
            chosen = found[anchor]
            anchor_tests.append(pairs[chosen][1])
            rest.append(tuple(pair for j, pair in enumerate(pairs) if j != chosen))
        self._exact = exact
        self._prefixed = [sorted(p.items()) for p in prefixed]
        self._positions = tuple(
            position for position in range(len(MATCH_KEYS)) if exact[position] or prefixed[position]
        )
        self._always = tuple(always)
        self._anchor_tests = anchor_tests
        self._rest = rest
        self._hits: list[MatchCache[str, tuple[int, ...]]] = [
            MatchCache(generation) for _ in MATCH_KEYS
        ]
        self._answers: MatchCache[tuple[int, ...], tuple[R, ...]] = MatchCache(generation)

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def unanchored(self) -> tuple[R, ...]:
        """The rules with no literal to be filed under, tested for every new key:
        the only part of a match's cost that grows with the number of rules."""
        return tuple(self.rules[index] for index in self._always)

    def candidates(self, key: MatchKey) -> int:
        """How many rules matching the key tests in full."""
        return len(self._candidates(key))

    def matching(self, key: MatchKey) -> tuple[R, ...]:
        """The rules that match the reading key, in the order given."""
        candidates = self._candidates(key)
        rest = self._rest
        matched = []
        for index in candidates:
            for position, test in rest[index]:
                value = key[position]
                if value is None or not test(value):
                    break
            else:
                matched.append(index)
        ids = tuple(matched)
        answer = self._answers.get(ids)
        if answer is None:
            answer = tuple(self.rules[index] for index in ids)
            self._answers.put(ids, answer)
        return answer

    def _candidates(self, key: MatchKey) -> list[int]:
        """The rules whose anchor the key hits, and the unanchored, in order."""
        candidates: list[int] = []
        sources = 0
        for position in self._positions:
            value = key[position]
            if value is None:
                continue
            hits = self._hits[position].get(value)
            if hits is None:
                hits = self._anchored(position, value)
            if hits:
                candidates += hits
                sources += 1
        if self._always:
            candidates += self._always
            sources += 1
        if sources > 1:
            candidates.sort()
        return candidates

    def _anchored(self, position: int, value: str) -> tuple[int, ...]:
        """The rules anchored on this match key whose pattern there matches `value`."""
        hits = list(self._exact[position].get(value, ()))
        by_prefix = []
        for length, bucket in self._prefixed[position]:
            if length > len(value):
                break
            for index in bucket.get(value[:length], ()):
                test = self._anchor_tests[index]
                if test is not None and test(value):
                    by_prefix.append(index)
        if by_prefix:
            hits = sorted(hits + by_prefix)
        found = tuple(hits)
        self._hits[position].put(value, found)
        return found


Literal = tuple[int, str, str]
"""(match key position, literal, "exact" or "prefix")"""


def _literals(rule: Matchable) -> dict[Literal, int]:
    """A rule's usable literals, each with the index of the pair it comes from."""
    found: dict[Literal, int] = {}
    for index, (key, pattern) in enumerate(rule.match):
        position = _position(key)
        if is_exact(pattern):
            found.setdefault((position, pattern, "exact"), index)
        elif prefix := literal_prefix(pattern):
            found.setdefault((position, prefix, "prefix"), index)
    return found


def _position(key: str) -> int:
    # Any other key reads the location, as `Rule.matches` does.
    return _POSITION.get(key, _LOCATION)
