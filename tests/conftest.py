"""Hypothesis settings for the whole suite: no per-example deadline (machines
vary); HYPOTHESIS_PROFILE=thorough runs ten times as many examples."""

import os

from hypothesis import settings

settings.register_profile("suite", deadline=None)
settings.register_profile("thorough", deadline=None, max_examples=1_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

# The InfluxDB servers (a real influxd 1.x, a local InfluxDB 2/3) and their fixtures.
pytest_plugins = ["tests.influxdb_server"]
