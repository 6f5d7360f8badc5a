"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand.

Counters and histograms live in the process that serves the request; with ``--workers N``
each worker exports its own, labelled ``worker="<pid>"`` (Prometheus sums them). Gauges
about devices and campaigns are read from the database at scrape time, so every worker
reports the same values.
"""

from __future__ import annotations

import bisect
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence

Sample = tuple[str, dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> tuple[str, ...]:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        return tuple(labels)

    def samples(self) -> Iterable[Sample]:  # pragma: no cover - overridden
        return ()

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{n}{_labels(lab)} {_number(v)}" for n, lab, v in self.samples()]
        return "\n".join(lines) + "\n"


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[Sample]:
        with self._lock:
            items = sorted(self._values.items())
        for key, v in items:
            yield self.name, dict(zip(self.labelnames, key, strict=True)), v


DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, value: float, *labels: str) -> None:
        key = self._key(labels)
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
            counts[i] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def samples(self) -> Iterable[Sample]:
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        for key, counts, total in items:
            base = dict(zip(self.labelnames, key, strict=True))
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                yield f"{self.name}_bucket", {**base, "le": _number(bound)}, running
            yield f"{self.name}_sum", base, total
            yield f"{self.name}_count", base, running


class Gauges(_Metric):
    """Gauge values computed on demand by ``collect`` (e.g. from the database)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        collect: Callable[[], Iterable[tuple[dict[str, str], float]]],
    ) -> None:
        super().__init__(name, help_text)
        self.collect = collect

    def samples(self) -> Iterable[Sample]:
        for labels, v in self.collect():
            yield self.name, labels, v


class Metrics:
    """The server's metrics. ``render()`` is the body of ``GET /metrics``."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.worker = str(os.getpid())
        self.requests = Counter(
            "suitkit_http_requests_total",
            "HTTP requests by route and status",
            ("route", "method", "status"),
        )
        self.latency = Histogram(
            "suitkit_http_request_duration_seconds", "HTTP request latency by route", ("route",)
        )
        self.checkins = Counter(
            "suitkit_device_checkins_total", "Device check-ins by answer", ("answer",)
        )
        self.reports = Counter(
            "suitkit_device_reports_total", "Device reports by outcome", ("outcome",)
        )
        self.download_bytes = Counter(
            "suitkit_download_bytes_total",
            "Bytes of envelopes, members and payloads sent",
            ("kind",),
        )
        self.releases = Counter(
            "suitkit_release_uploads_total", "Release uploads by outcome", ("outcome",)
        )
        self.extra: list[_Metric] = []

    def render(self) -> str:
        parts = []
        for m in (
            self.requests,
            self.latency,
            self.checkins,
            self.reports,
            self.download_bytes,
            self.releases,
        ):
            parts.append(_with_worker(m.render(), self.worker))
        parts += [m.render() for m in self.extra]
        return "".join(parts)


def _with_worker(text: str, worker: str) -> str:
    """Add ``worker="pid"`` to every sample line of a per-process metric."""
    out = []
    label = f'worker="{worker}"'
    for line in text.splitlines():
        if line.startswith("#"):
            out.append(line)
            continue
        name_labels, _, value = line.rpartition(" ")
        if name_labels.endswith("}"):
            out.append(f"{name_labels[:-1]},{label}}} {value}")
        else:
            out.append(f"{name_labels}{{{label}}} {value}")
    return "\n".join(out) + "\n"
