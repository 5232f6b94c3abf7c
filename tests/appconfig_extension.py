"""A local stand-in for the AWS AppConfig Agent Lambda extension's HTTP endpoint.

moto does not serve the extension, so tests run this instead: it answers
`GET /applications/<app>/environments/<env>/configurations/<profile>` with the
configuration deployed to it (the body as stored, `Configuration-Version` and
`Content-Type` headers, as the extension documents), 404 for any other path,
and 500 while `failing` is set (an extension that cannot reach AppConfig).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

APPLICATION = "telemetry-rules"
ENVIRONMENT = "production"
PROFILE = "rules"


@dataclass
class StandInExtension:
    port: int = 0
    version: str | None = None
    content: bytes = b""
    content_type: str = "application/json"
    failing: bool = False
    requests: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/applications/{APPLICATION}/environments/{ENVIRONMENT}/configurations/{PROFILE}"

    def deploy(self, version: str, content: str | bytes) -> None:
        self.version = version
        self.content = content.encode() if isinstance(content, str) else content

    def environment(self) -> dict[str, str]:
        """The function's variables that point at this stand-in."""
        return {
            "RULES_SOURCE": "appconfig",
            "APPCONFIG_APPLICATION": APPLICATION,
            "APPCONFIG_ENVIRONMENT": ENVIRONMENT,
            "APPCONFIG_PROFILE": PROFILE,
            "AWS_APPCONFIG_EXTENSION_HTTP_PORT": str(self.port),
        }


def _handler(extension: StandInExtension) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            extension.requests.append(self.path)
            if extension.failing:
                self._answer(500, b"cannot reach AppConfig", {})
            elif self.path != extension.path or extension.version is None:
                self._answer(404, b"configuration not found", {})
            else:
                headers = {
                    "Configuration-Version": extension.version,
                    "Content-Type": extension.content_type,
                }
                self._answer(200, extension.content, headers)

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    return Handler


@contextmanager
def stand_in_extension() -> Iterator[StandInExtension]:
    extension = StandInExtension()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(extension))
    extension.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield extension
    finally:
        server.shutdown()
        server.server_close()
