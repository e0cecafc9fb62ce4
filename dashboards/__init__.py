"""Grafana dashboards as code and the static report (planned: issue 5)."""
