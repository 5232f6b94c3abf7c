"""The `telemetry` command (also `python -m telemetry`).

The cyclic collector does not run while the command line's modules load: they
make long-lived objects and next to no garbage (see telemetry.collector, the
function's same arrangement). What the command leaves when it is done is frozen
before the interpreter exits, so that exit does not walk it again.
"""

import gc


def main() -> int:
    """Run the command line; its exit status."""
    # Imported here, collector first: it pauses the collector for the imports.
    from telemetry import collector  # noqa: PLC0415
    from telemetry.cli import main as command_line  # noqa: PLC0415

    collector.imported()
    status = command_line()
    gc.freeze()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
