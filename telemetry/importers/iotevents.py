"""AWS IoT Events alarm and detector models, converted to rules where they are
threshold or heartbeat alerts, and a report of everything else.

Input: the JSON `aws iotevents describe-alarm-model` and `describe-detector-model`
print, one model or a list of them, with or without the `alarmModel` /
`detectorModel` wrapper (the `create-*-model` input shape is read too). Output:
the rules (as a rule file's entries, which `telemetry rules check` accepts) and,
per model, what was converted, what was not (with the reason), and advice: each
with the JSONPath-like path of what it speaks of, relative to the model
(`$.alarmRule.simpleRule.comparisonOperator`).

What converts:

- An alarm model's `simpleRule` with a literal threshold and GREATER,
  GREATER_OR_EQUAL, LESS or LESS_OR_EQUAL. Our levels breach on strict
  inequality (`value > level`), so an *_OR_EQUAL threshold t becomes the level
  next to t on the inside (the largest double below t for >=, the smallest
  above for <=): a reading equal to t breaches and one past it on the other
  side clears, exactly as IoT Events compares doubles. Severity (an integer,
  lower more severe) maps to CRITICAL at or below `critical_at`, else WARNING.
  An acknowledge flow becomes `latch: true`.
- A detector model of two states, normal (initial) and alarm, whose two
  transitions are one of: an input against literals (a threshold, the clear
  condition giving the hysteresis); a counter of breaching inputs reset by a
  normal one, the transition testing it ("N in a row": `for: N`; SERIAL
  evaluation only, since under BATCH the transition sees the count before this
  input's increment); a timer reset on every input whose `timeout()` raises, and
  any input returning (`nodata`). Converted detector alerts are WARNING.

Everything else is reported with its path, and a model either converts whole
(its notifications become advice: what to subscribe to) or not at all.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from telemetry.core.rule_specs import duration_words
from telemetry.core.rules import NODATA_MAX_MS, NODATA_MIN_MS, RULE_NAME_PATTERN

Kind = Literal["alarm", "detector"]
MatchKey = Literal["type", "sensorId"]

DEFAULT_CRITICAL_AT: Final = 1
"""Severities at or below this are CRITICAL. IoT Events gives severity no
meaning; plants number alarm priorities as industrial alarm management does, 1
the most urgent, and a migration should page only for what was marked so."""

RULE_NAME_MAX: Final = 64
NOTIFYING_ACTIONS: Final = (
    "sns",
    "lambda",
    "sqs",
    "firehose",
    "iotTopicPublish",
    "dynamoDB",
    "dynamoDBv2",
    "iotSiteWise",
)
STATE_ACTIONS: Final = ("setVariable", "setTimer", "resetTimer", "clearTimer")
_OPERATORS: Final = {
    "GREATER": ">",
    "GREATER_OR_EQUAL": ">=",
    "LESS": "<",
    "LESS_OR_EQUAL": "<=",
    "EQUAL": "==",
    "NOT_EQUAL": "!=",
}
_COMPLEMENT: Final = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}
_FLIPPED: Final = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "==", "!=": "!="}


class ModelError(ValueError):
    """A document that is not an IoT Events model: the input is unreadable."""


# --- what the user says -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputMapping:
    """`--map PATH=type:VALUE`: readings of the input attribute PATH (as the model
    writes it after `$input.`) are our readings whose `key` is `value`."""

    path: str
    key: MatchKey
    value: str


def parse_mapping(text: str) -> InputMapping:
    """`PATH=type:VALUE` or `PATH=sensorId:VALUE`; ValueError in the user's words."""
    path, equals, target = text.partition("=")
    key, colon, value = target.partition(":")
    path = path.strip().removeprefix("$input.")
    if not equals or not colon or not path or not value.strip():
        raise ValueError(
            f"{text!r} is not PATH=type:VALUE or PATH=sensorId:VALUE "
            "(for example TempInput.sensorData.temperature=type:temperature)"
        )
    if key not in ("type", "sensorId"):
        raise ValueError(f"{text!r}: map to type or sensorId (got {key!r})")
    return InputMapping(path, "type" if key == "type" else "sensorId", value.strip())


@dataclass(frozen=True, slots=True)
class Options:
    """How to convert: the CRITICAL boundary and the input mappings."""

    critical_at: int = DEFAULT_CRITICAL_AT
    mappings: tuple[InputMapping, ...] = ()

    def match_for(self, path: str) -> InputMapping | None:
        return next((m for m in self.mappings if m.path == path), None)


# --- the report -------------------------------------------------------------


@dataclass(slots=True)
class ModelReport:
    """What became of one model: rules converted, conditions not, advice."""

    name: str
    kind: Kind
    source: str = ""
    converted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    not_converted: list[tuple[str, str]] = field(default_factory=list)
    advice: list[tuple[str, str]] = field(default_factory=list)
    inputs: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "converted": [{"path": p, "rule": r} for p, r in self.converted],
            "notConverted": [{"path": p, "reason": r} for p, r in self.not_converted],
            "advice": [{"path": p, "advice": a} for p, a in self.advice],
        }


