"""Plumbing of ``evledger bench cluster``: arguments, plan, report rendering, markers.

No timed assertions: speed is measured by the benchmark itself, never asserted.
"""

from __future__ import annotations

import os

import pytest

from cli import build_parser
from runtime import bench_cluster as bc
from runtime import bench_report as br
from runtime import bench_sampling as bs

MACHINE = {"cpu": "Test CPU", "cores": 2, "memory": "4 GiB", "python": "3.11.7", "plyvel": "1.5.1",
           "system": "Linux-test", "date": "2026-11-28"}


def _results() -> dict:
    cpu = {"court-node": 50.0, "notary-node": 40.0, "carrier-node": None, "bank-node": 45.5, "load": 10.0}
    lat = {"samples": 20, "p50_ms": 12.5, "p99_ms": 80.25, "max_ms": 90.0}
    return {
        "plan": {"duration_s": 60.0, "validators": 4, "concurrency": 64, "batch_concurrency": 8, "batch_items": 1000,
                 "phases_s": bc.Plan(60).seconds()},
        "idle": {"latency": lat, "cpu_percent": cpu},
        "single": {"items_per_s": 1234.4, "cpu_percent": cpu, "window_s": 12.0, "items": 14812, "load": {}},
        "batch": {"items_per_s": 23456.7, "cpu_percent": cpu, "window_s": 12.0, "items": 281480, "load": {},
                  "rss_peak_mib": {"court-node": 187.4}},
        "half-single": {"items_per_s": 600.0, "cpu_percent": cpu, "latency": lat, "rate_requests_per_s": 617.2},
        "half-batch": {"items_per_s": 11000.0, "cpu_percent": cpu, "latency": {"samples": 0, "p50_ms": None,
                                                                                 "p99_ms": None, "max_ms": None}},
        "rss_mib": {name: {"start": 50.0, "middle": 80.0, "end": 81.0, "peak": 90.0} for name in cpu},
        "failover": {"resume_s": 2.345, "view_change_seen_s": 2.1, "new_primary": "carrier-node", "killed": "bank-node"},
    }


def test_cli_parses_the_cluster_target():
    args = build_parser().parse_args(["bench", "cluster", "--duration", "600", "--concurrency", "32", "--batch", "500",
                                      "--batch-concurrency", "4", "--no-failover", "--json", "--output", "-"])
    assert args.target == "cluster"
    assert (args.duration, args.concurrency, args.batch, args.batch_concurrency) == (600.0, 32, 500, 4)
    assert args.no_failover and args.json and args.output == "-"
    defaults = build_parser().parse_args(["bench", "cluster"])
    assert defaults.duration == 60.0 and defaults.validators == 4 and not defaults.no_failover
    assert defaults.output == "docs/performance.md"


@pytest.mark.parametrize("bad", ["0", "-5", "abc", "100000"])
def test_cli_refuses_bad_durations(bad, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "cluster", "--duration", bad])


def test_plan_shares_the_duration_between_phases():
    short, long = bc.Plan(60).seconds(), bc.Plan(600).seconds()
    assert set(short) == {"idle", "single", "batch", "half-single", "half-batch"}
    assert all(v > 0 for v in short.values())
    assert long["single"] == 10 * short["single"]
    assert sum(long.values()) <= 600
    assert bc.Plan().warmup(15) == 3.0 and bc.Plan().warmup(600) == 10.0


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert bc.percentile(values, 0.5) == 50.0
    assert bc.percentile(values, 0.99) == 99.0
    assert bc.percentile([], 0.5) is None
    assert bc.latency_summary([0.001, 0.002])["p50_ms"] == pytest.approx(1.0)


def test_render_names_machine_command_figures_and_targets():
    text = br.render(_results(), MACHINE, "evledger bench cluster --duration 60")
    assert text.startswith(br.MARK_START) and text.rstrip().endswith(br.MARK_END)
    assert "`evledger bench cluster --duration 60`" in text
    assert "Test CPU, 2 cores" in text
    assert "1,234 digests/s" in text and "23,457 digests/s" in text
    assert "12.5 ms / 80.2 ms" in text or "12.5 ms / 80.3 ms" in text
    assert "2.35 s" in text and "1,500 / 3,000" in text and "20,000 / 50,000" in text
    assert "| carrier-node |" in text and "n/a" in text  # a process whose CPU could not be read
    assert "50 / 80 / 81 (90)" in text
    assert "| court-node | 50% | 50% | 50% · 187 |" in text  # the batch phase's peak RSS beside its CPU


def test_rss_peaks_are_taken_within_the_window():
    sampler = bs.Sampler({"a": 1})
    sampler.samples = [(1.0, {"a": (0.0, 100 * 2**20)}), (2.0, {"a": (0.0, 300 * 2**20)}),
                       (3.0, {"a": (0.0, 150 * 2**20), bs.MACHINE: ((1, 2), None)})]
    assert sampler.rss_peaks(2.5, 3.5) == {"a": 150.0}
    assert sampler.rss_peaks(0.0, 9.0) == {"a": 300.0}


