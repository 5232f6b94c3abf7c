"""`python -m telemetry`: the same as the `telemetry` command."""

from telemetry.cli import main

raise SystemExit(main())
