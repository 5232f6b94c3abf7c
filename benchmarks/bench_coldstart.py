"""Cold start as whole processes: CPU of the handler's import and runtime, and of
its first invocation against a local AWS, each beside plain boto3 doing the same.

Part 1, the runtime (no AWS call), as Lambda runs it. Each case is a whole Python
process, started REPEATS times taking turns after one unmeasured run; CPU is user +
system time (wait4), the median counts. Nothing measured writes bytecode
(PYTHONDONTWRITEBYTECODE, like Lambda's read-only /var/task):

- ours, as shipped: the artifact the Makefile's build lays (its `function-files`
  step over the locked dependencies, copied from this environment), bytecode
  compiled by the interpreter that runs it, as the build compiles it with the
  runtime's; `import telemetry.handler` and `build_runtime(Settings.from_env(...))`
  (settings, the five clients, the rules), with a valid environment of made-up names;
- boto3: `import boto3` and the same five clients, boto3 with its bytecode (the
  runtime's is compiled): the baseline. The handler keeps the garbage collector off
  while it starts (`telemetry.collector`); the headline compares it with boto3 with
  the collector off too, the same treatment on both sides (any handler may do it);
  boto3 with the collector on is shown beside it;
- ours, no bytecode: the same artifact without its bytecode, what a build for
  another Python than the runtime's ships (every cold start compiles the package,
  pydantic and PyYAML from source): what the build's version check prevents;
- ours with TIMESERIES_STORE=influxdb (no Timestream client, one urllib3 pool and
  a Secrets Manager client), beside ours with Timestream; the import alone;
- today: the baseline commit's code (its own tree, its bytecode);
- the interpreter alone (`python -c pass`).

Target: ours, as shipped / boto3 with the collector off <= 1.1. `-X importtime` of
ours lists the costliest imports.

Part 2, the first invocation. A local AWS (moto's server, in this process) holds
a freshly provisioned stack for every run. `telemetry.handler.lambda_handler`
handles one direct message in a fresh process (a quiet one, and one raising an
alert); beside it, a plain script imports boto3, creates the same five clients
and makes exactly the calls the function made (recorded once, replayed).

    python -m benchmarks.bench_coldstart [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final
from unittest import mock

from benchmarks.baseline import ROOT, CodeTree, trees
from benchmarks.processes import Measured, Samples, interleaved, measure, reset_local_aws
from benchmarks.workload import function_environment, ratio, table, verdict

REPEATS: Final = 15
INVOCATION_REPEATS: Final = 7
TARGET_RATIO: Final = 1.1
TOP_IMPORTS: Final = 12
CLIENTS: Final = "('timestream-write', 'sns', 'dynamodb', 'iot-data', 'sqs')"
LOCK: Final = ROOT / "requirements" / "function.txt"

BOTO3: Final = f"import boto3; [boto3.client(s, region_name='us-east-1') for s in {CLIENTS}]"
HANDLER: Final = (
    "import os; import telemetry.handler as h; from telemetry.settings import Settings; "
    "h.build_runtime(Settings.from_env(os.environ))"
)
BASELINE: Final = "boto3, collector off"
SHIPPED: Final = "ours, as shipped"
CASES: Final = {
    BASELINE: (
        "import boto3 + 5 clients, garbage collector off (baseline)",
        f"import gc; gc.disable(); {BOTO3}",
    ),
    "boto3": ("the same, garbage collector on", BOTO3),
    SHIPPED: ("import handler + build_runtime, the artifact as built", HANDLER),
    "ours, no bytecode": ("the same, no bytecode (a build for another Python)", HANDLER),
    "ours, InfluxDB": ("the artifact, TIMESERIES_STORE=influxdb", HANDLER),
    "ours, import only": ("the artifact, import telemetry.handler", "import telemetry.handler"),
    "today": ("import handler + build_runtime, today's code", HANDLER),
    "interpreter": ("python -c pass", "pass"),
}


INFLUXDB_ENV: Final = {
    "TIMESERIES_STORE": "influxdb",
    "INFLUXDB_URL": "https://influx.example.com:8181",
    "INFLUXDB_DATABASE": "telemetry",
    "INFLUXDB_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:t-AbCdEf",
}
"""The InfluxDB case's store: a made-up endpoint and secret; nothing is called at build time."""


