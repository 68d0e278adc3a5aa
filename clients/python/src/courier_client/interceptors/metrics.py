"""Counts and latencies per method and status code, in memory, for an exporter of your choice to read."""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from ._base import Done

# The buckets' upper bounds, in seconds: 1 ms to 10 s, the range a payments call spans.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class CallStats:
    """The calls of one (method, code): how many, their total duration, and a histogram (counts per bucket
    of `MetricsInterceptor.buckets`, plus one last for longer calls)."""

    count: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=list)


class MetricsInterceptor:
    """Records every call; `snapshot()` gives `{(method, code name): CallStats}`, `in_flight` the calls not ended.

    Thread-safe: one instance can serve several clients, sync and async.
    """

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._stats: dict[tuple[str, str], CallStats] = {}
        self.in_flight = 0

    def start(self, method: str) -> Done:
        started = time.monotonic()
        with self._lock:
            self.in_flight += 1

        def done(code: grpc.StatusCode) -> None:
            seconds = time.monotonic() - started
            with self._lock:
                self.in_flight -= 1
                stats = self._stats.setdefault((method, code.name), CallStats(buckets=[0] * (len(self.buckets) + 1)))
                stats.count += 1
                stats.seconds += seconds
                stats.buckets[bisect_left(self.buckets, seconds)] += 1

        return done

    def snapshot(self) -> dict[tuple[str, str], CallStats]:
        with self._lock:
            return {key: CallStats(s.count, s.seconds, list(s.buckets)) for key, s in self._stats.items()}

    def count(self, method: str, code: str = "OK") -> int:
        """Calls of `method` (`/pkg.Service/Method`, or just `Method`) that ended with `code`."""
        with self._lock:
            return sum(
                s.count
                for (m, c), s in self._stats.items()
                if c == code and (m == method or m.endswith("/" + method))
            )
