"""Statistical detectors, the monitor loop, notifiers and Grafana alert rules (planned: issue 4)."""