def top_imports(stderr: str, count: int = TOP_IMPORTS) -> list[tuple[str, float, float]]:
    """(module, self ms, cumulative ms) of the costliest imports in `-X importtime` output."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|")
        rows.append((name.strip(), int(self_us) / 1000, int(cumulative_us) / 1000))
    return sorted(rows, key=lambda r: r[1], reverse=True)[:count]


def locked_distributions() -> list[str]:
    """The names the lock file pins: what the build installs beside boto3."""
    text = LOCK.read_text(encoding="utf-8")
    return re.findall(r"^([A-Za-z0-9_.-]+)==", text, re.MULTILINE)


def shipped_artifact(scratch: Path) -> CodeTree:
    """The function's artifact as the build lays it: the locked distributions'
    files as pip installs them (from this environment, at the lock's versions, no
    scripts), then the Makefile's `function-files` (the package's files, no bin/,
    bytecode compiled by this interpreter, as the build compiles it by the runtime's)."""
    root = scratch / "artifact"
    root.mkdir(parents=True)
    for name in locked_distributions():
        distribution = metadata.distribution(name)
        for file in distribution.files or ():
            if file.parts[0] == ".." or "__pycache__" in file.parts or file.suffix == ".pyc":
                continue  # scripts (pip's bin/) and this machine's bytecode
            target = root / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(str(distribution.locate_file(file))), target)
    make = shutil.which("make")
    if make is None:
        raise RuntimeError("the artifact is laid by the Makefile: make is needed")
    subprocess.run(
        [
            make,
            "--no-print-directory",
            "-s",
            "function-files",
            f"ARTIFACTS_DIR={root}",
            f"LAMBDA_PYTHON={sys.executable}",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return CodeTree(SHIPPED, root)


def without_bytecode(tree: CodeTree, scratch: Path) -> CodeTree:
    """A copy of `tree` with no bytecode caches, to be run without writing any."""
    root = scratch / "no-bytecode"
    shutil.copytree(tree.root, root, ignore=shutil.ignore_patterns("__pycache__"))
    return CodeTree("ours, no bytecode", root)


def _imports_from(tree: CodeTree, env: Mapping[str, str]) -> str:
    done = tree.run(
        ["-c", "import pydantic, telemetry; print(telemetry.__file__, pydantic.__file__)"], env
    )
    return done.stdout.strip()


def runtime_cases(repeats: int, scratch: Path) -> dict[str, Samples]:
    ours, today = trees()
    shipped = shipped_artifact(scratch)
    env = {**function_environment(), "PYTHONDONTWRITEBYTECODE": "1"}
    for path in _imports_from(shipped, env).split():
        if not path.startswith(str(shipped.root)):
            raise RuntimeError(f"the artifact's case imports {path}, not the artifact's")
    tree_of = {
        "ours, no bytecode": without_bytecode(shipped, scratch),
        "today": today,
        "interpreter": ours,
        BASELINE: ours,
        "boto3": ours,
    }

    def case(tree: CodeTree, code: str, environment: Mapping[str, str]) -> Callable[[], Measured]:
        return lambda: measure(["-c", code], env=tree.environment(environment), cwd=tree.root)

    runs = {
        name: case(
            tree_of.get(name, shipped), code, env | INFLUXDB_ENV if "InfluxDB" in name else env
        )
        for name, (_, code) in CASES.items()
    }
    return interleaved(runs, repeats)


def importtime(tree: CodeTree) -> list[tuple[str, float, float]]:
    done = tree.run(["-X", "importtime", "-c", HANDLER], function_environment())
    return top_imports(done.stderr)


# --- part 2: the first invocation against a local AWS -----------------------------

RECORDER: Final = """
import base64, json, os, sys
import boto3
calls = []
def hook(params, model, **_):
    calls.append([model.service_model.service_name, model.name, params])
boto3.setup_default_session()
boto3.DEFAULT_SESSION.events.register("before-parameter-build", hook)
from telemetry import handler
handler.lambda_handler(json.loads(os.environ["EVENT"]), None)
def plain(value):
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    raise TypeError(value)
print(json.dumps(calls, default=plain))
"""

INVOKE: Final = (
    "import json, os; from telemetry import handler; "
    "handler.lambda_handler(json.loads(os.environ['EVENT']), None)"
)

PLAIN: Final = """
import base64, json, os
import boto3
from botocore import xform_name
endpoint = os.environ["AWS_ENDPOINT_URL"]
clients = {s: boto3.client(s, region_name="us-east-1", endpoint_url=endpoint)
           for s in ("timestream-write", "sns", "dynamodb", "iot-data", "sqs")}
def restore(value):
    if isinstance(value, dict) and set(value) == {"__bytes__"}:
        return base64.b64decode(value["__bytes__"])
    return value
for service, operation, params in json.loads(os.environ["CALLS"], object_hook=restore):
    getattr(clients[service], xform_name(operation))(**params)
"""


def _message(device_id: str, value: float) -> dict[str, Any]:
    now = time.time_ns() // 1_000_000
    return {
        "deviceId": device_id,
        "timestamp": now,
        "receivedAt": now + 40,
        "data": [
            {"sensorId": "temp-1", "type": "temperature", "value": value, "unit": "C"},
            {"sensorId": "press-1", "type": "pressure", "value": 4.2, "unit": "bar"},
        ],
    }


def invocation_cases(repeats: int) -> dict[str, Any]:
    """Per kind of message: the calls made, and the samples of ours and plain boto3."""
    from telemetry.local.provision import provision
    from telemetry.local.server import LocalAwsServer

    ours, _ = trees()
    out: dict[str, Any] = {}
    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    with LocalAwsServer() as server:

        def fresh_stack() -> dict[str, str]:
            reset_local_aws(server.url)
            with mock.patch.dict(os.environ, {**fake, "AWS_DEFAULT_REGION": "us-east-1"}):
                stack = provision(endpoint_url=server.url, things=["pump-0001"])
            return {
                **function_environment(),
                **fake,
                **stack.environment(),
                "AWS_ENDPOINT_URL": server.url,
            }

        for kind, value in (("quiet message", 60.0), ("message raising an alert", 95.0)):
            env = {**fresh_stack(), "EVENT": json.dumps(_message("pump-0001", value))}
            recorded = ours.run(["-c", RECORDER], env).stdout.splitlines()[-1]

            def ours_run(value: float = value) -> Measured:
                env = {**fresh_stack(), "EVENT": json.dumps(_message("pump-0001", value))}
                return measure(["-c", INVOKE], env=ours.environment(env), cwd=ROOT)

            def plain_run(recorded: str = recorded) -> Measured:
                env = {**fresh_stack(), "CALLS": recorded}
                return measure(["-c", PLAIN], env=env, cwd=ROOT)

            samples = interleaved({"ours": ours_run, "plain boto3": plain_run}, repeats)
            calls = [f"{s}:{o}" for s, o, _ in json.loads(recorded)]
            out[kind] = {"calls": calls, **{k: v.as_json() for k, v in samples.items()}}
    return out


def run(repeats: int = REPEATS, invocation_repeats: int = INVOCATION_REPEATS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        samples = runtime_cases(repeats, Path(scratch))
        imports = importtime(shipped_artifact(Path(scratch) / "importtime"))
    medians = {name: s.median() for name, s in samples.items()}
    headline = ratio(medians[SHIPPED], medians[BASELINE])
    return {
        "repeats": repeats,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "samples": {name: s.as_json() for name, s in samples.items()},
        "median_cpu_seconds": medians,
        "ratio_shipped_to_baseline": headline,
        "ratio_shipped_to_baseline_collector_on": ratio(medians[SHIPPED], medians["boto3"]),
        "ratio_no_bytecode_to_baseline": ratio(medians["ours, no bytecode"], medians[BASELINE]),
        "ratio_today_to_baseline": ratio(medians["today"], medians["boto3"]),
        "ratio_influxdb_to_timestream": ratio(medians["ours, InfluxDB"], medians[SHIPPED]),
        "target": TARGET_RATIO,
        "ok": headline <= TARGET_RATIO,
        "top_imports_ms": [{"module": m, "self_ms": s, "cumulative_ms": c} for m, s, c in imports],
        "first_invocation": invocation_cases(invocation_repeats),
    }


def report(numbers: Mapping[str, Any]) -> None:
    medians = numbers["median_cpu_seconds"]
    base = medians[BASELINE]
    rows = []
    for name, (label, _) in CASES.items():
        values = numbers["samples"][name]["cpu_seconds"]
        rows.append(
            [
                label,
                f"{medians[name]:.3f}",
                f"{min(values):.3f}",
                f"{max(values):.3f}",
                f"{ratio(medians[name], base):.2f}",
            ]
        )
    print(
        f"whole processes, CPU seconds (user + system), median of {numbers['repeats']}, "
        "no bytecode written (read-only like /var/task)"
    )
    print(table(["", "median", "min", "max", "vs baseline"], rows))
    print(
        f"\ncold start as Lambda runs it: ours (the artifact as built) / boto3 + the same "
        f"clients, the collector off on both sides: {numbers['ratio_shipped_to_baseline']:.2f} "
        f"(target <= {numbers['target']}): {verdict(numbers['ok'])}\n"
        f"beside boto3 with the collector on: "
        f"{numbers['ratio_shipped_to_baseline_collector_on']:.2f}; "
        f"the artifact without bytecode (a build for another Python): "
        f"{numbers['ratio_no_bytecode_to_baseline']:.2f}; "
        f"today's code / boto3: {numbers['ratio_today_to_baseline']:.2f}"
    )
    influx = numbers["ratio_influxdb_to_timestream"]
    print(
        f"TIMESERIES_STORE=influxdb / timestream: {influx:.2f} (target: no worse, within "
        f"this machine's noise of a few %): {verdict(influx <= 1.05)}"
    )
    print(f"\n{TOP_IMPORTS} costliest imports of ours (-X importtime, self time)")
    print(
        table(
            ["module", "self ms", "cumulative ms"],
            [
                [i["module"], f"{i['self_ms']:.1f}", f"{i['cumulative_ms']:.1f}"]
                for i in numbers["top_imports_ms"]
            ],
        )
    )
    print("\nfirst invocation against a local AWS, whole processes, median CPU (wall) seconds")
    rows = []
    for kind, result in numbers["first_invocation"].items():
        ours_cpu = result["ours"]["median_cpu_seconds"]
        plain_cpu = result["plain boto3"]["median_cpu_seconds"]
        rows.append(
            [
                kind,
                f"{len(result['calls'])}",
                f"{ours_cpu:.3f} ({result['ours']['median_wall_seconds']:.3f})",
                f"{plain_cpu:.3f} ({result['plain boto3']['median_wall_seconds']:.3f})",
                f"{ratio(ours_cpu, plain_cpu):.2f}",
            ]
        )
    print(table(["event", "AWS calls", "lambda_handler", "plain boto3 script", "ratio"], rows))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--invocation-repeats", type=int, default=INVOCATION_REPEATS)
    args = parser.parse_args(argv)
    report(run(args.repeats, args.invocation_repeats))


if __name__ == "__main__":
    main()
