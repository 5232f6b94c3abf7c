"""A local InfluxDB for the demo and the tests: Debian's `influxdb` package (1.x).

`LocalInfluxd` starts `influxd` on free loopback ports with a temporary data
directory and configuration, and stops it; `influxql()` runs one InfluxQL
statement through `/query` on any InfluxDB that answers it (1.x, 2 through its
1.x-compatible API, 3). Local runs only: never imported by the function.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Final

START_TIMEOUT_S: Final = 20.0
HOW_TO_GET_ONE: Final = (
    "no InfluxDB for --store influxdb: install Debian's influxdb package "
    "(apt-get install influxdb) for a local influxd, or pass --influxdb-url of one running"
)

_CONFIG: Final = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
  logging-enabled = false
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
"""


class InfluxError(RuntimeError):
    """A local InfluxDB cannot be started, or an InfluxDB did not answer a query."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalInfluxd:
    """`influxd` (1.x) on 127.0.0.1, without auth, in a directory of its own
    (a temporary one unless `root` is given), from enter to exit."""

    def __init__(self, root: Path | None = None) -> None:
        self._given_root = root
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self.root = root or Path()
        self.http_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def __enter__(self) -> LocalInfluxd:
        binary = shutil.which("influxd")
        if binary is None:
            raise InfluxError(HOW_TO_GET_ONE)
        if self._given_root is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="influxd-")
            self.root = Path(self._temporary.name)
        for _ in range(3):  # a port taken between choosing and binding: choose again
            self.http_port = free_port()
            config = self.root / "influxdb.conf"
            config.write_text(
                _CONFIG.format(root=self.root, rpc_port=free_port(), http_port=self.http_port)
            )
            with (self.root / "influxd.log").open("ab") as log:
                self.process = subprocess.Popen(  # noqa: S603 - influxd from PATH, our config
                    [binary, "run", "-config", str(config)], stdout=log, stderr=log
                )
            if self._wait_ready():
                return self
            self._stop()
        self._cleanup()
        raise InfluxError(f"influxd did not start; see {self.root / 'influxd.log'}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()
        self._cleanup()

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/ping", timeout=1) as answer,  # noqa: S310
            ):
                if answer.status == 204:
                    return True
            time.sleep(0.05)
        return False

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def _cleanup(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None


def influxql(
    url: str, statement: str, database: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """One InfluxQL statement through `/query` (POST, epoch ms); InfluxError with the
    server's words when it fails."""
    form = {"q": statement, **({"db": database} if database else {})}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(  # noqa: S310 - an http(s) URL the user gave
        f"{url.rstrip('/')}/query?epoch=ms",
        data=urllib.parse.urlencode(form).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            result: dict[str, Any] = json.load(answer)
    except urllib.error.HTTPError as exc:
        raise InfluxError(
            f"{url}: {exc.code} {exc.read().decode(errors='replace')[:200]}"
        ) from None
    except (OSError, ValueError) as exc:
        raise InfluxError(f"{url}: {exc}") from None
    for item in result.get("results", []):
        if "error" in item:
            raise InfluxError(f"{statement}: {item['error']}")
    return result


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of every series of a query's answer, GROUP BY tags included."""
    out = []
    for item in result.get("results", []):
        for series in item.get("series", []):
            tags = series.get("tags", {})
            out += [
                tags | dict(zip(series["columns"], values, strict=True))
                for values in series["values"]
            ]
    return out
