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
    answers ``committed`` for its code (asked with ``?wait_ms=``: the node answers
    when it appends the block).
``single``
    closed loop, ``--concurrency`` requests in flight spread over the validators,
    each ``POST /v1/deposits`` carrying one signed single-item deposit.
    Throughput = committed items/s counted by a validator (``/metrics``) after a
    warm-up.
``batch``
    the same with each request carrying one signed batch of ``--batch`` items.
``half-single`` / ``half-batch``
    open loop at half the throughput just measured; every 50 ms one request's
    first code is followed to commit (asked with ``?wait_ms=``) for p50/p99
    latency.
``failover``
    a steady stream of single deposits to the backups; the primary is killed with
    SIGKILL; *resume* = first commit of a deposit submitted after the kill, minus
    the time of the kill (both on ``CLOCK_MONOTONIC``, polled every 10 ms).

The load process signs everything for real (entries and HTTP requests, Ed25519).
To keep its own CPU small (it shares the machine with the nodes), it speaks
HTTP/1.1 itself over keep-alive connections (``runtime/bench_http.py``); single
deposits are built on the fly (one fresh digest each) and batches reuse a few
pre-built lists of 1,000 items under a fresh signature each (a fresh
``client_time``), so every batch has its own deposit codes; both are spliced
into canonical bytes from pre-encoded parts.

CPU and memory sampling live in ``runtime/bench_sampling.py``, the markdown
section in ``runtime/bench_report.py``.

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
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bench_load import latency_summary, percentile, run_load_process
from .bench_report import cpu_line, fmt_ms, fmt_s, render, write_section
from .bench_sampling import Sampler

__all__ = ["Plan", "Run", "main", "set_consensus", "latency_summary", "percentile"]

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
        _say("  p50 %s, p99 %s over %d deposits" % (fmt_ms(idle["latency"]["p50_ms"]), fmt_ms(idle["latency"]["p99_ms"]),
                                                     idle["latency"]["samples"]))

        for kind, conc in (("single", plan.concurrency), ("batch", plan.batch_concurrency)):
            items = 1 if kind == "single" else plan.batch
            _say("%s: closed loop, %d requests of %d item%s in flight, %.0f s (warm-up %.0f s)"
                 % (kind, conc, items, "" if items == 1 else "s", secs[kind], plan.warmup(secs[kind])))
            window = plan.window if kind == "single" else plan.batch_window
            load, m = self.measured({"phase": "closed", "kind": kind, "seconds": secs[kind], "concurrency": conc,
                                     "window": window}, secs[kind], plan.warmup(secs[kind]))
            res[kind] = {**m, "load": load}
            _say("  %.0f digests/s committed; node CPU %s" % (m["items_per_s"], cpu_line(m["cpu_percent"])))
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
                 % (m["items_per_s"], fmt_ms(lat["p50_ms"]), fmt_ms(lat["p99_ms"]), lat["samples"]))
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
             % (fmt_s(result["resume_s"]), fmt_s(result["view_change_seen_s"]), result["new_primary"]))

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
