"""A local AWS for this process: moto's server on 127.0.0.1, on a free port.

`point_at(url)` makes every boto3 client this process creates from then on
talk to that endpoint, with fake credentials: nothing the demo does can reach
a real AWS account.
"""

from __future__ import annotations

import logging
import os
import socket
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

REGION: Final = "us-east-1"
ACCOUNT: Final = "123456789012"
"""moto's default account: where its backends keep what the demo created."""

_FAKE_CREDENTIALS: Final = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
_DROPPED: Final = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


class LocalAwsError(RuntimeError):
    """The local AWS cannot be started or reached."""


class LocalAwsServer:
    """moto's threaded server, started on enter and stopped on exit."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._server: Any = None
        self.url = ""

    def __enter__(self) -> LocalAwsServer:
        try:
            from moto.server import ThreadedMotoServer  # noqa: PLC0415 - the `local` extra
        except ImportError:
            raise LocalAwsError(
                "the demo needs the local extra: pip install 'iot-telemetry-processor[local]'"
            ) from None
        # werkzeug logs every request to stderr; the demo has its own output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address=self._host, port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def point_at(url: str) -> None:
    """Send this process's AWS calls to `url`, signed with fake credentials."""
    for name in [*_DROPPED, *(n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_"))]:
        os.environ.pop(name, None)
    os.environ.update(_FAKE_CREDENTIALS)
    os.environ["AWS_ENDPOINT_URL"] = url
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_REGION"] = REGION


def check_reachable(url: str, timeout_s: float = 2.0, *, what: str = "a local AWS") -> None:
    """Raise LocalAwsError unless something accepts connections at `url`;
    `what` names the service expected there, for the message."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise LocalAwsError(f"{url!r} is not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise LocalAwsError(f"{url!r}: {exc}") from None
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise LocalAwsError(f"cannot reach {what} at {url}: {exc.strerror or exc}") from None
