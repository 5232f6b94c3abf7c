"""An AWS IoT policy, evaluated as IoT Core does for the forms the device policy uses.

- Policy variables: `${iot:Connection.Thing.ThingName}` is the thing named by
  the client id when that thing is attached to the connection's principal (the
  device's certificate), and unresolved otherwise (AWS IoT developer guide,
  thing-policy-variables.html); `${iot:ClientId}` is the client id. A statement
  whose resource needs an unresolved variable does not apply.
- Resources: `*` matches any characters (slashes included), `?` one, as IAM
  does; MQTT wildcards (`+`, `#`) have no special meaning in a policy.
- Conditions: `Bool` on `iot:Connection.Thing.IsAttached`.
- An explicit Deny wins; without an Allow, the request is denied.

Anything else (another variable, operator or condition key) is a PolicyError
when the policy is read: the local broker never lets through what it cannot
evaluate.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from telemetry.local.server import ACCOUNT, REGION

ARN_PREFIX: Final = f"arn:aws:iot:{REGION}:{ACCOUNT}:"
_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")
_VARIABLES: Final = frozenset({"iot:Connection.Thing.ThingName", "iot:ClientId"})
_CONDITIONS: Final = {("Bool", "iot:Connection.Thing.IsAttached")}


class PolicyError(ValueError):
    """The policy uses something the local evaluator cannot decide."""


@dataclass(frozen=True, slots=True)
class Connection:
    """Who asks: the MQTT client id and the things attached to its principal."""

    client_id: str
    attached_things: frozenset[str]

    @property
    def thing_name(self) -> str | None:
        return self.client_id if self.client_id in self.attached_things else None

    def variable(self, name: str) -> str | None:
        if name == "iot:ClientId":
            return self.client_id
        return self.thing_name


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str
    allow: bool
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[tuple[str, str, str], ...]

    def applies(self, action: str, resource: str, connection: Connection) -> bool:
        if not any(fnmatch.fnmatchcase(action, pattern) for pattern in self.actions):
            return False
        if not all(_condition_holds(c, connection) for c in self.conditions):
            return False
        return any(_resource_matches(r, resource, connection) for r in self.resources)


def _condition_holds(condition: tuple[str, str, str], connection: Connection) -> bool:
    _operator, _key, expected = condition
    attached = connection.thing_name is not None
    return str(attached).lower() == expected.lower()


def _resource_matches(pattern: str, resource: str, connection: Connection) -> bool:
    resolved: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(pattern):
        value = connection.variable(match.group(1))
        if value is None:
            return False
        resolved.append(_glob(pattern[position : match.start()]))
        resolved.append(re.escape(value))
        position = match.end()
    resolved.append(_glob(pattern[position:]))
    return re.fullmatch("".join(resolved), resource, flags=re.DOTALL) is not None


def _glob(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise PolicyError(f"{where}: expected a string or a list of strings")
    return tuple(items)


def _statement(raw: Mapping[str, Any], index: int) -> Statement:
    where = f"Statement[{index}] ({raw.get('Sid', 'no Sid')})"
    effect = raw.get("Effect")
    if effect not in {"Allow", "Deny"}:
        raise PolicyError(f"{where}: Effect must be Allow or Deny")
    for unsupported in ("NotAction", "NotResource", "Principal"):
        if unsupported in raw:
            raise PolicyError(f"{where}: the local broker cannot evaluate {unsupported}")
    resources = _strings(raw.get("Resource"), f"{where}.Resource")
    for resource in resources:
        for name in _VARIABLE.findall(resource):
            if name not in _VARIABLES:
                raise PolicyError(f"{where}: the local broker cannot resolve ${{{name}}}")
    conditions: list[tuple[str, str, str]] = []
    for operator, tests in (raw.get("Condition") or {}).items():
        for key, expected in tests.items():
            if (operator, key) not in _CONDITIONS:
                raise PolicyError(f"{where}: the local broker cannot evaluate {operator} {key}")
            conditions.append((operator, key, str(expected)))
    return Statement(
        sid=str(raw.get("Sid", f"#{index}")),
        allow=effect == "Allow",
        actions=_strings(raw.get("Action"), f"{where}.Action"),
        resources=resources,
        conditions=tuple(conditions),
    )


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


class IotPolicy:
    """A policy document, checked once, then asked about requests."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        raw = document.get("Statement")
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise PolicyError("the policy has no Statement")
        self.statements: Sequence[Statement] = [_statement(s, i) for i, s in enumerate(raw)]

    def decide(self, action: str, resource: str, connection: Connection) -> Decision:
        """Whether `connection` may do `action` (`iot:Publish`, ...) on the
        resource (an ARN suffix such as `topic/dt/plant/pump-1/telemetry`)."""
        arn = ARN_PREFIX + resource
        matching = [s for s in self.statements if s.applies(action, arn, connection)]
        denied = [s.sid for s in matching if not s.allow]
        if denied:
            return Decision(False, f"{action} on {arn} denied by {', '.join(denied)}")
        allowed = [s.sid for s in matching if s.allow]
        if allowed:
            return Decision(True, f"{action} on {arn} allowed by {', '.join(allowed)}")
        return Decision(False, f"no statement allows {action} on {arn}")

    def connect(self, connection: Connection) -> Decision:
        return self.decide("iot:Connect", f"client/{connection.client_id}", connection)

    def publish(self, connection: Connection, topic: str) -> Decision:
        return self.decide("iot:Publish", f"topic/{topic}", connection)

    def retain_publish(self, connection: Connection, topic: str) -> Decision:
        """A PUBLISH with the retain flag needs this as well as iot:Publish."""
        return self.decide("iot:RetainPublish", f"topic/{topic}", connection)

    def subscribe(self, connection: Connection, topic_filter: str) -> Decision:
        return self.decide("iot:Subscribe", f"topicfilter/{topic_filter}", connection)

    def receive(self, connection: Connection, topic: str) -> Decision:
        return self.decide("iot:Receive", f"topic/{topic}", connection)
