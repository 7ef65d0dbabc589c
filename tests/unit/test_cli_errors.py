"""Bad input to the user verbs ends in one clear line on standard error and exit 2, never a traceback.

CONTRACT section 4: 0 success or match; 1 verified and NOT matching / NOT valid; 2 bad
usage or bad input; 3 node unreachable or failing.  Exit 1 is never an error.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import cli
from ledger.crypto import SecretKey, write_key_file
from runtime import verbs

ROOT = Path(__file__).resolve().parents[2]
CODE = "EV-WNBP2-FZTMH-2N1TE-T79FT-Q1XWA"  # a well-formed code (tests/unit/test_codes.py)
GENESIS = ROOT / "config" / "genesis.example.json"


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def main(capsys, *args) -> tuple[int, str, str]:
    """``cli.main`` in this process: (exit code, stdout, stderr); argparse's exits included."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def evidence(tmp_path) -> Path:
    path = tmp_path / "evidence.txt"
    path.write_text("evidence\n")
    return path


@pytest.fixture
def key(tmp_path) -> Path:
    path = tmp_path / "shop.key"
    write_key_file(path, "ecommerce", SecretKey.generate())
    return path


class StubClient:
    """Stands in for ``EvledgerClient`` where a test needs an answer but not a node."""

    def __init__(self, base_url, key_file=None, timeout=10.0):
        self.base_url = base_url

    def receipt(self, code):
        return {"format": "evledger-receipt/1", "code": str(code)}

    def case_deposits(self, case):
        return {"case": case, "deposits": [], "access_record": "ab" * 32}

    def close(self):
        pass


# --------------------------------------------------------------------------- --node must be a URL


@pytest.mark.parametrize("args", [
    ["verify", CODE, "--node", "127.0.0.1:7401"],
    ["status", "--node", "notaurl"],
    ["deposit", "FILE", "--node", "notaurl", "--key", "KEY"],
    ["receipt", CODE, "--node", "ftp://x", "-o", "r.json"],
])
def test_the_reviewed_reproductions_exit_2_without_a_traceback(args, evidence, key):
    args = [{"FILE": evidence, "KEY": key}.get(a, a) for a in args]
    result = run_cli(*args)
    assert result.returncode == cli.EXIT_USAGE, result.stderr
    assert "Traceback" not in result.stderr
    assert "argument --node" in result.stderr and "http://127.0.0.1:7401" in result.stderr


@pytest.mark.parametrize("url, message", [
    ("127.0.0.1:7401", "is not a URL (no http://)"),
    ("notaurl", "is not a URL (no http://)"),
    ("ftp://x", "the scheme must be http or https, not 'ftp'"),
    ("http://x:abc", "is not a valid URL"),
    ("http://x:99999", "is not a valid URL"),
    ("http://[::1", "is not a valid URL"),
    ("http://:7401", "names no host"),
    ("http://x:7401/?a=1", "?query or #fragment"),
])
@pytest.mark.parametrize("verb", [["status"], ["verify", CODE], ["receipt", CODE, "-o", "-"],
                                  ["query", "--case", "c1", "--key", "k"], ["deposit", "--digest", "00", "--key", "k"]])
def test_a_bad_node_url_is_bad_usage(capsys, verb, url, message):
    code, out, err = main(capsys, *verb, "--node", url)
    assert code == cli.EXIT_USAGE
    assert out == ""
    assert "argument --node: %r" % url in err and message in err


@pytest.mark.parametrize("url", ["http://127.0.0.1:7401", "https://node.example:443/evledger", "http://[::1]:7401"])
def test_good_node_urls_pass(url):
    assert cli.build_parser().parse_args(["status", "--node", url]).node == url


def test_an_empty_case_is_bad_usage(capsys, key):
    code, _, err = main(capsys, "query", "--case", "", "--node", "http://127.0.0.1:7401", "--key", key)
    assert code == cli.EXIT_USAGE
    assert "argument --case: must not be empty" in err


def test_an_unreachable_node_is_still_exit_3(capsys):
    code, _, err = main(capsys, "status", "--node", "http://127.0.0.1:1", "--timeout", "5")
    assert code == cli.EXIT_UNAVAILABLE
    assert "node unreachable" in err


