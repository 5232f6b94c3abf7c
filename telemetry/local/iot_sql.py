"""The AWS IoT SQL (version 2016-03-23) of a topic rule, for the forms the
template uses, evaluated as the rules engine does (AWS IoT developer guide,
iot-sql-reference.html and the pages it links).

Supported:
- `SELECT *`, and items `expression AS name` after it; the expressions are
  `topic()`, `topic(n)` (1-based level of the topic; beyond the last level it
  is undefined and its item is left out), `timestamp()` (epoch milliseconds at
  the rules engine), `clientid()`, string and number literals, and attribute
  paths of the payload (`a.b`);
- `FROM 'filter'` with MQTT wildcards;
- `WHERE` with `=`, `<>`, `!=`, `<`, `<=`, `>`, `>=`, `AND`, `OR`, `NOT` and
  parentheses over the same expressions; it is evaluated before SELECT and
  cannot see its aliases; a comparison with an undefined operand is false;
- `${expression}` substitution templates in action parameters.

Payload merge: AWS documents `SELECT *, 15 as speed` as adding the item to the
incoming payload (iot-sql-select.html); it does not say what becomes of a
payload field with the item's name. Here items are applied in SQL order over
the payload, so with the template's `SELECT *, topic(3) AS deviceId` the
topic's deviceId replaces whatever `deviceId` the payload claims.

A payload that is not a JSON object (binary data, or JSON such as a string or
an array) cannot take items: with `*` alone it is passed on as sent, with
items it is a `BinaryOutput`, which the Lambda action refuses (AWS:
binary-payloads.html, the Lambda action needs binary payloads decoded).

Anything else (another function, CASE, nested SELECT, arithmetic, ...) is a
RuleSqlError when the rule is read, never a silent pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

SQL_VERSION: Final = "2016-03-23"
BASIC_INGEST_PREFIX: Final = "$aws/rules/"


class RuleSqlError(ValueError):
    """The rule's SQL uses something the local rules engine cannot evaluate."""


class _Undefined:
    def __repr__(self) -> str:
        return "Undefined"


UNDEFINED: Final = _Undefined()
NOT_JSON: Final = object()

_TOKEN: Final = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^']|'')*')
      | (?P<quoted>"[^"]*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><>|!=|<=|>=|[=<>(),.*])
    )""",
    re.VERBOSE,
)
_KEYWORDS: Final = frozenset({"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "TRUE", "FALSE"})
_COMPARISONS: Final = frozenset({"=", "<>", "!=", "<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    position: int


def _tokens(sql: str) -> list[Token]:
    out: list[Token] = []
    position = 0
    while position < len(sql):
        if sql[position:].strip() == "":
            break
        match = _TOKEN.match(sql, position)
        if match is None or match.end() == position:
            raise RuleSqlError(
                f"cannot read the SQL at character {position + 1}: {sql[position:]!r}"
            )
        kind = match.lastgroup or "op"
        text, start = match.group(kind), match.start(kind)
        if kind == "name" and text.upper() in _KEYWORDS:
            kind, text = "keyword", text.upper()
        out.append(Token(kind, text, start))
        position = match.end()
    return out


# --- expressions ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What the rules engine knows of a message: the topic as topic() sees it
    (without a Basic Ingest prefix), the payload, the publisher's client id and
    the time it arrived."""

    topic: str
    payload: bytes
    client_id: str
    timestamp_ms: int

    def document(self) -> Any:
        """The payload as JSON, strictly (RFC 8259: no NaN or Infinity, which
        Python's parser would take), or NOT_JSON."""
        try:
            return json.loads(self.payload, parse_constant=_not_json)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError):
            return NOT_JSON


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


@dataclass(frozen=True, slots=True)
class Expression:
    """A value computed from a message; `text` is how the SQL wrote it."""

    text: str
    compute: Callable[[MessageContext, Any], Any]

    def __call__(self, context: MessageContext, document: Any) -> Any:
        return self.compute(context, document)


def _topic_level(level: int | None) -> Callable[[MessageContext, Any], Any]:
    def compute(context: MessageContext, _document: Any) -> Any:
        if level is None:
            return context.topic
        levels = context.topic.split("/")
        return levels[level - 1] if level <= len(levels) else UNDEFINED

    return compute


def _attribute(path: tuple[str, ...]) -> Callable[[MessageContext, Any], Any]:
    def compute(_context: MessageContext, document: Any) -> Any:
        value = document
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return UNDEFINED
            value = value[key]
        return value

    return compute


