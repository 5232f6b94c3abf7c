"""Logs and metrics as CloudWatch reads them: JSON lines and EMF on stdout.

The same lines Powertools' Logger and Metrics print, from a few dozen lines of
standard library instead of two imports a cold start pays for:

- a log line is one JSON object: `level`, `location`, `message`, `timestamp`,
  `service`, the keys appended for the invocation (`request_id`) and the
  record's `extra` fields; an exception adds `exception` and `exception_name`;
- metrics are CloudWatch embedded metric format (EMF): one object per flush
  with the metrics' values as lists, the `service` dimension by default, or
  the dimensions given to `emit`.

Records go to the `telemetry` logger (stdlib), so `logging` configuration and
log capture in tests see them.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

_STANDARD_ATTRIBUTES: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime"}
COUNT: Final = "Count"

F = TypeVar("F", bound=Callable[..., Any])


def _now_iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created * 1000) % 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, extras and appended keys included."""

    def __init__(self, service: str, keys: Mapping[str, Any]) -> None:
        super().__init__()
        self._service = service
        self._keys = keys

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "timestamp": _now_iso(record.created),
            "service": self._service,
            **self._keys,
        }
        line.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES)
        if record.exc_info:
            line["exception_name"] = getattr(record.exc_info[0], "__name__", None)
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class _Stdout(logging.Handler):
    """Writes each record as a line on whatever sys.stdout is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)


class _NotOurs(logging.Filter):
    """For handlers that were on the root logger before ours (the Lambda
    runtime's): our records are already printed, once."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._prefix = name

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == self._prefix or record.name.startswith(self._prefix + "."))


class Logger:
    """The function's logger: JSON lines on stdout, level set from settings."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._keys: dict[str, Any] = {}
        self._log = logging.getLogger(service)
        if not any(isinstance(h, _Stdout) for h in self._log.handlers):
            handler = _Stdout()
            handler.setFormatter(JsonFormatter(service, self._keys))
            self._log.addHandler(handler)
            for existing in logging.getLogger().handlers:
                if type(existing).__module__ != "_pytest.logging":  # caplog still sees them
                    existing.addFilter(_NotOurs(service))
        if self._log.level == logging.NOTSET:  # a level set beforehand stands
            self._log.setLevel(logging.INFO)

    def set_level(self, level: str) -> None:
        self._log.setLevel(level.upper())

    def append_keys(self, **keys: Any) -> None:
        self._keys.update(keys)

    def debug(self, msg: str, **kwargs: Any) -> None:
        self._log.debug(msg, stacklevel=2, **kwargs)

    def info(self, msg: str, **kwargs: Any) -> None:
        self._log.info(msg, stacklevel=2, **kwargs)

    def warning(self, msg: str, **kwargs: Any) -> None:
        self._log.warning(msg, stacklevel=2, **kwargs)

    def error(self, msg: str, **kwargs: Any) -> None:
        self._log.error(msg, stacklevel=2, **kwargs)

    def exception(self, msg: str, **kwargs: Any) -> None:
        self._log.exception(msg, stacklevel=2, **kwargs)


class Metrics:
    """Counts of one invocation, flushed as one EMF object (dimension `service`).

    `emit` writes a metric with dimensions of its own (and `service`) at once,
    for the per-status and per-severity counts dashboards group by, and for
    the shadow mirror's failures the template alarms on.
    """

    def __init__(self, service: str, namespace: str | None = None) -> None:
        self.service = service
        self.namespace = namespace
        self._values: dict[str, list[float]] = {}

    def add_metric(self, name: str, value: float, unit: str = COUNT) -> None:
        del unit  # every metric of the function is a Count
        self._values.setdefault(name, []).append(float(value))

    def clear_metrics(self) -> None:
        self._values = {}

    def flush(self) -> None:
        """Print the invocation's metrics (nothing when there are none) and clear them."""
        values, self._values = self._values, {}
        if values:
            self._print(values, {"service": self.service})

    def emit(self, name: str, value: float, dimensions: Mapping[str, str]) -> None:
        """One metric with `dimensions` besides `service` (an alarm names them all)."""
        self._print({name: [float(value)]}, {"service": self.service, **dimensions})

    def log_metrics(self, handler: F) -> F:
        """Decorate the entry point: flush after every invocation, even a failed one."""

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                self.flush()

        return wrapper  # type: ignore[return-value]

    def _print(self, values: Mapping[str, list[float]], dimensions: Mapping[str, str]) -> None:
        blob = {
            "_aws": {
                "Timestamp": time.time_ns() // 1_000_000,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [list(dimensions)],
                        "Metrics": [{"Name": name, "Unit": COUNT} for name in values],
                    }
                ],
            },
            **dimensions,
            **values,
        }
        sys.stdout.write(json.dumps(blob, separators=(",", ":")) + "\n")
