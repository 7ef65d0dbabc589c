"""CPU time and resident memory of the benchmark's processes, from ``/proc``.

A thread samples every named process once a second (``Sampler``); a phase's CPU
share is the difference between two samples, its RSS peak the highest sample in
its window.  Each sample keeps the anonymous part of the RSS too (``RssAnon``:
what the process allocated); the rest is mapped files, mostly the libraries and
the LevelDB table files the store maps to read them, which is page cache the
kernel can drop, and which grows and shrinks with compaction.  ``other processes`` is the machine's busy time (``/proc/stat``) that
none of the named processes used: what the benchmark shares the cores with.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MACHINE = "(machine)"
OTHER = "other processes"


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used by ``pid`` so far (``None`` if it is gone)."""
    try:
        text = Path("/proc/%d/stat" % pid).read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (all cores)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields[:8]]
    total = sum(ticks)
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (total - idle) / _TICK, total / _TICK


def proc_rss_bytes(pid: int) -> int | None:
    return proc_memory(pid)[0]


def proc_memory(pid: int) -> tuple[int | None, int | None]:
    """(resident, anonymous resident) bytes of ``pid``, from ``VmRSS`` and ``RssAnon``."""
    found: dict[str, int] = {}
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith(("VmRSS:", "RssAnon:")):
                found[line.split(":", 1)[0]] = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None, None
    return found.get("VmRSS"), found.get("RssAnon")


class Sampler:
    """Samples CPU seconds and RSS of named processes once a second, in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0):
        self.pids = dict(pids)
        self.interval = interval
        # (when, {name: (cpu seconds, rss bytes, anonymous rss bytes)})
        self.samples: list[tuple[float, dict[str, tuple]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self.take()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.take()

    def take(self) -> tuple[float, dict]:
        procs = {name: (proc_cpu_seconds(pid), *proc_memory(pid)) for name, pid in self.pids.items()}
        procs[MACHINE] = (machine_cpu_seconds(), None, None)
        sample = (time.monotonic(), procs)
        self.samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.take()

    def cpu_percent(self, start: tuple[float, dict], end: tuple[float, dict]) -> dict[str, float | None]:
        """% of one core used by each process, plus ``other``: the rest of the machine's busy time."""
        span = end[0] - start[0]
        out: dict[str, float | None] = {}
        for name in self.pids:
            a, b = start[1].get(name, (None, None))[0], end[1].get(name, (None, None))[0]
            out[name] = None if a is None or b is None or span <= 0 else 100.0 * (b - a) / span
        m0, m1 = start[1].get(MACHINE, (None,))[0], end[1].get(MACHINE, (None,))[0]
        if m0 is not None and m1 is not None and m1[1] > m0[1]:
            cores = os.cpu_count() or 1
            busy = 100.0 * cores * (m1[0] - m0[0]) / (m1[1] - m0[1])
            out[OTHER] = max(0.0, busy - sum(v for v in out.values() if v is not None))
        return out

    def rss_peaks(self, start: float, end: float) -> dict[str, float]:
        """Highest RSS (MiB) of each process among the samples taken from ``start`` to ``end``."""
        peaks: dict[str, float] = {}
        for t, procs in self.samples:
            if start <= t <= end:
                for name, values in procs.items():
                    rss = values[1]
                    if rss is not None:
                        peaks[name] = max(peaks.get(name, 0.0), rss / 2**20)
        return peaks

    def rss_points(self, names: list[str]) -> dict[str, dict[str, float | None]]:
        """RSS (MiB) of each process at the start, middle and end of the samples, its peak,
        and the peak of its anonymous part (``anon_peak``)."""
        out = {}
        for name in names:
            if name == MACHINE:
                continue
            values = [s[1][name] for s in self.samples if s[1].get(name, (None, None))[1] is not None]
            if not values:
                out[name] = {"start": None, "middle": None, "end": None, "peak": None, "anon_peak": None}
                continue
            mib = [v[1] / 2**20 for v in values]
            anon = [v[2] / 2**20 for v in values if len(v) > 2 and v[2] is not None]
            out[name] = {"start": mib[0], "middle": mib[len(mib) // 2], "end": mib[-1], "peak": max(mib),
                         "anon_peak": max(anon) if anon else None}
        return out
