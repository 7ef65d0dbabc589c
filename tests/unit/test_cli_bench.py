"""The CLI's parsing and exit codes, and the ledger benchmark's plumbing (not its speed)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

import cli
from ledger import bench

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_help_on_every_verb():
    for args in ([], ["bench"], ["bench", "ledger"]):
        result = run_cli(*args, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["bench"], ["bench", "ledger", "--deposits", "-5"],
                                  ["bench", "ledger", "--deposits", "many"]])
def test_bad_usage_exits_2_with_a_message(args):
    result = run_cli(*args)
    assert result.returncode == cli.EXIT_USAGE
    assert "error:" in result.stderr and "--help" in result.stderr


def fake_results():
    append = {"blocks": 1, "build_entries_per_s": 1.0, "append_entries_per_s": 2.0, "total_entries_per_s": 0.6,
              "append_ms_per_block": 3.0}
    return {"merkle_root_100k_ms": 1.0, "inclusion_proofs_per_s": 1.0, "inclusion_verifies_per_s": 1.0,
            "consistency_proofs_per_s": 1.0, "consistency_verifies_per_s": 1.0, "append_1000": append,
            "append_10000": append, "lookup_store_deposits": 1000, "lookups_per_s": 5.0,
            "missing_lookups_per_s": 6.0, "bytes_per_single_deposit": 400.0, "bytes_per_batched_deposit": 100.0,
            "fill_seconds": 1.0, "ed25519_sign_us": 40.0, "ed25519_verify_us": 90.0, "ed25519_body_bytes": 120}


def test_the_section_is_replaced_in_place(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nintro\n\n## Other section\n\nkeep me\n")
    info = bench.machine()
    bench.write_section(doc, bench.render(fake_results(), info, "evledger bench ledger"))
    first = doc.read_text()
    assert "keep me" in first and first.count(bench.MARK_START) == 1
    bench.write_section(doc, bench.render(fake_results(), info, "evledger bench ledger --deposits 5"))
    second = doc.read_text()
    assert second.count(bench.MARK_START) == 1 and "--deposits 5" in second and "keep me" in second
    assert "cores" in second and info["python"] in second


def test_crypto_benchmark_times_real_signatures():
    results: dict = {}
    bench.bench_crypto(results, rounds=20)
    assert all(math.isfinite(results[k]) and results[k] > 0 for k in ("ed25519_sign_us", "ed25519_verify_us"))
    assert results["ed25519_body_bytes"] > 32
    assert "sign / verify" in bench.render({**fake_results(), **results}, bench.machine(), "evledger bench ledger")


def test_lookup_benchmark_finds_every_stored_code(tmp_path):
    results: dict = {}
    bench.bench_lookup(results, tmp_path, deposits=2000)
    assert results["lookup_store_deposits"] == 2000
    assert results["lookups_per_s"] > 0 and results["bytes_per_batched_deposit"] > 32
