"""The floor validate+evaluate is measured against: plain pydantic, nothing more.

    python -m benchmarks.floor FILE

Each line of FILE (JSON lines, one message each) is parsed with `json.loads`
and validated with `model_validate` of a plain `BaseModel`: `deviceId: str`,
`timestamp: int`, `data: list[Reading]` with `sensorId: str`, `value: float` and
the seed's optional fields. No charset, no finiteness, no time checks, no
evaluation: what any pydantic-based handler pays at the least.
"""

import json
import sys

from pydantic import BaseModel


class Reading(BaseModel):
    sensorId: str  # noqa: N815 - the wire format's names
    value: float
    type: str | None = None
    unit: str | None = None
    location: str | None = None
    warningThreshold: float | None = None  # noqa: N815
    criticalThreshold: float | None = None  # noqa: N815


class Message(BaseModel):
    deviceId: str  # noqa: N815
    timestamp: int
    data: list[Reading]


def main(path: str) -> int:
    readings = 0
    with open(path, "rb") as lines:  # noqa: PTH123 - as a plain script would
        for line in lines:
            readings += len(Message.model_validate(json.loads(line)).data)
    return readings


if __name__ == "__main__":
    print(main(sys.argv[1]))
