"""Which rules match a reading, found without testing every rule.

A rule matches a reading when each of its `(key, glob)` pairs matches the
reading's value for that key (deviceId, sensorId, type, location; shell-style
globs as `fnmatch` reads them, case-sensitive); a missing value matches no
pattern. Which rules match depends on a value only through which of the rules'
patterns at its key it matches: its class. Thousands of pumps without levels of
their own share one class; sensorIds share one when no rule names them.

`RuleIndex` finds a value's class without testing every pattern: exact values
(`temperature`, `pump-0042`) by one lookup, globs by their literal prefix
(`line3-` of `line3-*`), then tested in full; only patterns with no literal
prefix (`*`, `*-temp`, `?x`) are tested for every new value. The rules of a
combination of classes are found from each rule's rarest pattern (its anchor)
and remembered: a new key then costs a lookup per key and one for the
combination, whatever the number of rules.

`MatchCache` is the bounded memo used throughout: two generations, never
emptied whole, so that a fleet with more keys than it holds pays a few lookups
per key past it, not a cliff.
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
CACHE_GENERATION: Final = 65_536
"""Keys per generation of a `MatchCache`: it holds at most twice that."""
NEW_KEYS_KEPT: Final = 8
"""A rule set's cache of keys, once its keys outnumber it, keeps one new key in
this many: a key past it costs its classes' lookups (benchmarks/bench_rules.py)."""


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

    Two generations of at most `generation` keys each: answers go to the young
    one; when it is full it becomes the old one (the previous old one is
    dropped) and a new young one starts. A key found only in the old generation
    is copied to the young one, so a key asked for at least once a generation
    stays. At most `2 * generation` keys are held. `young` is a plain dict that
    a hot loop may read directly, asking `get` for a key it lacks.

    Once it has turned over, a sign that its keys outnumber it, a new key is
    kept only one time in `admit_every` (keys met again in the old generation
    always are): past its size, most keys are answered without it anyway, and
    turning the generations over for each would cost more than the answer."""

    def __init__(self, generation: int = CACHE_GENERATION, admit_every: int = 1) -> None:
        if generation < 1 or admit_every < 1:
            raise ValueError("a generation holds at least one key, and one in at least 1 is kept")
        self.generation = generation
        self.admit_every = admit_every
        self.young: dict[K, V] = {}
        self._old: dict[K, V] = {}
        self._turned = False
        self._declined = 0

    def __len__(self) -> int:
        return len(self.young.keys() | self._old.keys())

    def get(self, key: K) -> V | None:
        found = self.young.get(key)
        if found is None:
            found = self._old.get(key)
            if found is not None:
                self._keep(key, found)
        return found

    def put(self, key: K, value: V) -> None:
        """Remember a new key's answer (one in `admit_every` once turned over)."""
        if self._turned and self.admit_every > 1:
            self._declined += 1
            if self._declined < self.admit_every:
                return
            self._declined = 0
        self._keep(key, value)

    def _keep(self, key: K, value: V) -> None:
        young = self.young
        if len(young) >= self.generation:
            self._old = young
            young = self.young = {}
            self._turned = True
        young[key] = value


class ValueClass:
    """The patterns at one match key that a value matches (their ids, sorted).
    Values of one class match the same rules; a class is one object while it is
    remembered, so that combinations of classes hash and compare by identity."""

    __slots__ = ("ids", "members")

    def __init__(self, ids: tuple[int, ...]) -> None:
        self.ids = ids
        self.members = frozenset(ids)


_NO_VALUE: Final = ValueClass(())


class _KeyPatterns:
    """The distinct patterns rules use at one match key, indexed by literal."""

    def __init__(self, position: int, generation: int) -> None:
        self.position = position
        self.ids: dict[str, int] = {}
        self.exact: dict[str, int] = {}
        self.prefixed: dict[int, dict[str, list[int]]] = {}
        self.by_prefix: list[tuple[int, dict[str, list[int]]]] = []
        self.always: list[int] = []
        self.tests: list[Test] = []
        self.classes: MatchCache[str, ValueClass] = MatchCache(generation)
        self.interned: MatchCache[tuple[int, ...], ValueClass] = MatchCache(generation)

    def add(self, pattern: str) -> int:
        """The pattern's id, filed under its literal when new."""
        found = self.ids.get(pattern)
        if found is not None:
            return found
        found = self.ids[pattern] = len(self.tests)
        self.tests.append(glob_test(pattern))
        prefix = literal_prefix(pattern)
        if prefix == pattern:
            self.exact[pattern] = found
        elif prefix:
            bucket = self.prefixed.setdefault(len(prefix), {})
            bucket.setdefault(prefix, []).append(found)
        else:
            self.always.append(found)
        return found

    def seal(self) -> None:
        self.by_prefix = sorted(self.prefixed.items())

    def classify(self, value: str) -> ValueClass:
        """The class of `value`, worked out and remembered."""
        ids = []
        exact = self.exact.get(value)
        if exact is not None:
            ids.append(exact)
        tests = self.tests
        for length, bucket in self.by_prefix:
            if length > len(value):
                break
            ids.extend(i for i in bucket.get(value[:length], ()) if tests[i](value))
        ids.extend(i for i in self.always if tests[i](value))
        if len(ids) > 1:
            ids.sort()
        key = tuple(ids)
        found = self.interned.get(key)
        if found is None:
            found = ValueClass(key)
            self.interned.put(key, found)
        self.classes.put(value, found)
        return found