@dataclass(slots=True)
class ImportResult:
    """Every model's report, and the rules in file order."""

    models: list[ModelReport] = field(default_factory=list)

    @property
    def rules(self) -> list[dict[str, Any]]:
        return [rule for model in self.models for _, rule in model.converted]

    @property
    def complete(self) -> bool:
        """Every condition converted (advice alone does not count against it)."""
        return not any(model.not_converted for model in self.models)

    def unused_mappings(self, options: Options) -> list[InputMapping]:
        used = set().union(*(m.inputs for m in self.models)) if self.models else set()
        return [m for m in options.mappings if m.path not in used]

    def to_json(self) -> dict[str, Any]:
        return {"models": [m.to_json() for m in self.models]}


# --- reading documents ------------------------------------------------------


def models_in(document: Any) -> list[tuple[Kind, dict[str, Any]]]:
    """The models of one parsed file: a model, a wrapped one, or a list of them.
    ModelError when something in it is not an IoT Events model."""
    items = document if isinstance(document, list) else [document]
    if not items:
        raise ModelError("an empty list: no model in it")
    found: list[tuple[Kind, dict[str, Any]]] = []
    for index, item in enumerate(items):
        where = f"item {index + 1}: " if isinstance(document, list) else ""
        if not isinstance(item, dict):
            raise ModelError(f"{where}not a JSON object (an alarm or detector model)")
        if isinstance(item.get("alarmModel"), dict):
            found.append(("alarm", item["alarmModel"]))
        elif isinstance(item.get("detectorModel"), dict):
            found.append(("detector", item["detectorModel"]))
        elif "alarmRule" in item or "alarmModelName" in item:
            found.append(("alarm", item))
        elif "detectorModelDefinition" in item:
            found.append(("detector", item))
        else:
            raise ModelError(
                f"{where}neither an alarm model (alarmModelName, alarmRule) nor a detector "
                "model (detectorModelDefinition), as describe-alarm-model or "
                "describe-detector-model print them"
            )
    return found


def convert(documents: Sequence[tuple[str, Any]], options: Options | None = None) -> ImportResult:
    """Convert every model of the parsed `documents` ((source, JSON) pairs).
    ModelError (naming the source) when one holds something that is not a model."""
    options = options or Options()
    result = ImportResult()
    names: set[str] = set()
    for source, document in documents:
        try:
            models = models_in(document)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None
        for kind, model in models:
            report = (
                convert_alarm_model(model, options)
                if kind == "alarm"
                else convert_detector_model(model, options)
            )
            report.source = source
            _unique_names(report, names)
            result.models.append(report)
    return result


def _unique_names(report: ModelReport, names: set[str]) -> None:
    for index, (path, rule) in enumerate(report.converted):
        name = rule["name"]
        if name in names:
            suffix = 2
            while f"{name[: RULE_NAME_MAX - 4]}-{suffix}" in names:
                suffix += 1
            renamed = f"{name[: RULE_NAME_MAX - 4]}-{suffix}"
            report.advice.append(
                (path, f"another model already gave a rule the name {name!r}: named {renamed!r}")
            )
            report.converted[index] = (path, {**rule, "name": renamed})
            name = renamed
        names.add(name)


def rule_name(model_name: str, report: ModelReport, path: str) -> str:
    """The model's name as a rule name (64 characters of letters, digits, . _ : -)."""
    name = re.sub(r"[^A-Za-z0-9._:-]", "-", model_name).lstrip("._:-") or "imported"
    if len(name) > RULE_NAME_MAX:
        report.advice.append(
            (path, f"the name is longer than a rule name's 64 characters: cut to {name[:64]!r}")
        )
        name = name[:RULE_NAME_MAX]
    if not re.match(RULE_NAME_PATTERN, name):  # pragma: no cover - the substitution above
        name = "imported"
    return name


# --- levels -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Level:
    side: Literal["above", "below"]
    level: float
    words: str


def _level_for(op: str, threshold: float) -> _Level:
    """Our strict level that breaches exactly where `value op threshold` holds."""
    if op == ">":
        return _Level("above", threshold, "")
    if op == "<":
        return _Level("below", threshold, "")
    if op == ">=":
        level = math.nextafter(threshold, -math.inf)
        side: Literal["above", "below"] = "above"
    else:
        level = math.nextafter(threshold, math.inf)
        side = "below"
    words = (
        f"{op} {threshold:g} became the level {level!r}, the double next to {threshold:g} "
        f"on the inside: our levels breach on strict inequality, so a reading of exactly "
        f"{threshold:g} breaches, as it did in IoT Events"
    )
    return _Level(side, level, words)


def _hysteresis(raise_level: _Level, clear_op: str, clear_at: float) -> float | None:
    """The hysteresis that clears exactly where `value clear_op clear_at` holds;
    None when it cannot (a clear condition inside the raise, or not exact in doubles)."""
    if raise_level.side == "above":
        target = clear_at if clear_op == "<=" else math.nextafter(clear_at, -math.inf)
        h = raise_level.level - target
        exact = raise_level.level - h == target
    else:
        target = clear_at if clear_op == ">=" else math.nextafter(clear_at, math.inf)
        h = target - raise_level.level
        exact = raise_level.level + h == target
    if h < 0 or not exact:
        return None
    return 0.0 if h == 0 else h


