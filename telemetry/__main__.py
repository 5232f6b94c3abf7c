"""`python -m telemetry`: the same as the `telemetry` command.

The cyclic collector does not run while the command line's modules load: they
make long-lived objects and next to no garbage (see telemetry.collector, the
function's same arrangement). What the command leaves when it is done is frozen
before the interpreter exits, so that exit does not walk it again.
"""

import gc

from telemetry import collector  # first: it pauses the collector for the imports
from telemetry.cli import main

collector.imported()
status = main()
gc.freeze()
raise SystemExit(status)