# --------------------------------------------------------------------------- local files


def test_receipt_into_a_missing_folder_names_the_file(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(verbs, "EvledgerClient", StubClient)
    target = tmp_path / "missing" / "r.json"
    code, _, err = main(capsys, "receipt", CODE, "--node", "http://127.0.0.1:7401", "-o", target)
    assert code == cli.EXIT_USAGE
    assert err.strip() == "evledger: cannot write %s: No such file or directory" % target


def test_receipt_onto_a_folder_names_the_file(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(verbs, "EvledgerClient", StubClient)
    code, _, err = main(capsys, "receipt", CODE, "--node", "http://127.0.0.1:7401", "-o", tmp_path)
    assert code == cli.EXIT_USAGE
    assert err.strip() == "evledger: cannot write %s: Is a directory" % tmp_path


def test_receipt_written(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(verbs, "EvledgerClient", StubClient)
    code, _, err = main(capsys, "receipt", CODE, "--node", "http://127.0.0.1:7401", "-o", tmp_path / "r.json")
    assert code == cli.EXIT_OK
    assert '"evledger-receipt/1"' in (tmp_path / "r.json").read_text() and "wrote" in err


def test_a_case_report_that_cannot_be_written_names_the_file(capsys, monkeypatch, tmp_path, key):
    monkeypatch.setattr(verbs, "EvledgerClient", StubClient)
    target = tmp_path / "missing" / "report.html"
    code, _, err = main(capsys, "query", "--case", "c1", "--node", "http://127.0.0.1:7401", "--key", key,
                        "--genesis", GENESIS, "--report", target)
    assert code == cli.EXIT_USAGE
    assert "cannot write %s: No such file or directory" % target in err


def unreadable(path, chunk=0):
    raise PermissionError(13, "Permission denied", str(path))


@pytest.mark.parametrize("verb", [["deposit", "FILE", "--node", "http://127.0.0.1:1", "--key", "KEY"],
                                  ["verify", CODE, "FILE", "--node", "http://127.0.0.1:1"],
                                  ["verify-receipt", "RECEIPT", "--genesis", GENESIS, "--file", "FILE"]])
def test_a_file_that_cannot_be_read_is_bad_input(capsys, monkeypatch, tmp_path, evidence, key, verb):
    monkeypatch.setattr(verbs, "hash_file", unreadable)  # as root, chmod 000 would not stop the read
    receipt = tmp_path / "receipt.json"
    receipt.write_text("{}")
    args = [{"FILE": evidence, "KEY": key, "RECEIPT": receipt}.get(a, a) for a in verb]
    code, out, err = main(capsys, *args)
    assert code == cli.EXIT_USAGE
    assert err.strip() == "evledger: cannot read %s: Permission denied" % evidence


@pytest.mark.parametrize("verb", [["deposit", "FILE", "--node", "http://127.0.0.1:1", "--key", "KEY"],
                                  ["verify", CODE, "FILE", "--node", "http://127.0.0.1:1"]])
def test_a_folder_is_not_a_file(capsys, tmp_path, key, verb):
    args = [{"FILE": tmp_path, "KEY": key}.get(a, a) for a in verb]
    code, _, err = main(capsys, *args)
    assert code == cli.EXIT_USAGE
    assert err.strip() == "evledger: %s is not a readable file" % tmp_path


def test_a_key_file_that_cannot_be_read_is_bad_input(capsys, monkeypatch, evidence, key):
    monkeypatch.setattr(verbs, "load_key_file", unreadable)
    code, _, err = main(capsys, "deposit", evidence, "--node", "http://127.0.0.1:1", "--key", key)
    assert code == cli.EXIT_USAGE
    assert err.strip() == "evledger: cannot read key file %s: Permission denied" % key


def test_api_errors_map_to_the_contracts_exit_codes():
    from runtime import verbs
    from services.client import ApiError

    assert verbs.api_exit(ApiError(400, "malformed_code", "x")) == 2
    assert verbs.api_exit(ApiError(403, "not_permitted", "x")) == 2
    for status, code in ((408, "request_timeout"), (429, "rate_limited"), (503, "busy"), (200, "bad_response")):
        assert verbs.api_exit(ApiError(status, code, "x")) == 3, status