def _literal(text: Any) -> float | None:
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        value = float(text)
    elif isinstance(text, str) and re.fullmatch(_NUMBER, text.strip()):
        value = float(text.strip())
    else:
        return None
    return value if math.isfinite(value) else None


def _number(value: float) -> float | int:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


# --- alarm models -----------------------------------------------------------


def _filter_policy(name: str) -> str:
    return json.dumps({"rule": [name]})


TOPIC: Final = "the alerts topic (the stack's output AlertsTopicArn)"


def _subscribe_words(name: str, protocol: str | None = None) -> str:
    how = f", protocol {protocol}," if protocol else ""
    return f"subscribe to {TOPIC}{how} with the filter policy {_filter_policy(name)}"


def _action_advice(kind: str, body: Mapping[str, Any], name: str) -> str:
    """What to subscribe instead of an IoT Events action, in the user's words. Every
    change of the rule's alerts is published with the message attribute `rule`."""
    if kind == "sns":
        target = body.get("targetArn", "the topic")
        return (
            f"sns {target}: for each endpoint subscribed to it, {_subscribe_words(name)} "
            "(a topic cannot subscribe to a topic)"
        )
    endpoints = {
        "lambda": ("functionArn", "lambda", "the function's ARN"),
        "sqs": ("queueUrl", "sqs", "the queue's ARN, its policy letting the topic send"),
        "firehose": (
            "deliveryStreamName",
            "firehose",
            "the stream's ARN, with a subscription role",
        ),
    }
    if kind in endpoints:
        key, protocol, endpoint = endpoints[kind]
        target = body.get(key, "")
        return f"{kind} {target}: {_subscribe_words(name, protocol)} (endpoint: {endpoint})"
    if kind == "iotTopicPublish":
        topic = body.get("mqttTopic", "the topic")
        return (
            f"iotTopicPublish {topic}: devices and apps read the active alerts in the device's "
            f"alerts shadow; to publish to {topic} too, {_subscribe_words(name, 'lambda')} a "
            "function that republishes"
        )
    if kind == "iotEvents":
        return (
            f"iotEvents {body.get('inputName', '')}: models do not feed each other here; "
            f"{_subscribe_words(name)} whatever consumed that input"
        ).replace("  ", " ")
    return (
        f"{kind}: the alert history (Timestream or InfluxDB) keeps every transition; to write "
        f"elsewhere too, {_subscribe_words(name, 'lambda')} a function that does"
    )


