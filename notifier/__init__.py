"""notifier: an alert notification router for Prometheus Alertmanager."""

__version__ = "0.1.0"
