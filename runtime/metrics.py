"""A small Prometheus registry: counters, gauges and histograms in text format 0.0.4.

Why not a library: the node needs three metric types and one output format; the
official client would add a dependency and a process-global registry, and tests
want one registry per node.  Label values are escaped per the exposition format.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable, Iterable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = ['%s="%s"' % (n, _escape(v)) for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{%s}" % ",".join(parts) if parts else ""


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()):
        self.name, self.help, self.label_names = name, help_text, tuple(labels)

    def _key(self, labels: tuple[str, ...]) -> tuple[str, ...]:
        if len(labels) != len(self.label_names):
            raise ValueError("%s takes labels %s" % (self.name, self.label_names))
        return tuple(str(v) for v in labels)

    def header(self) -> list[str]:
        return ["# HELP %s %s" % (self.name, self.help), "# TYPE %s %s" % (self.name, self.kind)]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()):
        super().__init__(name, help_text, labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, by: float = 1) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0) + by

    def get(self, *labels: str) -> float:
        return self.values.get(self._key(labels), 0)

    def render(self) -> list[str]:
        lines = self.header()
        for key, value in sorted(self.values.items()):
            lines.append("%s%s %s" % (self.name, _labels(self.label_names, key), _number(value)))
        if not self.values and not self.label_names:
            lines.append("%s 0" % self.name)
        return lines


class Gauge(_Metric):
    """A value read from a callback at scrape time (no state to keep in sync)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, read: Callable[[], float]):
        super().__init__(name, help_text)
        self.read = read

    def render(self) -> list[str]:
        return self.header() + ["%s %s" % (self.name, _number(self.read()))]


class CounterView(_Metric):
    """A labelled counter kept elsewhere, read at scrape time: ``read()`` maps each
    label value to its count (the replica's own event tallies, say)."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label: str, read: Callable[[], dict[str, float]]):
        super().__init__(name, help_text, (label,))
        self.read = read

    def render(self) -> list[str]:
        lines = self.header()
        for value, count in sorted(self.read().items()):
            lines.append("%s%s %s" % (self.name, _labels(self.label_names, (value,)), _number(count)))
        return lines


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = (), buckets=LATENCY_BUCKETS):
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self.series: dict[tuple[str, ...], list] = {}  # key -> [bucket counts..., count, sum]

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0] * (len(self.buckets) + 2)
        slot = bisect.bisect_left(self.buckets, value)  # first bucket whose bound >= value
        if slot < len(self.buckets):
            row[slot] += 1
        row[-2] += 1
        row[-1] += value

    def render(self) -> list[str]:
        lines = self.header()
        for key, row in sorted(self.series.items()):
            cumulative = 0
            for bound, count in zip(self.buckets, row):
                cumulative += count
                lines.append("%s_bucket%s %d" % (self.name, _labels(self.label_names, key, 'le="%s"' % _number(bound)),
                                                 cumulative))
            lines.append("%s_bucket%s %d" % (self.name, _labels(self.label_names, key, 'le="+Inf"'), row[-2]))
            lines.append("%s_count%s %d" % (self.name, _labels(self.label_names, key), row[-2]))
            lines.append("%s_sum%s %s" % (self.name, _labels(self.label_names, key), _number(row[-1])))
        return lines


class Registry:
    """The metrics of one node, rendered in registration order."""

    def __init__(self) -> None:
        self.metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> _Metric:
        if any(m.name == metric.name for m in self.metrics):
            raise ValueError("metric %s registered twice" % metric.name)
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