def _actions_of(raw: Any, path: str) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(path, kind, body) of each action of a list; one key per action."""
    if not isinstance(raw, list):
        return
    for index, action in enumerate(raw):
        if isinstance(action, dict) and action:
            kind = next(iter(action))
            body = action[kind] if isinstance(action[kind], dict) else {}
            yield f"{path}[{index}].{kind}", kind, body


def _input_match(
    input_path: str, options: Options, report: ModelReport, where: str
) -> dict[str, str]:
    report.inputs.add(input_path)
    mapped = options.match_for(input_path)
    if mapped is not None:
        return {mapped.key: mapped.value}
    segment = input_path.rsplit(".", 1)[-1].strip("`")
    report.advice.append(
        (
            where,
            (
                f"$input.{input_path} matched as readings of type {segment!r} (its last segment); "
                f"if that is not the type your devices send, say so with "
                f"--map {input_path}=type:VALUE or --map {input_path}=sensorId:VALUE"
            ),
        )
    )
    return {"type": segment}


def convert_alarm_model(model: Mapping[str, Any], options: Options) -> ModelReport:
    """One alarm model: its simple rule as a rule, or the reason it is not one."""
    name = str(model.get("alarmModelName") or "unnamed-alarm-model")
    report = ModelReport(name, "alarm")
    _key_advice(model, report, "$.key")
    rule_path = "$.alarmRule.simpleRule"
    alarm_rule = model.get("alarmRule")
    simple = alarm_rule.get("simpleRule") if isinstance(alarm_rule, dict) else None
    if not isinstance(simple, dict):
        report.not_converted.append(("$.alarmRule", "no simpleRule: nothing to convert"))
        return report
    rule = _alarm_rule(model, simple, options, report, rule_path)
    if rule is None:
        return report
    report.converted.append((rule_path, rule))
    _alarm_advice(model, rule["name"], report)
    return report


def _key_advice(model: Mapping[str, Any], report: ModelReport, path: str) -> None:
    key = model.get("key")
    if key:
        report.advice.append(
            (
                path,
                (
                    f"the model's key ({key}) becomes nothing: an alert here is always per "
                    "device (the thing that sent the reading), sensor and rule"
                ),
            )
        )


def _alarm_rule(
    model: Mapping[str, Any],
    simple: Mapping[str, Any],
    options: Options,
    report: ModelReport,
    path: str,
) -> dict[str, Any] | None:
    operator = simple.get("comparisonOperator")
    op = _OPERATORS.get(str(operator))
    ok = True
    if op in ("==", "!="):
        report.not_converted.append(
            (
                f"{path}.comparisonOperator",
                (
                    f"{operator}: an alert here is a level crossed (above or below), not a value "
                    "equal or not equal to one; not guessed"
                ),
            )
        )
        ok = False
    elif op is None:
        report.not_converted.append(
            (f"{path}.comparisonOperator", f"{operator!r} is not a comparison operator")
        )
        ok = False
    threshold = _literal(simple.get("threshold"))
    if threshold is None:
        report.not_converted.append(
            (
                f"{path}.threshold",
                (
                    f"{simple.get('threshold')!r} is not a literal number (an expression such as "
                    "an input's attribute): a rule's levels are numbers in the rule file; "
                    "write the level there"
                ),
            )
        )
        ok = False
    input_property = _input_path(simple.get("inputProperty"))
    if input_property is None:
        report.not_converted.append(
            (
                f"{path}.inputProperty",
                f"{simple.get('inputProperty')!r} is not an input attribute ($input.NAME.path)",
            )
        )
        ok = False
    if not ok or op is None or threshold is None or input_property is None:
        return None
    level = _level_for(op, threshold)
    if not math.isfinite(level.level):
        report.not_converted.append(
            (f"{path}.threshold", f"{threshold!r} is beyond the largest level a rule can hold")
        )
        return None
    if level.words:
        report.advice.append((f"{path}.comparisonOperator", level.words))
    severity = _alarm_severity(model, options, report)
    name = rule_name(report.name, report, "$.alarmModelName")
    rule: dict[str, Any] = {
        "name": name,
        "description": (
            f"Imported from IoT Events alarm model {report.name}: "
            f"{simple.get('inputProperty')} {op} {threshold:g}"
        ),
        "match": _input_match(input_property, options, report, f"{path}.inputProperty"),
        level.side: {severity.lower(): _number(level.level)},
    }
    capabilities = model.get("alarmCapabilities")
    flow = capabilities.get("acknowledgeFlow") if isinstance(capabilities, dict) else None
    if not isinstance(flow, dict):
        report.advice.append(
            (
                "$.alarmCapabilities",
                (
                    "no acknowledgeFlow in the model: converted without a latch (the alert "
                    "resolves when the value comes back); if these alarms waited for an "
                    "acknowledgement, add latch: true"
                ),
            )
        )
    elif flow.get("enabled") is True:
        rule["latch"] = True
        report.advice.append(
            (
                "$.alarmCapabilities.acknowledgeFlow.enabled",
                (
                    "latch: true: an alert whose value comes back stays LATCHED until an operator "
                    f"acknowledges or resets it (telemetry alerts ack|reset DEVICE SENSOR {name})"
                ),
            )
        )
    return rule


def _alarm_severity(model: Mapping[str, Any], options: Options, report: ModelReport) -> str:
    severity = model.get("severity")
    if not isinstance(severity, int) or isinstance(severity, bool):
        report.advice.append(("$.severity", "no severity: the rule's level is WARNING"))
        return "WARNING"
    chosen = "CRITICAL" if severity <= options.critical_at else "WARNING"
    report.advice.append(
        (
            "$.severity",
            (
                f"severity {severity} is {chosen} (severities at or below --critical-at "
                f"{options.critical_at} are CRITICAL)"
            ),
        )
    )
    return chosen


def _alarm_advice(model: Mapping[str, Any], name: str, report: ModelReport) -> None:
    init = model.get("alarmCapabilities", {})
    init = init.get("initializationConfiguration") if isinstance(init, dict) else None
    if isinstance(init, dict) and init.get("disabledOnInitialization") is True:
        report.advice.append(
            (
                "$.alarmCapabilities.initializationConfiguration.disabledOnInitialization",
                (
                    "IoT Events created these alarms DISABLED until an operator enabled them; "
                    "rules here evaluate from the first reading. To keep a key quiet until it is "
                    f"commissioned: telemetry alerts disable DEVICE SENSOR {name} (and enable "
                    "it later)"
                ),
            )
        )
    events = model.get("alarmEventActions")
    actions = events.get("alarmActions") if isinstance(events, dict) else None
    for path, kind, body in _actions_of(actions, "$.alarmEventActions.alarmActions"):
        report.advice.append((path, _action_advice(kind, body, name)))
    notification = model.get("alarmNotification")
    raw = notification.get("notificationActions") if isinstance(notification, dict) else None
    for index, entry in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(entry, dict):
            base = f"$.alarmNotification.notificationActions[{index}]"
            report.advice.extend(_notification_advice(entry, base, name))


def _notification_advice(
    entry: Mapping[str, Any], base: str, name: str
) -> Iterator[tuple[str, str]]:
    for index, sms in enumerate(entry.get("smsConfigurations") or []):
        numbers = [
            r.get("ssoIdentity", {}).get("userId", "?")
            for r in (sms.get("recipients") or [])
            if isinstance(r, dict)
        ]
        yield (
            f"{base}.smsConfigurations[{index}]",
            (
                f"SMS to IAM Identity Center users {', '.join(numbers) or '(none)'}: for each "
                f"user's phone number, {_subscribe_words(name, 'sms')}"
            ),
        )
    for index, email in enumerate(entry.get("emailConfigurations") or []):
        recipients = email.get("recipients") if isinstance(email, dict) else None
        to = recipients.get("to", []) if isinstance(recipients, dict) else []
        users = [r.get("ssoIdentity", {}).get("userId", "?") for r in to if isinstance(r, dict)]
        yield (
            f"{base}.emailConfigurations[{index}]",
            (
                f"e-mail to IAM Identity Center users {', '.join(users) or '(none)'}: for each "
                f"user's address, {_subscribe_words(name, 'email')}"
            ),
        )
    action = entry.get("action")
    function = action.get("lambdaAction") if isinstance(action, dict) else None
    if isinstance(function, dict):
        yield (
            f"{base}.action.lambdaAction",
            _action_advice("lambda", function, name),
        )


# --- conditions -------------------------------------------------------------

_NUMBER: Final = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_INPUT_REF: Final = re.compile(r"\$input\.([A-Za-z0-9_`-]+(?:\.[A-Za-z0-9_`-]+)*)")
_VARIABLE_REF: Final = re.compile(r"\$variable\.([A-Za-z][A-Za-z0-9_]*)")
_TIMEOUT: Final = re.compile(r"timeout\(\s*([\"'])([^\"']+)\1\s*\)")
_CURRENT_INPUT: Final = re.compile(r"currentInput\(\s*([\"'])([^\"']+)\1\s*\)")
_COMPARISON: Final = re.compile(r"(>=|<=|==|!=|>|<)")


def _input_path(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    found = _INPUT_REF.fullmatch(text.strip())
    return found.group(1) if found else None


@dataclass(frozen=True, slots=True)
class _Always:
    """True on every input (no condition, `true`), or on every input of one."""

    input_name: str | None = None


@dataclass(frozen=True, slots=True)
class _Timeout:
    timer: str


@dataclass(frozen=True, slots=True)
class _Compare:
    """`subject op literal`: subject an input attribute (`input`) or a variable."""

    subject: Literal["input", "variable"]
    name: str
    op: str
    literal: float


@dataclass(frozen=True, slots=True)
class _Other:
    text: str


_Condition = _Always | _Timeout | _Compare | _Other


def _unwrapped(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for index, char in enumerate(text):
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0 and index < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text


def parse_condition(raw: Any) -> _Condition:
    """The conditions converted: none, `true`, currentInput, timeout and one
    attribute or variable against a literal; anything else is `_Other`."""
    if raw is None:
        return _Always()
    text = _unwrapped(str(raw))
    if text in ("", "true"):
        return _Always()
    if found := _CURRENT_INPUT.fullmatch(text):
        return _Always(found.group(2))
    if found := _TIMEOUT.fullmatch(text):
        return _Timeout(found.group(2))
    parts = _COMPARISON.split(text)
    if len(parts) != 3 or "&&" in text or "||" in text:
        return _Other(text)
    left, op, right = (p.strip() for p in parts)
    if _literal(left) is not None and _literal(right) is None:
        left, right, op = right, left, _FLIPPED[op]
    value = _literal(right)
    if value is None:
        return _Other(text)
    if found := _INPUT_REF.fullmatch(left):
        return _Compare("input", found.group(1), op, value)
    if found := _VARIABLE_REF.fullmatch(left):
        return _Compare("variable", found.group(1), op, value)
    return _Other(text)


# --- detector models --------------------------------------------------------


@dataclass(slots=True)
class _Event:
    path: str
    state: str
    group: Literal["onEnter", "onInput", "onExit", "transition"]
    name: str
    condition: _Condition
    condition_text: str
    actions: list[tuple[str, str, Mapping[str, Any]]]
    next_state: str | None = None

    def describe(self) -> str:
        kinds = ", ".join(
            f"{k} {b.get('variableName') or b.get('timerName') or ''}".strip()
            for _, k, b in self.actions
        )
        what = f"transition to {self.next_state}" if self.next_state else "event"
        return (
            f"{what} {self.name!r} in state {self.state!r} (condition "
            f"{self.condition_text or 'true'}; actions: {kinds or 'none'})"
        )


def _events(states: Sequence[Any]) -> list[_Event]:
    found: list[_Event] = []
    for index, state in enumerate(states):
        if not isinstance(state, dict):
            continue
        name = str(state.get("stateName"))
        base = f"$.detectorModelDefinition.states[{index}]"
        groups = (
            ("onEnter", "events", "onEnter"),
            ("onInput", "events", "onInput"),
            ("onInput", "transitionEvents", "transition"),
            ("onExit", "events", "onExit"),
        )
        for holder, key, group in groups:
            block = state.get(holder)
            raw = block.get(key) if isinstance(block, dict) else None
            for position, event in enumerate(raw if isinstance(raw, list) else []):
                if not isinstance(event, dict):
                    continue
                path = f"{base}.{holder}.{key}[{position}]"
                found.append(
                    _Event(
                        path=path,
                        state=name,
                        group=group,  # type: ignore[arg-type]
                        name=str(event.get("eventName", "")),
                        condition=parse_condition(event.get("condition")),
                        condition_text=str(event.get("condition") or ""),
                        actions=list(_actions_of(event.get("actions"), f"{path}.actions")),
                        next_state=event.get("nextState") if group == "transition" else None,
                    )
                )
    return found


@dataclass(slots=True)
class _Detector:
    """A two-state model's parts, and what the pattern found uses of them."""

    normal: str
    alarm: str
    events: list[_Event]
    raising: _Event
    clearing: _Event
    used: set[str] = field(default_factory=set)

    def in_state(self, state: str, group: str) -> list[_Event]:
        return [e for e in self.events if e.state == state and e.group == group]

    def setting(
        self, kind: str, key: str, name: str
    ) -> list[tuple[_Event, str, Mapping[str, Any]]]:
        return [
            (e, path, body)
            for e in self.events
            for path, k, body in e.actions
            if k == kind and body.get(key) == name
        ]