def test_render_shows_the_anonymous_peak_when_sampled():
    results = _results()
    results["rss_mib"]["court-node"]["anon_peak"] = 61.4
    text = br.render(results, MACHINE, "evledger bench cluster")
    assert "(90; 61) |" in text
    assert "anonymous peak" in text


def test_render_without_optional_phases():
    results = _results()
    for key in ("failover", "half-single", "half-batch"):
        del results[key]
    text = br.render(results, MACHINE, "evledger bench cluster --no-failover")
    assert "SIGKILL" not in text.split("| what |")[1].split("CPU per process")[0]


def test_write_section_replaces_only_its_markers(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n<!-- bench:ledger:start -->\nledger\n<!-- bench:ledger:end -->\n")
    br.write_section(doc, br.MARK_START + "\nfirst\n" + br.MARK_END + "\n")
    br.write_section(doc, br.MARK_START + "\nsecond\n" + br.MARK_END + "\n")
    text = doc.read_text()
    assert "ledger\n<!-- bench:ledger:end -->" in text
    assert "second" in text and "first" not in text
    assert text.count(br.MARK_START) == 1


def test_proc_sampling_reads_this_process():
    assert bs.proc_cpu_seconds(os.getpid()) >= 0
    assert bs.proc_rss_bytes(os.getpid()) > 1_000_000
    sampler = bs.Sampler({"me": os.getpid()})
    a = sampler.take()
    sum(i * i for i in range(100_000))
    b = sampler.take()
    assert sampler.cpu_percent(a, b)["me"] is not None
    points = sampler.rss_points(["me"])["me"]
    assert points["start"] > 0 and points["peak"] >= points["end"]
    assert 0 < points["anon_peak"] <= points["peak"]
    rss, anon = bs.proc_memory(os.getpid())
    assert 0 < anon < rss
    assert bs.proc_cpu_seconds(2**22 + 12345) is None


def test_tune_configs_sets_rate_and_replay_capacity(tmp_path):
    from runtime import cluster

    folder = tmp_path / "c"
    cluster.init(folder, base_port=cluster.free_base_port())
    bc._tune_configs(folder)
    for config in (folder / "nodes").glob("*/node.toml"):
        text = config.read_text()
        assert "\npublic_rate_per_s = %d" % bc.PUBLIC_RATE in text
        assert "\nreplay_capacity = %d" % bc.REPLAY_CAPACITY in text
    from runtime.config import load_node

    setup = load_node(next((folder / "nodes").glob("*/node.toml")))
    assert setup.config.api.public_rate_per_s == bc.PUBLIC_RATE


def test_set_consensus_rewrites_a_valid_genesis(tmp_path):
    from ledger.genesis import load_genesis
    from ledger.errors import GenesisError
    from runtime import cluster

    folder = tmp_path / "c"
    cluster.init(folder, base_port=cluster.free_base_port())
    written = bc.set_consensus(folder, batch_max_bytes=262_144)
    assert written["batch_max_bytes"] == 262_144
    assert load_genesis(folder / "genesis.json").consensus.batch_max_bytes == 262_144
    with pytest.raises(GenesisError):
        bc.set_consensus(folder, batch_max_bytes=1)


def test_render_shows_other_load_efficiency_and_consensus():
    results = _results()
    results["single"]["cpu_percent"] = {"court-node": 50.0, "notary-node": 50.0, "load": 20.0, bs.OTHER: 70.0}
    results["consensus"] = {"batch_max_entries": 2000, "batch_max_bytes": 262144, "batch_delay_ms": 10,
                            "view_change_timeout_ms": 2000}
    text = br.render(results, MACHINE, "evledger bench cluster")
    assert "| other processes |" in text
    assert "1,234 digests per node CPU-second (1.00 cores used by the nodes)" in text
    assert "batch_max_bytes 262,144" in text


def test_machine_cpu_is_read():
    busy, total = bs.machine_cpu_seconds()
    assert 0 <= busy <= total


def test_cli_takes_consensus_overrides():
    args = build_parser().parse_args(["bench", "cluster", "--batch-max-bytes", "131072", "--consensus",
                                      "checkpoint_interval=16", "--consensus", "watermark_window=32"])
    assert args.batch_max_bytes == 131072
    assert args.consensus == [("checkpoint_interval", 16), ("watermark_window", 32)]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "cluster", "--consensus", "checkpoint_interval"])


def test_failover_kills_the_primary_most_nodes_name(tmp_path):
    # The 10-minute run once killed the primary of a view only one replica was asking
    # for: that was a second fault, not a failover.
    run = bc.Run(bc.Plan(60), tmp_path)
    run.apis = ["http://a", "http://b", "http://c", "http://d"]
    answers = {"http://a": "bank-node", "http://b": "notary-node", "http://c": "notary-node", "http://d": OSError}

    def status(api):
        if answers[api] is OSError:
            raise OSError("connection refused")
        return {"primary": answers[api]}

    run.status = status
    assert run.current_primary() == "notary-node"
    answers.update({api: OSError for api in answers})
    with pytest.raises(RuntimeError, match="no node answers"):
        run.current_primary()
