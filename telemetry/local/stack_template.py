"""template.yaml as the local device side reads it: parameters, conditions and
the intrinsic functions its device policy, topic rule and invoke settings use.

The local broker, topic rule and devices take their policy, SQL, actions and
topics from here, rendered for the stack's parameters, so what runs locally is
what the template deploys, not a copy of it. A function, parameter value or
reference this reader cannot resolve is a TemplateError naming it, never a
silent guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from telemetry.local.server import ACCOUNT, REGION
from telemetry.settings import PACKAGE_ROOT

TEMPLATE_PATH: Final = PACKAGE_ROOT / "template.yaml"
THING_NAME_VARIABLE: Final = "${iot:Connection.Thing.ThingName}"
_NO_VALUE: Final = object()
_SUB_REFERENCE: Final = re.compile(r"\$\{(!?)([^}]+)\}")


class TemplateError(ValueError):
    """The template cannot be read or rendered; the message names what and where."""


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (`!Ref`, `!Sub`, ...) as their long forms."""


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        return {"Fn::GetAtt": value.split(".", 1)}
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _short_form)


def load_document(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain data, short forms expanded."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        document = yaml.load(text, Loader=_CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources)")
    return document


@dataclass(slots=True)
class StackTemplate:
    """One stack of the template: its parameter values and the physical values
    (`resources`) that Ref and GetAtt of its resources stand for locally."""

    document: dict[str, Any]
    parameters: dict[str, str]
    stack_name: str = "telemetry"
    resources: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        path: Path = TEMPLATE_PATH,
        *,
        stack_name: str = "telemetry",
        parameters: Mapping[str, str] | None = None,
        resources: Mapping[str, str] | None = None,
    ) -> StackTemplate:
        """The template with its defaults, overridden by `parameters`, each
        checked against the parameter's AllowedValues and AllowedPattern."""
        document = load_document(path)
        declared: dict[str, Any] = document.get("Parameters") or {}
        values = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
        for name, value in (parameters or {}).items():
            spec = declared.get(name)
            if spec is None:
                raise TemplateError(f"the template has no parameter {name}")
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [str(v) for v in allowed]:
                raise TemplateError(f"{name}: {value!r} is not one of {allowed}")
            pattern = spec.get("AllowedPattern")
            if pattern is not None and not re.fullmatch(pattern, value):
                raise TemplateError(f"{name}: {value!r} does not match {pattern}")
            values[name] = value
        return cls(document, values, stack_name, dict(resources or {}))

    def has_parameter(self, name: str) -> bool:
        return name in self.parameters

    def parameter(self, name: str) -> str:
        try:
            return self.parameters[name]
        except KeyError:
            raise TemplateError(f"the template has no parameter {name}") from None

    def resource(self, logical_id: str) -> dict[str, Any] | None:
        """A resource's rendered Properties, or None when its Condition is false."""
        spec = self.document["Resources"].get(logical_id)
        if spec is None:
            raise TemplateError(f"the template has no resource {logical_id}")
        condition = spec.get("Condition")
        if condition is not None and not self.condition(condition):
            return None
        properties = self.render(spec.get("Properties") or {}, f"{logical_id}.Properties")
        if not isinstance(properties, dict):
            raise TemplateError(f"{logical_id}.Properties is not a mapping")
        return properties

    def output(self, name: str) -> Any:
        spec = (self.document.get("Outputs") or {}).get(name)
        if spec is None:
            raise TemplateError(f"the template has no output {name}")
        return self.render(spec["Value"], f"Outputs.{name}")

    def condition(self, name: str) -> bool:
        expression = (self.document.get("Conditions") or {}).get(name)
        if expression is None:
            raise TemplateError(f"the template has no condition {name}")
        return self._holds(expression, f"Conditions.{name}")

    def render(self, value: Any, where: str = "template") -> Any:
        """`value` with every intrinsic function evaluated, as CloudFormation would."""
        rendered = self._render(value, where)
        if rendered is _NO_VALUE:
            raise TemplateError(f"{where}: AWS::NoValue where a value is needed")
        return rendered

    # --- evaluation ----------------------------------------------------------

    def _render(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            items = [self._render(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._function(key, argument, f"{where}.{key}")
        out = {}
        for key, item in value.items():
            rendered = self._render(item, f"{where}.{key}")
            if rendered is not _NO_VALUE:
                out[key] = rendered
        return out

    def _function(self, name: str, argument: Any, where: str) -> Any:
        if name == "Ref":
            return self._reference(str(argument), where)
        if name == "Fn::GetAtt":
            target = ".".join(argument) if isinstance(argument, list) else str(argument)
            return self._physical(target, where)
        if name == "Fn::Sub":
            return self._sub(argument, where)
        if name == "Fn::Join":
            delimiter, items = argument
            parts = self._render(items, where)
            if not isinstance(parts, list):
                raise TemplateError(f"{where}: Fn::Join needs a list")
            return str(delimiter).join(str(part) for part in parts)
        if name == "Fn::Split":
            delimiter, source = argument
            return str(self._render(source, where)).split(str(delimiter))
        if name == "Fn::If":
            condition, when_true, when_false = argument
            chosen = when_true if self.condition(str(condition)) else when_false
            return self._render(chosen, where)
        raise TemplateError(f"{where}: the local run cannot evaluate {name}")

    def _reference(self, name: str, where: str) -> Any:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self._physical(name, where)

    def _physical(self, target: str, where: str) -> str:
        try:
            return self.resources[target]
        except KeyError:
            raise TemplateError(
                f"{where}: {target} has no local value (the local run did not create it)"
            ) from None

    def _sub(self, argument: Any, where: str) -> str:
        if isinstance(argument, str):
            text, variables = argument, {}
        else:
            text, raw = argument
            variables = {k: str(self.render(v, f"{where}.{k}")) for k, v in raw.items()}

        def substitute(match: re.Match[str]) -> str:
            literal, name = match.groups()
            if literal:
                return "${" + name + "}"
            if name in variables:
                return variables[name]
            if "." in name:
                return self._physical(name, where)
            return str(self._reference(name, where))

        return _SUB_REFERENCE.sub(substitute, str(text))

    def _holds(self, expression: Any, where: str) -> bool:
        if not isinstance(expression, dict) or len(expression) != 1:
            raise TemplateError(f"{where}: not a condition")
        ((name, argument),) = expression.items()
        if name == "Fn::Equals":
            left, right = (self.render(item, where) for item in argument)
            return bool(str(left) == str(right))
        if name == "Fn::Not":
            return not self._holds(argument[0], where)
        if name == "Fn::And":
            return all(self._holds(item, where) for item in argument)
        if name == "Fn::Or":
            return any(self._holds(item, where) for item in argument)
        if name == "Condition":
            return self.condition(str(argument))
        raise TemplateError(f"{where}: the local run cannot evaluate {name}")


def rule_name(template: StackTemplate) -> str:
    """The telemetry rule's name, as the template derives it from the stack's."""
    try:
        name = template.document["Resources"]["TelemetryRule"]["Properties"]["RuleName"]
    except KeyError:
        raise TemplateError("the template has no TelemetryRule with a RuleName") from None
    return str(template.render(name, "TelemetryRule.Properties.RuleName"))


def device_topic(template: StackTemplate, thing_name: str) -> str:
    """The topic a device publishes its telemetry to (the DeviceTelemetryTopic
    output, which follows TopicFilter and BasicIngest), for this thing."""
    pattern = str(template.output("DeviceTelemetryTopic"))
    if THING_NAME_VARIABLE not in pattern:
        raise TemplateError("DeviceTelemetryTopic does not name the thing")
    return pattern.replace(THING_NAME_VARIABLE, thing_name)
