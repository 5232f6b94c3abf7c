"""Grafana dashboards and provisioning for both time-series stores (see build.py)."""
