"""The function's configuration: read from the environment once per cold start.

Every variable the code reads is a field here, named by its validation alias;
nothing else in the package reads os.environ. A missing or invalid variable
stops the function at start with an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from telemetry.errors import ConfigurationError

PACKAGE_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_RULES_PATH: Final = PACKAGE_ROOT / "rules"

NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
_OPTIONAL: Final[dict[str, Any]] = {"deployed": False}


class Settings(BaseModel):
    """Validated settings. Fields marked `deployed: False` are optional and not
    set by template.yaml (local endpoints, overrides)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    timestream_db: NonEmpty = Field(validation_alias="TIMESTREAM_DB")
    timestream_table: NonEmpty = Field(validation_alias="TIMESTREAM_TABLE")
    alerts_topic_arn: Annotated[str, StringConstraints(pattern=r"^arn:aws[a-z-]*:sns:")] = Field(
        validation_alias="ALERTS_TOPIC_ARN"
    )
    dead_letter_queue_url: Annotated[str, StringConstraints(pattern=r"^https?://\S+$")] = Field(
        validation_alias="DEAD_LETTER_QUEUE_URL"
    )
    state_table: NonEmpty = Field(validation_alias="STATE_TABLE")
    rules_path: Path = Field(DEFAULT_RULES_PATH, validation_alias="RULES_PATH")
    shadow_name: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9:_-]{0,64}$")] = Field(
        "alerts", validation_alias="SHADOW_NAME"
    )
    iot_endpoint: str | None = Field(
        None, validation_alias="IOT_ENDPOINT", json_schema_extra=_OPTIONAL
    )
    aws_endpoint_url: str | None = Field(
        None, validation_alias="AWS_ENDPOINT_URL", json_schema_extra=_OPTIONAL
    )
    service_name: str = Field("telemetry", validation_alias="POWERTOOLS_SERVICE_NAME")
    metrics_namespace: str = Field("IoTTelemetry", validation_alias="POWERTOOLS_METRICS_NAMESPACE")
    trace_disabled: str = Field("true", validation_alias="POWERTOOLS_TRACE_DISABLED")
    log_level: (
        Annotated[str, StringConstraints(pattern=r"(?i)^(debug|info|warning|error|critical)$")]
        | None
    ) = Field(None, validation_alias="POWERTOOLS_LOG_LEVEL")

    @property
    def tracing(self) -> bool:
        """Tracing costs ~0.5 s of cold start (aws_xray_sdk), so it is opt-in:
        on only when POWERTOOLS_TRACE_DISABLED is explicitly false."""
        return self.trace_disabled.strip().lower() in {"false", "0", "no"}

    @property
    def resolved_rules_path(self) -> Path:
        """RULES_PATH as given, or relative to the function package's root."""
        if self.rules_path.is_absolute() or self.rules_path.exists():
            return self.rules_path
        return PACKAGE_ROOT / self.rules_path

    @property
    def iot_data_endpoint(self) -> str | None:
        endpoint = self.iot_endpoint or self.aws_endpoint_url
        if endpoint and "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        return endpoint or None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Settings from an environment mapping, or ConfigurationError naming
        every variable that is missing or invalid."""
        values = {k: v for k, v in env.items() if not (k == "AWS_ENDPOINT_URL" and not v)}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_url=False, include_input=False):
                name = str(error["loc"][0]) if error["loc"] else "environment"
                detail = "is required but not set" if error["type"] == "missing" else error["msg"]
                problems.append(f"{name}: {detail}")
            raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None


def environment_variables() -> dict[str, bool]:
    """Every variable Settings reads, and whether the deployed stack must set it."""
    out = {}
    for field in Settings.model_fields.values():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        out[str(field.validation_alias)] = bool(extra.get("deployed", True))
    return out
