"""The template's DevicePolicy, translated for the local broker (mosquitto).

The translation is exact or it is refused: a statement whose meaning the broker
cannot enforce exactly is a PolicyError naming it, never a wider ACL. What the
broker enforces (its listener configuration and the thing_policy plugin):

- `iot:Connect` on `client/${iot:Connection.Thing.ThingName}` (with the
  condition `iot:Connection.Thing.IsAttached` true, or none): the client id must
  be the thing whose certificate connects. The plugin refuses any other client
  id at CONNECT, so it is the only Connect resource it can express.
- `iot:Publish` -> `pattern write <topic>`; `iot:Subscribe` and `iot:Receive`
  -> `pattern read <topic>` (mosquitto's `read` is both: the two must name the
  same topics). `${iot:Connection.Thing.ThingName}` and `${iot:ClientId}` ->
  `%c` (the same value, once CONNECT has made the client id the thing name).
  A resource `*` -> `#`; a trailing `/*` -> `/+/#` (at least one more level, as
  IAM's `*` needs the slash before it); any other `*`, `?`, or an MQTT wildcard
  written in a resource cannot be expressed.
- `iot:RetainPublish`: mosquitto's `retain_available` is all or nothing, so the
  broker refuses every retained message, which is exact only when no statement
  allows it.
- Deny statements cannot be expressed (the ACL only allows).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from telemetry.local.iot_policy import ARN_PREFIX, IotPolicy, PolicyError, Statement

THING_NAME: Final = "${iot:Connection.Thing.ThingName}"
CLIENT_ID: Final = "${iot:ClientId}"
MQTT_ACTIONS: Final = ("iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive")
RETAIN: Final = "iot:RetainPublish"
_KIND: Final = {
    "iot:Connect": "client/",
    "iot:Publish": "topic/",
    "iot:Subscribe": "topicfilter/",
    "iot:Receive": "topic/",
    RETAIN: "topic/",
}


@dataclass(frozen=True, slots=True)
class BrokerPolicy:
    """What the broker is configured with: ACL lines in mosquitto's syntax (every
    retained message is refused: `translate` refuses a policy that allows one)."""

    write: tuple[str, ...]
    read: tuple[str, ...]
    sources: tuple[str, ...]

    def acl_text(self) -> str:
        lines = [f"# from the device policy: {source}" for source in self.sources]
        lines += [f"pattern write {topic}" for topic in self.write]
        lines += [f"pattern read {topic}" for topic in self.read]
        return "\n".join(lines) + "\n"


def translate(document: Mapping[str, Any]) -> BrokerPolicy:
    """The broker's ACL for a policy document (as template.yaml resolves it)."""
    policy = IotPolicy(document)
    connects = False
    write: list[str] = []
    subscribe: list[str] = []
    receive: list[str] = []
    sources: list[str] = []
    for statement in policy.statements:
        where = f"statement {statement.sid}"
        actions = _actions(statement)
        if not actions:
            continue
        if not statement.allow:
            raise PolicyError(f"{where}: the local broker cannot express a Deny")
        if not _applies_once_connected(statement, where):
            continue
        if RETAIN in actions:
            raise PolicyError(
                f"{where}: the local broker cannot express iot:RetainPublish on some topics "
                "only (mosquitto's retain_available is all or nothing)"
            )
        lines = {"iot:Publish": write, "iot:Subscribe": subscribe, "iot:Receive": receive}
        for action, resource, pattern in _patterns(statement, actions, where):
            if action == "iot:Connect":
                if pattern != "%c":
                    raise PolicyError(
                        f"{where}: the local broker can express iot:Connect only on "
                        f"client/{THING_NAME}, not {resource}"
                    )
                connects = True
            else:
                lines[action].append(pattern)
        sources.append(f"{statement.sid} ({', '.join(sorted(actions))})")
    if not connects:
        raise PolicyError(f"no statement allows iot:Connect on client/{THING_NAME}")
    if sorted(set(subscribe)) != sorted(set(receive)):
        raise PolicyError(
            "the local broker's `read` is both iot:Subscribe and iot:Receive: the policy "
            f"must allow both on the same topics (Subscribe {sorted(set(subscribe))}, "
            f"Receive {sorted(set(receive))})"
        )
    return BrokerPolicy(
        tuple(dict.fromkeys(write)),
        tuple(dict.fromkeys(subscribe)),
        sources=tuple(sources),
    )


def _patterns(statement: Statement, actions: set[str], where: str) -> list[tuple[str, str, str]]:
    """(action, resource, pattern) for each resource of the action's kind."""
    found = []
    for action in sorted(actions):
        for resource in statement.resources:
            pattern = _pattern(resource, action, where)
            if pattern is not None:
                found.append((action, resource, pattern))
    return found


def _actions(statement: Statement) -> set[str]:
    known = (*MQTT_ACTIONS, RETAIN)
    return {a for a in known if any(fnmatch.fnmatchcase(a, p) for p in statement.actions)}


def _applies_once_connected(statement: Statement, where: str) -> bool:
    """Whether the statement's conditions hold for every connection the broker
    lets in (each is its certificate's thing: IsAttached is true)."""
    for _operator, _key, expected in statement.conditions:
        if expected.lower() not in {"true", "false"}:
            raise PolicyError(f"{where}: IsAttached must be true or false, not {expected!r}")
        if expected.lower() == "false":
            return False
    return True


def _pattern(resource: str, action: str, where: str) -> str | None:
    """The mosquitto topic pattern for one resource ARN, None when the resource
    is not of the action's kind (it then never matches, here as on IoT Core)."""
    if resource == "*":
        return "%c" if action == "iot:Connect" else "#"
    if not resource.startswith(ARN_PREFIX):
        if fnmatch.fnmatchcase(ARN_PREFIX, resource.split(":iot:", 1)[0] + "*"):
            raise PolicyError(f"{where}: the local broker cannot express {resource}")
        return None
    rest = resource[len(ARN_PREFIX) :]
    kind = _KIND[action]
    if not rest.startswith(kind):
        if "*" in rest.split("/", 1)[0] or "?" in rest.split("/", 1)[0]:
            raise PolicyError(f"{where}: the local broker cannot express {resource}")
        return None
    text = rest[len(kind) :].replace(THING_NAME, "\0").replace(CLIENT_ID, "\0")
    if "${" in text or "%" in text or "+" in text or "#" in text or "?" in text:
        raise PolicyError(f"{where}: the local broker cannot express {resource}")
    if text == "*":
        text = "#"
    elif text.endswith("/*"):
        text = text[:-1] + "+/#"
    if "*" in text:
        raise PolicyError(f"{where}: the local broker cannot express {resource}")
    return text.replace("\0", "%c")
