"""Metric names: those a PromQL expression references, and those notifier really exports.

Used by the rules and dashboard tests to prove that every query is over a metric the
service exports (a renamed metric must break a test, not a dashboard in production).
"""

from __future__ import annotations

import re

from prometheus_client import PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from notifier.metrics import Metrics

# Strings, label matchers, range/subquery brackets and grouping clauses hold label names
# and Grafana variables, not metric names: they are removed before looking for names.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
)


def referenced_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (function names are skipped)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def exported_metrics() -> set[str]:
    """Every series name the real exporter produces, plus the ``up`` Prometheus adds.

    Sample names, not family names: ``notifier_http_requests`` (a counter's family) or
    ``notifier_notification_latency_seconds`` (a histogram's) select nothing in Prometheus;
    ``..._total`` and ``..._bucket`` do.
    """
    metrics = Metrics()
    metrics.declare_channels([("x", "webhook")])
    metrics.declare_policies([("p", 2)])
    ProcessCollector(registry=metrics.registry)
    PlatformCollector(registry=metrics.registry)
    text = generate_latest(metrics.registry).decode()
    names = {"up"}
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
    return names
