"""``evledger bench cluster``: what a real consortium on this machine sustains.

Theory of operation
-------------------
The benchmark lays out a consortium with :func:`runtime.cluster.init` (4 validators
by default) in a temporary folder, starts every node as its own process with
:func:`runtime.cluster.up`, and drives it from a **load process** of its own
(``multiprocessing`` with the ``spawn`` method, so it shares nothing with this one).
This process only orchestrates: it tells the load process what to do, reads each
node's committed-item counter from ``GET /metrics`` and samples CPU time and
resident memory of every node and of the load process from ``/proc``.

Phases, in order (their lengths are fractions of ``--duration``):

``idle``
    one single-item deposit at a time; latency = submit → the accepting node
    answers ``committed`` for its code (polled every millisecond).
``single``
    closed loop, ``--concurrency`` requests in flight spread over the validators,
    each ``POST /v1/deposits`` carrying one signed single-item deposit.
    Throughput = committed items/s counted by a validator (``/metrics``) after a
    warm-up.
``batch``
    the same with each request carrying one signed batch of ``--batch`` items.
``half-single`` / ``half-batch``
    open loop at half the throughput just measured; every 50 ms one request's
    first code is followed to commit (polled every 5 ms) for p50/p99 latency.
``failover``
    a steady stream of single deposits to the backups; the primary is killed with
    SIGKILL; *resume* = first commit of a deposit submitted after the kill, minus
    the time of the kill (both on ``CLOCK_MONOTONIC``, polled every 10 ms).

The load process signs everything for real (entries and HTTP requests, Ed25519).
To keep its own CPU small, single deposits are built on the fly (one fresh
digest each) but batches reuse a few pre-built lists of 1,000 items under a
fresh signature each (a fresh ``client_time``), so every batch has its own
deposit codes; its wire bytes are spliced from pre-encoded item arrays.

Node configuration is what ``cluster init`` writes except ``api.public_rate_per_s``
(raised so the benchmark's latency probes are not throttled) and
``pool.replay_capacity`` (raised so a long one-by-one run does not fill the
per-client nonce quota: 2,000,000 / 11 members ≈ 180k requests per 5 minutes).

Results go to standard error as they come (only on a terminal), then into the
``cluster`` section of ``docs/performance.md`` (between
``<!-- bench:cluster:start -->`` / ``<!-- bench:cluster:end -->``) with the machine
and the command, or as JSON with ``--json``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bench_load import latency_summary, percentile, run_load_process

__all__ = ["Plan", "Run", "main", "render", "write_section", "set_consensus", "latency_summary", "percentile"]

MARK_START, MARK_END = "<!-- bench:cluster:start -->", "<!-- bench:cluster:end -->"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DURATION = 60.0
PUBLIC_RATE = 1_000_000
REPLAY_CAPACITY = 20_000_000

# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Plan:
    """How long each phase runs (seconds) and how hard it pushes."""

    duration: float = DEFAULT_DURATION
    validators: int = 4
    concurrency: int = 64  # single-item requests in flight (closed loop)
    batch_concurrency: int = 8  # batch requests in flight
    batch: int = 1000  # items per signed batch
    failover: bool = True
    batch_max_bytes: int | None = None  # genesis consensus.batch_max_bytes; None keeps cluster init's default
    consensus: tuple[tuple[str, int], ...] = ()  # other genesis consensus parameters to set
    window: int = 3_000  # single-item phase: most items admitted but not committed before senders wait
    batch_window: int = 20_000  # batch phase: the same

    def seconds(self) -> dict[str, float]:
        d = self.duration
        return {"idle": max(2.0, 0.08 * d), "single": max(4.0, 0.25 * d), "batch": max(4.0, 0.25 * d),
                "half-single": max(3.0, 0.16 * d), "half-batch": max(3.0, 0.16 * d)}

    def warmup(self, seconds: float) -> float:
        return min(10.0, max(1.0, 0.2 * seconds))


# --------------------------------------------------------------------------- /proc sampling


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
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Sampler:
    """Samples CPU seconds and RSS of named processes once a second, in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0):
        self.pids = dict(pids)
        self.interval = interval
        self.samples: list[tuple[float, dict[str, tuple[float | None, int | None]]]] = []
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
        procs = {name: (proc_cpu_seconds(pid), proc_rss_bytes(pid)) for name, pid in self.pids.items()}
        procs[MACHINE] = (machine_cpu_seconds(), None)
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
                for name, (_, rss) in procs.items():
                    if rss is not None:
                        peaks[name] = max(peaks.get(name, 0.0), rss / 2**20)
        return peaks

    def rss_points(self, names: list[str]) -> dict[str, dict[str, float | None]]:
        """RSS (MiB) of each process at the start, middle and end of the samples, and its peak."""
        out = {}
        for name in names:
            if name == MACHINE:
                continue
            series = [s[1][name][1] for s in self.samples if s[1].get(name, (None, None))[1] is not None]
            if not series:
                out[name] = {"start": None, "middle": None, "end": None, "peak": None}
                continue
            mib = [v / 2**20 for v in series]
            out[name] = {"start": mib[0], "middle": mib[len(mib) // 2], "end": mib[-1], "peak": max(mib)}
        return out


# --------------------------------------------------------------------------- HTTP helpers (orchestrator)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with _OPENER.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def items_committed(api: str) -> int:
    """``evledger_items_committed_total`` of the node at ``api`` (its /metrics, from localhost)."""
    with _OPENER.open(api.rstrip("/") + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    m = re.search(r"^evledger_items_committed_total(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    if m is None:
        raise RuntimeError("no evledger_items_committed_total in %s/metrics" % api)
    return int(float(m.group(1)))


# --------------------------------------------------------------------------- the orchestrator


def _say(text: str) -> None:
    if sys.stderr.isatty():
        print(text, file=sys.stderr, flush=True)


def set_consensus(folder: Path, **params: int) -> dict:
    """Change consensus parameters in the genesis of a folder no node has started from yet.

    The file is re-read with ``ledger.genesis.load_genesis``, so a value it refuses
    raises here.  Returns the consensus section as written.
    """
    from ledger.genesis import load_genesis

    path = folder / "genesis.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["consensus"].update(params)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    load_genesis(path)
    return doc["consensus"]


def _tune_configs(folder: Path) -> None:
    """Raise the public read rate limit and the replay cache (see the module docstring)."""
    for config in sorted((folder / "nodes").glob("*/node.toml")):
        text = config.read_text()
        text = re.sub(r"^# public_rate_per_s = .*$", "public_rate_per_s = %d" % PUBLIC_RATE, text, flags=re.M)
        text = re.sub(r"^# replay_capacity = .*$", "replay_capacity = %d" % REPLAY_CAPACITY, text, flags=re.M)
        config.write_text(text)


@dataclass
class Run:
    """A consortium being benchmarked and its load process."""

    plan: Plan
    folder: Path
    results: dict = field(default_factory=dict)

    def start(self) -> None:
        from ledger.crypto import load_key_file
        from runtime import cluster

        base = cluster.free_base_port()
        consortium = cluster.init(self.folder, validators=self.plan.validators, base_port=base)
        _tune_configs(self.folder)
        changes = dict(self.plan.consensus)
        if self.plan.batch_max_bytes is not None:
            changes["batch_max_bytes"] = self.plan.batch_max_bytes
        if changes:
            set_consensus(self.folder, **changes)
        self.results["consensus"] = json.loads((self.folder / "genesis.json").read_text())["consensus"]
        _say("consortium %s in %s: %d validators, base port %d" % (consortium.genesis.chain_id, self.folder,
                                                                   self.plan.validators, base))
        self.cluster = cluster.up(self.folder, command=[sys.executable, str(ROOT / "cli.py"), "run"], timeout=60)
        self.chain_id = self.cluster.genesis.chain_id
        self.nodes = {n.name: n for n in self.cluster.nodes}
        self.apis = [n.api.rstrip("/") for n in self.cluster.nodes]
        depositors = [load_key_file(c.key) for c in self.cluster.clients if "depositor" in c.roles]
        identities = [(k.name, k.key.seed_hex()) for k in depositors]
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.loader = ctx.Process(target=run_load_process, args=(child, self.apis, self.chain_id, identities,
                                                              self.plan.batch), name="evledger-bench-load")
        self.loader.start()
        if not self.conn.poll(60) or not self.conn.recv().get("ready"):
            raise RuntimeError("the load process did not start")
        pids = {n.name: n.pid for n in self.cluster.nodes}
        pids["load"] = self.loader.pid
        self.sampler = Sampler(pids)
        self.sampler.start()
        self._wait_for_peers()

    def _wait_for_peers(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        want = self.plan.validators - 1
        while time.monotonic() < deadline:
            try:
                if all(len(_get_json(api + "/v1/status")["peers_connected"]) >= want for api in self.apis):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("validators did not connect to each other within %g s" % timeout)

    def command(self, command: dict, timeout: float) -> dict:
        self.conn.send(command)
        if not self.conn.poll(timeout):
            raise RuntimeError("the load process did not finish phase %s in %g s" % (command["phase"], timeout))
        answer = self.conn.recv()
        if not answer["ok"]:
            raise RuntimeError("phase %s failed in the load process: %s" % (command["phase"], answer["error"]))
        return answer["result"]

    def status(self, api: str) -> dict:
        return _get_json(api + "/v1/status")

    def settle(self, phase: str, timeout: float = 60.0) -> None:
        """Wait until no node has items pending, so a phase does not inherit the last one's backlog."""
        start = time.monotonic()
        pending = None
        while time.monotonic() - start < timeout:
            try:
                pending = max(self.status(api)["pending"] for api in self.apis)
            except OSError:
                pending = None
            if pending == 0:
                break
            time.sleep(0.2)
        self.results.setdefault("settle_s", {})[phase] = round(time.monotonic() - start, 2)
        if pending:
            self.results.setdefault("notes", []).append(
                "After the %s phase %s items were still pending after %.0f s; the next phase started anyway."
                % (phase, format(pending, ","), timeout))

    def measured(self, command: dict, seconds: float, warmup: float) -> tuple[dict, dict]:
        """Run ``command`` for ``seconds``; committed items/s and CPU% over the part after ``warmup``."""
        ref = self.apis[1 % len(self.apis)]
        self.conn.send(command)
        time.sleep(warmup)
        c0, s0 = items_committed(ref), self.sampler.take()
        time.sleep(max(0.5, seconds - warmup))
        c1, s1 = items_committed(ref), self.sampler.take()
        if not self.conn.poll(seconds + 120):
            raise RuntimeError("the load process did not finish phase %s" % command["phase"])
        answer = self.conn.recv()
        if not answer["ok"]:
            raise RuntimeError("phase %s failed in the load process: %s" % (command["phase"], answer["error"]))
        window = s1[0] - s0[0]
        return answer["result"], {"window_s": window, "items": c1 - c0, "items_per_s": (c1 - c0) / window,
                                  "cpu_percent": self.sampler.cpu_percent(s0, s1),
                                  "rss_peak_mib": self.sampler.rss_peaks(s0[0], s1[0])}

    def run_phases(self) -> None:
        plan, res = self.plan, self.results
        secs = plan.seconds()
        res["plan"] = {"duration_s": plan.duration, "validators": plan.validators, "concurrency": plan.concurrency,
                       "batch_concurrency": plan.batch_concurrency, "batch_items": plan.batch, "phases_s": secs,
                       "batch_max_bytes": plan.batch_max_bytes, "consensus_set": dict(plan.consensus),
                       "window": plan.window,
                       "batch_window": plan.batch_window}

        _say("idle latency: one single-item deposit at a time for %.0f s" % secs["idle"])
        s0 = self.sampler.take()
        idle = self.command({"phase": "idle", "seconds": secs["idle"]}, secs["idle"] + 120)
        res["idle"] = {"latency": idle["latency"], "cpu_percent": self.sampler.cpu_percent(s0, self.sampler.take())}
        _say("  p50 %s, p99 %s over %d deposits" % (_ms(idle["latency"]["p50_ms"]), _ms(idle["latency"]["p99_ms"]),
                                                     idle["latency"]["samples"]))

        for kind, conc in (("single", plan.concurrency), ("batch", plan.batch_concurrency)):
            items = 1 if kind == "single" else plan.batch
            _say("%s: closed loop, %d requests of %d item%s in flight, %.0f s (warm-up %.0f s)"
                 % (kind, conc, items, "" if items == 1 else "s", secs[kind], plan.warmup(secs[kind])))
            window = plan.window if kind == "single" else plan.batch_window
            load, m = self.measured({"phase": "closed", "kind": kind, "seconds": secs[kind], "concurrency": conc,
                                     "window": window}, secs[kind], plan.warmup(secs[kind]))
            res[kind] = {**m, "load": load}
            _say("  %.0f digests/s committed; node CPU %s" % (m["items_per_s"], _cpu_line(m["cpu_percent"])))
            self.settle(kind)

        for kind in ("single", "batch"):
            phase = "half-" + kind
            items = 1 if kind == "single" else plan.batch
            rate = max(1.0, res[kind]["items_per_s"] / 2 / items)
            _say("%s: open loop at %.1f requests/s (half of the %s maximum), %.0f s"
                 % (phase, rate, kind, secs[phase]))
            load, m = self.measured({"phase": "open", "kind": kind, "seconds": secs[phase], "rate": rate,
                                     "sample_every": 0.05, "poll": 0.005}, secs[phase], plan.warmup(secs[phase]))
            res[phase] = {**m, "rate_requests_per_s": rate, "latency": load.pop("latency"), "load": load}
            lat = res[phase]["latency"]
            _say("  %.0f digests/s committed; latency p50 %s, p99 %s (%d samples)"
                 % (m["items_per_s"], _ms(lat["p50_ms"]), _ms(lat["p99_ms"]), lat["samples"]))
            self.settle(phase)

        res["rss_mib"] = self.sampler.rss_points(list(self.sampler.pids))
        if plan.failover:
            self.failover()

    def current_primary(self) -> str:
        """The primary most validators name: one replica alone in a view change names the
        primary of the view it asks for, and killing that one would be a second fault."""
        named = Counter()
        for api in self.apis:
            try:
                named[self.status(api)["primary"]] += 1
            except OSError:
                continue
        if not named:
            raise RuntimeError("no node answers /v1/status")
        return named.most_common(1)[0][0]

    def failover(self) -> None:
        primary = self.current_primary()
        victim = self.nodes[primary]
        watch = next(api for n, api in zip(self.nodes, self.apis) if n != primary)
        _say("failover: killing the primary %s (pid %d) with SIGKILL during a stream of deposits"
             % (primary, victim.pid))
        rate = 100.0
        result = self.command({"phase": "failover", "victim_api": victim.api.rstrip("/"), "victim_pid": victim.pid,
                               "watch_api": watch, "rate": rate, "before": 3.0, "after": 12.0}, 120)
        result["killed"] = primary
        result["rate_requests_per_s"] = rate
        self.results["failover"] = result
        self.sampler.pids.pop(primary, None)
        _say("  commits resumed %s after the kill (view change seen after %s, new primary %s)"
             % (_s(result["resume_s"]), _s(result["view_change_seen_s"]), result["new_primary"]))

    def stop(self) -> None:
        from runtime import cluster

        sampler = getattr(self, "sampler", None)
        if sampler is not None:
            sampler.stop()
        if getattr(self, "loader", None) is not None and self.loader.pid is not None:
            try:
                self.conn.send({"phase": "stop"})
            except OSError:
                pass
            self.loader.join(10)
            if self.loader.is_alive():
                self.loader.kill()
                self.loader.join(5)
        if (self.folder / "nodes").is_dir():
            cluster.down(self.folder, timeout=15)

    def tracebacks(self) -> list[str]:
        out = []
        for log in sorted((self.folder / "nodes").glob("*/node.log")):
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                out.append(log.parent.name)
        return out


def _ms(value: float | None) -> str:
    return "n/a" if value is None else "%.1f ms" % value


def _s(value: float | None) -> str:
    return "n/a" if value is None else "%.2f s" % value


def _cpu_line(cpu: dict[str, float | None]) -> str:
    return ", ".join("%s %s" % (name, "n/a" if v is None else "%.0f%%" % v) for name, v in cpu.items())


# --------------------------------------------------------------------------- report


def render(results: dict, info: dict, command: str) -> str:
    """The ``cluster`` section of docs/performance.md."""
    plan = results["plan"]
    lines = [MARK_START, "## Cluster (`evledger bench cluster`)", "",
             "Command: `%s`  " % command,
             "Machine: %s, %s cores, %s RAM, Python %s, plyvel %s, %s; measured %s." % (
                 info["cpu"], info["cores"], info["memory"], info["python"], info["plyvel"], info["system"],
                 info["date"]), "",
             "%d validators, each its own process on 127.0.0.1 (genesis from `evledger cluster init`), load from a "
             "separate process; every entry and every HTTP request is Ed25519-signed. Throughput is committed "
             "digests/s counted by a validator after a warm-up; latency is submit → the node answers `committed` "
             "for the code." % plan["validators"], "",
             "| what | result | must / goal |", "|---|---|---|"]

    def tput(key: str) -> str:
        r = results.get(key)
        return "n/a" if r is None else "%s digests/s" % format(round(r["items_per_s"]), ",")

    rows = [
        ("committed digests/s, one signed single-item deposit per request (%d in flight)" % plan["concurrency"],
         tput("single"), "1,500 / 3,000"),
        ("committed digests/s, one signed batch of %s per request (%d in flight)"
         % (format(plan["batch_items"], ","), plan["batch_concurrency"]), tput("batch"), "20,000 / 50,000"),
    ]
    idle = results.get("idle", {}).get("latency")
    if idle:
        rows.append(("commit latency at idle, one deposit at a time (p50 / p99, %d samples)" % idle["samples"],
                     "%s / %s" % (_ms(idle["p50_ms"]), _ms(idle["p99_ms"])), "p50 ≤ 10 ms, p99 ≤ 25 ms"))
    for kind, label in (("single", "single-item deposits"), ("batch", "batches")):
        r = results.get("half-" + kind)
        if r:
            lat = r["latency"]
            rows.append(("commit latency at half the maximum, %s (%.0f digests/s; p50 / p99, %d samples)"
                         % (label, r["items_per_s"], lat["samples"]),
                         "%s / %s" % (_ms(lat["p50_ms"]), _ms(lat["p99_ms"])), "p50 ≤ 50 ms, p99 ≤ 250 ms"))
    fo = results.get("failover")
    if fo:
        rows.append(("primary killed (SIGKILL) → first commit of a deposit submitted after the kill",
                     "%s (view change seen after %s)" % (_s(fo["resume_s"]), _s(fo["view_change_seen_s"])),
                     "< 3 s / 1.5 s"))
    lines += ["| %s | %s | %s |" % row for row in rows]

    names = [n for n in results.get("rss_mib", {})] + [OTHER]
    lines += ["", "CPU per process (% of one core) during each phase — with the highest resident memory "
              "(MiB) sampled in the phase's measured window — and resident memory over the run "
              "(start / middle / end, before the failover):", "",
              "| process | " + " | ".join(k for k in ("idle", "single", "batch", "half-single", "half-batch")
                                         if k in results) + " | RSS start / middle / end (peak) |",
              "|---|" + "---|" * (1 + sum(k in results for k in ("idle", "single", "batch", "half-single",
                                                                   "half-batch")))]
    for name in names:
        cells = []
        for k in ("idle", "single", "batch", "half-single", "half-batch"):
            if k in results:
                v = results[k]["cpu_percent"].get(name)
                peak = results[k].get("rss_peak_mib", {}).get(name)
                cells.append(("n/a" if v is None else "%.0f%%" % v) + ("" if peak is None else " · %.0f" % peak))
        rss = results["rss_mib"].get(name, {"start": None})
        rss_text = "—" if name == OTHER else "n/a" if rss["start"] is None else "%.0f / %.0f / %.0f (%.0f)" % (
            rss["start"], rss["middle"], rss["end"], rss["peak"])
        lines.append("| %s | %s | %s |" % (name, " | ".join(cells), rss_text))
    eff = []
    for key, label in (("single", "single-item"), ("batch", "batched")):
        r = results.get(key)
        if r:
            node_cpu = sum(v for n, v in r["cpu_percent"].items() if v is not None and n not in ("load", OTHER))
            if node_cpu > 0:
                eff.append("%s %s digests per node CPU-second (%.2f cores used by the nodes)"
                           % (label, format(round(r["items_per_s"] / (node_cpu / 100)), ","), node_cpu / 100))
    if eff:
        lines += ["", "Efficiency, independent of what else the machine runs: " + "; ".join(eff) + ". "
                  "`other processes` is the machine's busy time not used by this benchmark (from /proc/stat): "
                  "what it shares the cores with."]
    cons = results.get("consensus")
    if cons:
        changed = sorted(set(plan.get("consensus_set") or {}) | ({"batch_max_bytes"} if plan.get("batch_max_bytes")
                                                                  else set()))
        lines += ["", "Genesis consensus parameters: %s%s." % (
            ", ".join("%s %s" % (k, format(v, ",")) for k, v in cons.items()),
            "" if not changed else " (%s set by the command; the rest as `evledger cluster init` writes them)"
            % ", ".join(changed))]
    secs = plan["phases_s"]
    warmups = ", ".join("%s %.0f s" % (k, min(10.0, max(1.0, 0.2 * v))) for k, v in secs.items() if k != "idle")
    lines += ["", "Phases: idle %.0f s, closed loops %.0f s each, open loops at half load %.0f s each (warm-up "
              "excluded: %s), failover with 100 single deposits/s to the backups. Closed loops hold new requests "
              "while a node reports more than %s (single) / %s (batches) items admitted but not committed. "
              "Latency is polled (1 ms at idle, 5 ms under load, 10 ms in failover), so it includes up to one "
              "polling interval." % (secs["idle"], secs["single"], secs["half-single"], warmups,
                                     format(plan.get("window", 3000), ","),
                                     format(plan.get("batch_window", 20000), ","))]
    notes = results.get("notes")
    if notes:
        lines += [""] + notes
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else \
        "# Performance\n\nMeasured figures, each with its machine and command.\n\n"
    if MARK_START in text and MARK_END in text:
        before, rest = text.split(MARK_START, 1)
        after = rest.split(MARK_END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main(plan: Plan, output: str, as_json: bool, command: str, folder: str | None = None,
         notes: list[str] | None = None) -> int:
    from ledger.bench import machine

    base = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="evledger-bench-cluster-"))
    run = Run(plan, base / "consortium")
    failed = None
    try:
        run.start()
        run.run_phases()
    except (RuntimeError, OSError) as exc:
        failed = str(exc)
    finally:
        run.stop()
        broken = run.tracebacks() if (run.folder / "nodes").is_dir() else []
        if not folder:
            shutil.rmtree(base, ignore_errors=True)
    if failed:
        print("evledger bench cluster: %s" % failed, file=sys.stderr)
        return 3
    results = run.results
    if broken:
        results.setdefault("notes", []).append("Tracebacks in the logs of: %s." % ", ".join(broken))
    if notes:
        results.setdefault("notes", []).extend(notes)
    info = machine()
    if as_json:
        print(json.dumps({"machine": info, "command": command, "results": results}, indent=2))
    section = render(results, info, command)
    if output == "-":
        if not as_json:
            sys.stdout.write(section)
    else:
        write_section(Path(output), section)
        if not as_json:
            sys.stdout.write(section)
        _say("wrote %s" % output)
    return 0