class RuleIndex(Generic[R]):
    """The rules of a sequence that match a reading key, in the sequence's order:
    exactly those for which every `(key, pattern)` of `rule.match` matches the
    key's value (`fnmatch.fnmatchcase`; a missing value matches nothing).

    A key's values are reduced to their classes (remembered per value), and the
    rules of a combination of classes are remembered too. To find them, each
    rule is filed under its anchor, of its patterns the one the fewest rules
    use: a combination reaches only the rules anchored on a pattern its classes
    hold, and their other patterns are looked up in the other classes."""

    def __init__(self, rules: Sequence[R], generation: int = CACHE_GENERATION) -> None:
        self.rules: tuple[R, ...] = tuple(rules)
        used = sorted({_position(key) for rule in self.rules for key, _ in rule.match})
        self._keys = [_KeyPatterns(position, generation) for position in used]
        slot = {position: j for j, position in enumerate(used)}
        needs = [
            sorted(
                {
                    (slot[_position(key)], self._keys[slot[_position(key)]].add(pattern))
                    for key, pattern in rule.match
                }
            )
            for rule in self.rules
        ]
        for patterns in self._keys:
            patterns.seal()
        users = Counter(need for found in needs for need in found)
        self._anchored: list[dict[int, list[int]]] = [{} for _ in used]
        self._others: list[tuple[tuple[int, int], ...]] = []
        free = []
        for index, found in enumerate(needs):
            if not found:
                free.append(index)
                self._others.append(())
                continue
            anchor = min(found, key=users.__getitem__)
            self._anchored[anchor[0]].setdefault(anchor[1], []).append(index)
            self._others.append(tuple(need for need in found if need != anchor))
        self._free = tuple(free)
        self._lookups = tuple((p.position, p.classes, p.classify) for p in self._keys)
        self._answers: MatchCache[tuple[ValueClass, ...], tuple[R, ...]] = MatchCache(generation)

    def __len__(self) -> int:
        return len(self.rules)

    def tested_always(self) -> dict[str, tuple[str, ...]]:
        """Per match key, the patterns with no literal prefix: tested against
        every new value there, the only cost that grows with the rules."""
        return {
            MATCH_KEYS[p.position]: tuple(
                pattern for pattern, i in p.ids.items() if i in set(p.always)
            )
            for p in self._keys
            if p.always
        }

    def classes(self, key: MatchKey) -> tuple[ValueClass, ...]:
        """The key's values' classes, at the match keys some rule uses."""
        found = []
        for position, known, classify in self._lookups:
            value = key[position]
            if value is None:
                found.append(_NO_VALUE)
                continue
            value_class = known.young.get(value)
            if value_class is None:
                value_class = known.get(value) or classify(value)
            found.append(value_class)
        return tuple(found)

    def candidates(self, key: MatchKey) -> int:
        """How many rules finding the key's rules looks at (when not remembered)."""
        return len(self._candidates(self.classes(key)))

    def matching(self, key: MatchKey) -> tuple[R, ...]:
        """The rules that match the reading key, in the order given."""
        combination = self.classes(key)
        answer = self._answers.young.get(combination)
        if answer is None:
            answer = self._answers.get(combination)
            if answer is None:
                answer = self._rules_of(combination)
                self._answers.put(combination, answer)
        return answer

    def _candidates(self, combination: tuple[ValueClass, ...]) -> list[int]:
        found = list(self._free)
        for anchored, value_class in zip(self._anchored, combination, strict=True):
            for pattern in value_class.ids:
                found += anchored.get(pattern, ())
        found.sort()
        return found

    def _rules_of(self, combination: tuple[ValueClass, ...]) -> tuple[R, ...]:
        others, rules = self._others, self.rules
        found = []
        for index in self._candidates(combination):
            for j, pattern in others[index]:
                if pattern not in combination[j].members:
                    break
            else:
                found.append(rules[index])
        return tuple(found)


def _position(key: str) -> int:
    # Any other key reads the location, as `Rule.matches` does.
    return _POSITION.get(key, _LOCATION)
