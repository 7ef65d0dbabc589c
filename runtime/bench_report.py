"""The markdown section ``evledger bench cluster`` writes into ``docs/performance.md``."""

from __future__ import annotations

from pathlib import Path

from .bench_sampling import OTHER

MARK_START, MARK_END = "<!-- bench:cluster:start -->", "<!-- bench:cluster:end -->"


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else "%.1f ms" % value


def fmt_s(value: float | None) -> str:
    return "n/a" if value is None else "%.2f s" % value


def cpu_line(cpu: dict[str, float | None]) -> str:
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
                     "%s / %s" % (fmt_ms(idle["p50_ms"]), fmt_ms(idle["p99_ms"])), "p50 ≤ 10 ms, p99 ≤ 25 ms"))
    for kind, label in (("single", "single-item deposits"), ("batch", "batches")):
        r = results.get("half-" + kind)
        if r:
            lat = r["latency"]
            rows.append(("commit latency at half the maximum, %s (%.0f digests/s; p50 / p99, %d samples)"
                         % (label, r["items_per_s"], lat["samples"]),
                         "%s / %s" % (fmt_ms(lat["p50_ms"]), fmt_ms(lat["p99_ms"])), "p50 ≤ 50 ms, p99 ≤ 250 ms"))
    fo = results.get("failover")
    if fo:
        rows.append(("primary killed (SIGKILL) → first commit of a deposit submitted after the kill",
                     "%s (view change seen after %s)" % (fmt_s(fo["resume_s"]), fmt_s(fo["view_change_seen_s"])),
                     "< 3 s / 1.5 s"))
    lines += ["| %s | %s | %s |" % row for row in rows]

    names = [n for n in results.get("rss_mib", {})] + [OTHER]
    lines += ["", "CPU per process (% of one core) during each phase — with the highest resident memory "
              "(MiB) sampled in the phase's measured window — and resident memory over the run "
              "(start / middle / end, before the failover; the peak, and the peak of its anonymous part: "
              "what the process allocated, without the libraries and LevelDB table files it maps):", "",
              "| process | " + " | ".join(k for k in ("idle", "single", "batch", "half-single", "half-batch")
                                         if k in results) + " | RSS start / middle / end (peak; anonymous peak) |",
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
        rss_text = "—" if name == OTHER else "n/a" if rss["start"] is None else "%.0f / %.0f / %.0f (%.0f%s)" % (
            rss["start"], rss["middle"], rss["end"], rss["peak"],
            "" if rss.get("anon_peak") is None else "; %.0f" % rss["anon_peak"])
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
              "Latency is asked of the node the deposit was sent to with `GET /v1/deposits/{code}?wait_ms=`, "
              "which that node answers as soon as it has appended the block (at idle for every "
              "deposit, under load for each sampled deposit on its own), so a figure is high by at most one "
              "request; in failover the oldest outstanding deposit is polled every 10 ms." % (secs["idle"], secs["single"], secs["half-single"], warmups,
                                     format(plan.get("window", 3000), ","),
                                     format(plan.get("batch_window", 20000), ","))]
    notes = results.get("notes")
    if notes:
        lines += [""] + notes
    lines.append(MARK_END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """The cluster section of ``path`` (docs/performance.md), the way ``evledger bench ledger`` writes its own."""
    from ledger.bench import write_section as write_between

    write_between(path, section, (MARK_START, MARK_END))