def _compare(operator: str, left: Any, right: Any) -> Any:
    if UNDEFINED in (left, right):
        return UNDEFINED
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if not numbers and type(left) is not type(right):
        return UNDEFINED if operator not in {"=", "<>", "!="} else operator != "="
    if operator == "=":
        return left == right
    if operator in {"<>", "!="}:
        return left != right
    if isinstance(left, dict | list) or left is None:
        return UNDEFINED
    ordered = {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}
    return ordered[operator]


class _Parser:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens = _tokens(sql)
        self.index = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise RuleSqlError(f"the SQL ends too early: {self.sql!r}")
        self.index += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token.text == text and token.kind in {"keyword", "op"}:
            self.index += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            found = self.peek()
            where = f"{found.text!r} at character {found.position + 1}" if found else "the end"
            raise RuleSqlError(f"expected {text} but found {where} in {self.sql!r}")

    def fail(self, token: Token, what: str) -> RuleSqlError:
        return RuleSqlError(
            f"the local rules engine cannot evaluate {what} "
            f"(at character {token.position + 1} of {self.sql!r})"
        )

    # condition := and (OR and)* ; and := not (AND not)* ; not := NOT not | primary
    def condition(self) -> Expression:
        left = self.conjunction()
        while self.accept("OR"):
            right = self.conjunction()
            left = _logical("OR", left, right)
        return left

    def conjunction(self) -> Expression:
        left = self.negation()
        while self.accept("AND"):
            right = self.negation()
            left = _logical("AND", left, right)
        return left

    def negation(self) -> Expression:
        if self.accept("NOT"):
            inner = self.negation()
            return Expression(
                f"NOT {inner.text}",
                lambda c, d: UNDEFINED if (v := inner(c, d)) is UNDEFINED else v is not True,
            )
        if self.accept("("):
            inner = self.condition()
            self.expect(")")
            return inner
        left = self.value()
        token = self.peek()
        if token is not None and token.kind == "op" and token.text in _COMPARISONS:
            self.take()
            right = self.value()
            operator = token.text
            return Expression(
                f"{left.text} {operator} {right.text}",
                lambda c, d: _compare(operator, left(c, d), right(c, d)),
            )
        return left

    def value(self) -> Expression:
        token = self.take()
        if token.kind == "string":
            text = token.text[1:-1].replace("''", "'")
            return Expression(token.text, lambda _c, _d: text)
        if token.kind == "number":
            number = float(token.text) if re.search(r"[.eE]", token.text) else int(token.text)
            return Expression(token.text, lambda _c, _d: number)
        if token.kind == "keyword" and token.text in {"TRUE", "FALSE"}:
            flag = token.text == "TRUE"
            return Expression(token.text, lambda _c, _d: flag)
        if token.kind != "name":
            raise self.fail(token, repr(token.text))
        if self.accept("("):
            return self.function(token)
        path = [token.text]
        while self.accept("."):
            part = self.take()
            if part.kind != "name":
                raise self.fail(part, f"the attribute {'.'.join(path)}.{part.text}")
            path.append(part.text)
        names = tuple(path)
        return Expression(".".join(names), _attribute(names))

    def function(self, name: Token) -> Expression:
        function = name.text.lower()
        arguments: list[Token] = []
        while not self.accept(")"):
            if arguments:
                self.expect(",")
            arguments.append(self.take())
        shown = f"{name.text}({', '.join(a.text for a in arguments)})"
        if function == "topic":
            if not arguments:
                return Expression(shown, _topic_level(None))
            (level,) = arguments if len(arguments) == 1 else (None,)
            if level is None or level.kind != "number" or not level.text.isdigit():
                raise self.fail(name, shown)
            if int(level.text) < 1:
                raise RuleSqlError(f"{shown}: topic levels count from 1")
            return Expression(shown, _topic_level(int(level.text)))
        if function == "timestamp" and not arguments:
            return Expression(shown, lambda c, _d: c.timestamp_ms)
        if function == "clientid" and not arguments:
            return Expression(shown, lambda c, _d: c.client_id)
        raise self.fail(name, f"the function {shown}")


def _logical(operator: str, left: Expression, right: Expression) -> Expression:
    def compute(context: MessageContext, document: Any) -> Any:
        a, b = left(context, document), right(context, document)
        if operator == "AND":
            if a is False or b is False:
                return False
            return True if a is True and b is True else UNDEFINED
        if a is True or b is True:
            return True
        return False if a is False and b is False else UNDEFINED

    return Expression(f"{left.text} {operator} {right.text}", compute)


# --- the rule's query ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """A selected item: `*` (expression None) or an expression and its name."""

    name: str
    expression: Expression | None = None


