"""Settings checked without pydantic: exactly what the pydantic model accepts, and the
model's words for every problem; a valid environment imports no pydantic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.errors import ConfigurationError
from telemetry.settings import FIELDS, Settings, _checked
from telemetry.settings_model import SettingsModel, settings_from

ROOT = Path(__file__).resolve().parent.parent
VALID = {
    "TIMESTREAM_DB": "telemetry",
    "TIMESTREAM_TABLE": "readings",
    "ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts",
    "DEAD_LETTER_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
    "STATE_TABLE": "state",
}
INFLUXDB = {
    "TIMESERIES_STORE": "influxdb",
    "INFLUXDB_URL": "https://influx.example.com:8181",
    "INFLUXDB_DATABASE": "telemetry",
    "INFLUXDB_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:t-AbCdEf",
}
SAMPLES: dict[str, list[str]] = {
    "TIMESTREAM_DB": ["db", "  db  ", " ", ""],
    "TIMESTREAM_TABLE": ["t", "\tt", ""],
    "ALERTS_TOPIC_ARN": ["arn:aws:sns:x", "arn:aws-cn:sns:y", "sns", "arn:aws:sns:\n"],
    "DEAD_LETTER_QUEUE_URL": ["http://q", "https://q\n", "ftp://q", "https:// q"],
    "STATE_TABLE": ["s", " s ", "", "  "],
    "RULES_PATH": ["rules", "/tmp/rules", "", "räles"],
    "SHADOW_NAME": ["", "alerts", "a b", "x" * 65, "a:b_c-d"],
    "IOT_ENDPOINT": ["abc.iot.amazonaws.com", ""],
    "POWERTOOLS_LOG_LEVEL": ["INFO", "debug", "verbose", "info\n", ""],
    "POWERTOOLS_TRACE_DISABLED": ["false", "true", ""],
    "SWEEP_FAN_OUT": ["parallel", "inline", "both", ""],
    "AWS_LAMBDA_FUNCTION_NAME": ["fn", ""],
    "TIMESERIES_STORE": ["timestream", "influxdb", "other", ""],
    "INFLUXDB_URL": [
        "https://influx.example.com:8181",
        "http://127.0.0.1:8086",
        "http://influx.example.com",
        "https://u:p@h",
        "https://h:99999",
        "https://h/?q=1",
        " ",
        "",
    ],
    "INFLUXDB_API": ["v1", "v2", "v3", "v4"],
    "INFLUXDB_DATABASE": ["db", " ", "", "dé"],
    "INFLUXDB_ORG": ["org", " "],
    "INFLUXDB_TOKEN_SECRET_ARN": [
        INFLUXDB["INFLUXDB_TOKEN_SECRET_ARN"],
        INFLUXDB["INFLUXDB_TOKEN_SECRET_ARN"] + "\n",
        "arn:aws:secretsmanager:x",
        " ",
    ],
    "INFLUXDB_TOKEN": ["tok-123", " ", ""],
}


def outcome(call: Any, env: dict[str, str]) -> Any:
    try:
        return call(env).model_dump()
    except ConfigurationError as exc:
        return ("ConfigurationError", str(exc))


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    env = dict(draw(st.sampled_from([VALID, VALID | INFLUXDB, INFLUXDB])))
    for name in draw(st.lists(st.sampled_from(sorted(SAMPLES)), unique=True, max_size=5)):
        env[name] = draw(st.sampled_from(SAMPLES[name]))
    for name in draw(st.lists(st.sampled_from(sorted(env)), unique=True, max_size=2)):
        del env[name]
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(SAMPLES)))
        env[name] = draw(st.text(max_size=12))
    return env


@settings(max_examples=400)
@given(env=environments())
def test_the_plain_check_and_the_model_agree_on_every_environment(env: dict[str, str]) -> None:
    # Given any environment, valid or not
    # When the settings are read, and when the pydantic model reads them
    ours, model = outcome(Settings.from_env, env), outcome(settings_from, env)

    # Then both give the same settings, or the same problems in the same words
    assert ours == model


@settings(max_examples=200)
@given(env=environments())
def test_the_plain_check_vouches_only_for_what_the_model_accepts(env: dict[str, str]) -> None:
    # Given any environment the plain check accepts on its own
    checked = _checked(env)
    if checked is None:
        return
    # Then the model accepts it too, with the same values
    assert settings_from(env).model_dump() == checked.model_dump()


def test_a_valid_environment_is_checked_without_pydantic() -> None:
    # Given a valid environment of either store
    for env in (VALID, VALID | INFLUXDB):
        # When a fresh interpreter reads it
        code = (
            "import sys; from telemetry.settings import Settings; "
            f"s = Settings.from_env({env!r}); "
            "print(s.timeseries_store, 'pydantic' in sys.modules)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        # Then it has its settings and never imported pydantic
        assert done.stdout.split() == [env.get("TIMESERIES_STORE", "timestream"), "False"]


def test_an_invalid_environment_gets_the_models_words() -> None:
    # Given an environment with an invalid and a missing variable
    env = VALID | {"SHADOW_NAME": "a b"}
    del env["STATE_TABLE"]

    # When it is read, then the problems are the model's, naming each variable
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(env)
    assert str(raised.value) == (
        "invalid configuration: STATE_TABLE: is required but not set; SHADOW_NAME: "
        "String should match pattern '^[a-zA-Z0-9:_-]{0,64}$'"
    )


def test_the_field_table_is_the_models() -> None:
    # Given the plain field table and the pydantic model's fields
    model = SettingsModel.model_fields

    # Then they name the same fields, variables, requirement and deployment, in order
    assert list(FIELDS) == list(model)
    for name, field in FIELDS.items():
        extra = model[name].json_schema_extra
        deployed = not (isinstance(extra, dict) and extra.get("deployed") is False)
        assert (field.variable, field.required, field.deployed) == (
            model[name].validation_alias,
            model[name].is_required(),
            deployed,
        )