class _NotAPatternError(Exception):
    """The model is not one of the patterns that convert: (path, reason)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def convert_detector_model(model: Mapping[str, Any], options: Options) -> ModelReport:
    """One detector model: a rule if it is one of the patterns, else every part reported."""
    config = model.get("detectorModelConfiguration")
    config = config if isinstance(config, dict) else model
    config_path = "$.detectorModelConfiguration" if config is not model else "$"
    name = str(config.get("detectorModelName") or "unnamed-detector-model")
    report = ModelReport(name, "detector")
    _key_advice(config, report, f"{config_path}.key")
    definition = model.get("detectorModelDefinition")
    states = definition.get("states") if isinstance(definition, dict) else None
    if not isinstance(states, list):
        report.not_converted.append(("$.detectorModelDefinition", "no states: nothing to convert"))
        return report
    events = _events(states)
    try:
        detector = _two_states(definition if isinstance(definition, dict) else {}, states, events)
        evaluation = str(config.get("evaluationMethod") or "BATCH")
        rule, raising_path = _detector_rule(
            detector, evaluation, f"{config_path}.evaluationMethod", options, report
        )
    except _NotAPatternError as exc:
        report.not_converted.append((exc.path, exc.reason))
        report.not_converted.extend(
            (e.path, f"{e.describe()}: not converted with the model")
            for e in events
            if e.actions or e.group == "transition"
        )
        return report
    report.converted.append((raising_path, rule))
    _detector_leftovers(detector, rule["name"], report)
    return report


def _two_states(
    definition: Mapping[str, Any], states: list[Any], events: list[_Event]
) -> _Detector:
    names = [s.get("stateName") if isinstance(s, dict) else None for s in states]
    if len(names) != 2:
        raise _NotAPatternError(
            "$.detectorModelDefinition.states",
            f"{len(names)} states ({', '.join(map(str, names))}): only a two-state model "
            "(normal and alarm) converts; model the others as rules of their own",
        )
    normal = definition.get("initialStateName")
    if normal not in names:
        raise _NotAPatternError(
            "$.detectorModelDefinition.initialStateName",
            f"{normal!r} is not one of the states",
        )
    alarm = next(n for n in names if n != normal)
    transitions = [e for e in events if e.group == "transition"]
    raising = [e for e in transitions if e.state == normal and e.next_state == alarm]
    clearing = [e for e in transitions if e.state == alarm and e.next_state == normal]
    others = [e for e in transitions if e not in raising and e not in clearing]
    if others:
        raise _NotAPatternError(
            others[0].path,
            f"{others[0].describe()}: a two-state model converts with one transition each way "
            "and no other",
        )
    if len(raising) != 1 or len(clearing) != 1:
        where = (
            raising[1].path
            if len(raising) > 1
            else clearing[1].path
            if len(clearing) > 1
            else ("$.detectorModelDefinition.states")
        )
        raise _NotAPatternError(
            where,
            f"{len(raising)} transition(s) from {normal!r} to {alarm!r} and {len(clearing)} back: "
            "a model converts with exactly one each way",
        )
    return _Detector(str(normal), str(alarm), events, raising[0], clearing[0])


def _detector_rule(
    d: _Detector, evaluation: str, evaluation_path: str, options: Options, report: ModelReport
) -> tuple[dict[str, Any], str]:
    raise_if = d.raising.condition
    d.used.update({d.raising.path, d.clearing.path})
    if isinstance(raise_if, _Compare) and raise_if.subject == "input":
        rule = _threshold(d, raise_if, options, report)
    elif isinstance(raise_if, _Compare) and raise_if.subject == "variable":
        rule = _counter(d, raise_if, evaluation, evaluation_path, options, report)
    elif isinstance(raise_if, _Timeout):
        rule = _heartbeat(d, raise_if, options, report)
    else:
        raise _NotAPatternError(
            f"{d.raising.path}.condition",
            f"{d.raising.condition_text!r}: not one input against a literal, a counter or a "
            "timeout() (arithmetic, several inputs or variables in one condition do not convert)",
        )
    name = rule_name(report.name, report, "$.detectorModelConfiguration.detectorModelName")
    return {"name": name, "description": _description(report.name, d), **rule}, d.raising.path


def _description(model: str, d: _Detector) -> str:
    return (
        f"Imported from IoT Events detector model {model}: {d.normal} -> {d.alarm} when "
        f"{d.raising.condition_text}, back when {d.clearing.condition_text or 'true'}"
    )


def _levels(
    d: _Detector, breach: _Compare, clear: _Condition, report: ModelReport
) -> dict[str, Any]:
    if breach.op not in _COMPLEMENT:
        raise _NotAPatternError(
            f"{d.raising.path}.condition",
            f"{breach.op}: an alert here is a level crossed (>, >=, <, <=), not a value equal "
            "or not equal to one; not guessed",
        )
    level = _level_for(breach.op, breach.literal)
    if not math.isfinite(level.level):
        raise _NotAPatternError(
            f"{d.raising.path}.condition",
            f"{breach.literal!r} is beyond the largest level a rule can hold",
        )
    if level.words:
        report.advice.append((f"{d.raising.path}.condition", level.words))
    opposite = {"above": ("<", "<="), "below": (">", ">=")}[level.side]
    if (
        not isinstance(clear, _Compare)
        or clear.subject != "input"
        or clear.name != breach.name
        or clear.op not in opposite
    ):
        raise _NotAPatternError(
            f"{d.clearing.path}.condition",
            f"{d.clearing.condition_text!r}: the way back must test $input.{breach.name} "
            f"{' or '.join(opposite)} a literal, the other side of the raise",
        )
    h = _hysteresis(level, clear.op, clear.literal)
    if h is None:
        raise _NotAPatternError(
            f"{d.clearing.path}.condition",
            f"{d.clearing.condition_text!r} clears inside the raise condition (or at a level "
            "not expressible as a hysteresis): not converted",
        )
    out: dict[str, Any] = {level.side: {"warning": _number(level.level)}}
    if h:
        out["hysteresis"] = _number(h)
    return out


def _threshold(
    d: _Detector, breach: _Compare, options: Options, report: ModelReport
) -> dict[str, Any]:
    levels = _levels(d, breach, d.clearing.condition, report)
    match = _input_match(breach.name, options, report, f"{d.raising.path}.condition")
    return {"match": match, **levels}


def _counter(
    d: _Detector,
    test: _Compare,
    evaluation: str,
    evaluation_path: str,
    options: Options,
    report: ModelReport,
) -> dict[str, Any]:
    variable = test.name
    where = f"{d.raising.path}.condition"
    count = test.literal + 1 if test.op == ">" else test.literal
    if test.op not in (">=", ">", "==") or not count.is_integer() or count < 1:
        raise _NotAPatternError(
            where, f"{d.raising.condition_text!r}: not a count of N or more inputs"
        )
    increment = _setting_events(d, variable, lambda v: _is_increment(v, variable))
    reset = _setting_events(d, variable, lambda v: _literal(v) == 0)
    writes = d.setting("setVariable", "variableName", variable)
    in_normal = [e for e in d.in_state(d.normal, "onInput") if e in increment or e in reset]
    steps = [e for e in in_normal if isinstance(e.condition, _Compare)]
    adds = [e.condition for e in steps if e in increment]
    zeroes = [e.condition for e in steps if e in reset]
    breach = adds[0] if len(adds) == 1 else None
    normal = zeroes[0] if len(zeroes) == 1 else None
    rearm = [
        e
        for e in reset
        if (e.state == d.normal and e.group == "onEnter" and isinstance(e.condition, _Always))
        or e is d.clearing
        or (e.state == d.alarm and e.group == "onExit" and isinstance(e.condition, _Always))
    ]
    if not (
        isinstance(breach, _Compare)
        and isinstance(normal, _Compare)
        and breach.subject == normal.subject == "input"
        and breach.name == normal.name
        and _COMPLEMENT.get(breach.op) == normal.op
        and breach.literal == normal.literal
        and rearm
        and len(writes) == len(steps) + len(rearm)
    ):
        raise _NotAPatternError(
            where,
            f"${variable} is not a counter of inputs in a row: the pattern is an event in "
            f"{d.normal!r} adding 1 when one input breaches a literal, one setting it to 0 "
            "when it does not, and 0 again on the way back to it; nothing else setting it",
        )
    if evaluation != "SERIAL":
        raise _NotAPatternError(
            evaluation_path,
            f"{evaluation}: the counter's increment and the transition's test happen on one "
            "input, and under BATCH the transition sees the count from before it (the model "
            f"raises on breaching input {int(count) + 1}, not {int(count)}); the evaluation "
            "method decides, so this is not converted: write `for:` by hand",
        )
    for event in [*steps, *rearm]:
        d.used.update(
            p
            for p, k, b in event.actions
            if k == "setVariable" and b.get("variableName") == variable
        )
        if len(event.actions) == 1 and event is not d.clearing:
            d.used.add(event.path)
    levels = _levels(d, breach, d.clearing.condition, report)
    match = _input_match(breach.name, options, report, f"{steps[0].path}.condition")
    rule: dict[str, Any] = {"match": match, **levels}
    if count > 1:
        rule["for"] = int(count)
    return rule


def _is_increment(value: Any, variable: str) -> bool:
    text = re.sub(r"\s+", "", str(value))
    return text in (f"$variable.{variable}+1", f"1+$variable.{variable}")


def _setting_events(d: _Detector, variable: str, accept: Callable[[Any], bool]) -> list[_Event]:
    return [
        e
        for e, _, body in d.setting("setVariable", "variableName", variable)
        if accept(body.get("value"))
    ]


def _heartbeat(
    d: _Detector, timeout: _Timeout, options: Options, report: ModelReport
) -> dict[str, Any]:
    timer = timeout.timer
    where = f"{d.raising.path}.condition"
    sets = d.setting("setTimer", "timerName", timer)
    resets = d.setting("resetTimer", "timerName", timer)
    clears = d.setting("clearTimer", "timerName", timer)
    seconds = {_timer_seconds(body) for _, _, body in sets}
    every_input = [
        e
        for e, _, _ in [*sets, *resets]
        if e.state == d.normal and e.group == "onInput" and isinstance(e.condition, _Always)
    ]
    armed = [
        e
        for e, _, _ in sets
        if (e.state == d.normal and e.group == "onEnter" and isinstance(e.condition, _Always))
        or e is d.clearing
        or (e.state == d.alarm and e.group == "onExit" and isinstance(e.condition, _Always))
    ]
    back = d.clearing.condition
    if not (sets and every_input and armed and not clears and len(seconds) == 1):
        raise _NotAPatternError(
            where,
            f"timer {timer!r} is not a heartbeat: the pattern sets it (one duration) on "
            f"entering {d.normal!r}, resets it on every input there, and clears it nowhere",
        )
    (window,) = seconds
    if window is None or not NODATA_MIN_MS <= window * 1000 <= NODATA_MAX_MS:
        raise _NotAPatternError(
            where,
            f"timer {timer!r}: its duration must be a literal number of seconds from 60 to "
            "604800 (a nodata window is 1m to 7d)",
        )
    if not isinstance(back, _Always):
        raise _NotAPatternError(
            f"{d.clearing.path}.condition",
            f"{d.clearing.condition_text!r}: a heartbeat returns on any input",
        )
    for event in {id(e): e for e in [*every_input, *armed]}.values():
        d.used.update(p for p, k, b in event.actions if b.get("timerName") == timer)
        if len(event.actions) == 1 and event is not d.clearing:
            d.used.add(event.path)
    inputs = {
        c.input_name for c in [back, *(e.condition for e in every_input)] if isinstance(c, _Always)
    }
    rule: dict[str, Any] = {"nodata": duration_words(int(window) * 1000)}
    named = sorted(i for i in inputs if i)
    mapped = options.match_for(named[0]) if len(named) == 1 else None
    if named:
        report.inputs.add(named[0])
    if mapped is not None:
        rule = {"match": {mapped.key: mapped.value}, **rule}
    else:
        report.advice.append(
            (
                where,
                (
                    f"the timer watched every input of the detector; the rule watches every sensor "
                    f"of every device (no match): narrow it with --map "
                    f"{named[0] if named else 'INPUT'}=type:VALUE or edit its match"
                ),
            )
        )
    return rule


def _timer_seconds(body: Mapping[str, Any]) -> float | None:
    value = body.get("seconds", body.get("durationExpression"))
    number = _literal(value)
    return number if number is not None and number.is_integer() else None


def _detector_leftovers(d: _Detector, name: str, report: ModelReport) -> None:
    """Every action the pattern does not use: notifications as advice (where our
    RAISED and RESOLVED stand for them), the rest reported."""
    raise_groups = {(d.alarm, "onEnter"), (d.normal, "onExit")}
    clear_groups = {(d.normal, "onEnter"), (d.alarm, "onExit")}
    for event in d.events:
        if event.path in d.used and event not in (d.raising, d.clearing):
            continue
        at_change = event in (d.raising, d.clearing) or (
            (event.state, event.group) in raise_groups | clear_groups
            and isinstance(event.condition, _Always)
        )
        for path, kind, body in event.actions:
            if path in d.used:
                continue
            if kind in NOTIFYING_ACTIONS and at_change:
                report.advice.append((path, _action_advice(kind, body, name)))
            elif kind in NOTIFYING_ACTIONS:
                report.not_converted.append(
                    (
                        path,
                        (
                            f"{kind} in {event.describe()}: sent on inputs while in a state, not "
                            "on a change; alerts here notify on changes (and `repeat` reminds)"
                        ),
                    )
                )
            elif kind == "iotEvents":
                report.not_converted.append(
                    (
                        path,
                        (
                            f"iotEvents in {event.describe()}: a message to another detector; "
                            "models do not feed each other here"
                        ),
                    )
                )
            else:
                report.not_converted.append(
                    (path, f"{kind} in {event.describe()}: not part of a pattern that converts")
                )