@dataclass(frozen=True, slots=True)
class BinaryOutput:
    """What a rule produces from a payload that is not a JSON object."""

    payload: bytes


def topic_filter_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching: `+` one level, `#` the rest; `$` topics only explicitly."""
    if topic.startswith("$") and topic_filter[:1] in {"+", "#"}:
        return False
    levels, wanted = topic.split("/"), topic_filter.split("/")
    for i, part in enumerate(wanted):
        if part == "#":
            return True
        if i >= len(levels) or part not in {"+", levels[i]}:
            return False
    return len(levels) == len(wanted)


def _check_filter(topic_filter: str) -> None:
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or (
            "#" in level and (level != "#" or i != len(levels) - 1)
        ):
            raise RuleSqlError(f"{topic_filter!r} is not an MQTT topic filter")


@dataclass(frozen=True, slots=True)
class RuleQuery:
    sql: str
    items: tuple[Item, ...]
    topic_filter: str
    where: Expression | None

    def matches(self, topic: str) -> bool:
        return topic_filter_matches(self.topic_filter, topic)

    def evaluate(self, context: MessageContext) -> dict[str, Any] | BinaryOutput | None:
        """The rule's output for a message, or None when WHERE is not true."""
        document = context.document()
        if self.where is not None and self.where(context, document) is not True:
            return None
        is_object = isinstance(document, dict)
        out: dict[str, Any] = {}
        for item in self.items:
            if item.expression is None:
                if not is_object:
                    return BinaryOutput(context.payload)
                out.update(document)
                continue
            value = item.expression(context, document)
            if value is not UNDEFINED:
                out[item.name] = value
        return out


def parse_rule_sql(sql: str, version: str = SQL_VERSION) -> RuleQuery:
    """The rule's SQL, checked: every form the local engine cannot evaluate is an error."""
    if version != SQL_VERSION:
        raise RuleSqlError(
            f"AwsIotSqlVersion {version!r}: the local rules engine speaks {SQL_VERSION}"
        )
    parser = _Parser(sql)
    parser.expect("SELECT")
    items: list[Item] = []
    while True:
        token = parser.peek()
        if token is not None and token.text == "*" and token.kind == "op":
            parser.take()
            items.append(Item("*"))
        else:
            expression = parser.value()
            if parser.accept("AS"):
                alias = parser.take()
                if alias.kind != "name":
                    raise parser.fail(alias, f"the alias {alias.text!r}")
                items.append(Item(alias.text, expression))
            elif "(" not in expression.text and "." not in expression.text:
                items.append(Item(expression.text, expression))
            else:
                raise RuleSqlError(f"{expression.text}: name it with AS in {sql!r}")
        if not parser.accept(","):
            break
    parser.expect("FROM")
    source = parser.take()
    if source.kind not in {"string", "quoted"}:
        raise parser.fail(source, f"the FROM clause {source.text!r} (quote the topic filter)")
    topic_filter = source.text[1:-1]
    _check_filter(topic_filter)
    where = parser.condition() if parser.accept("WHERE") else None
    leftover = parser.peek()
    if leftover is not None:
        raise parser.fail(leftover, f"{leftover.text!r} after the query")
    return RuleQuery(sql, tuple(items), topic_filter, where)


_SUBSTITUTION: Final = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True, slots=True)
class SubstitutionTemplate:
    """An action parameter such as `${topic(3)}`: literal text and expressions."""

    text: str
    parts: tuple[str | Expression, ...]

    def render(self, context: MessageContext) -> str:
        document = context.document()
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part(context, document)
            out.append("" if value is UNDEFINED else str(value))
        return "".join(out)


def parse_substitution(text: str) -> SubstitutionTemplate:
    parts: list[str | Expression] = []
    position = 0
    for match in _SUBSTITUTION.finditer(text):
        parts.append(text[position : match.start()])
        parser = _Parser(match.group(1))
        expression = parser.value()
        if parser.peek() is not None:
            raise RuleSqlError(f"cannot evaluate the substitution {match.group(0)!r}")
        parts.append(expression)
        position = match.end()
    parts.append(text[position:])
    return SubstitutionTemplate(text, tuple(p for p in parts if p != ""))


def basic_ingest_target(topic: str) -> tuple[str, str] | None:
    """(rule name, the topic as the rule sees it) for a Basic Ingest topic."""
    if not topic.startswith(BASIC_INGEST_PREFIX):
        return None
    rest = topic[len(BASIC_INGEST_PREFIX) :]
    name, _, inner = rest.partition("/")
    if not name or not inner:
        return None
    return name, inner
