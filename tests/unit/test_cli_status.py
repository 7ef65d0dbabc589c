"""``evledger status``: height, view, primary, members and health (CONTRACT section 4), against a fake node."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import cli
from ledger.genesis import load_genesis
from runtime import verbs

GENESIS_PATH = Path(__file__).resolve().parents[2] / "config" / "genesis.example.json"
GENESIS = load_genesis(GENESIS_PATH)  # validators court-node, notary-node, carrier-node, bank-node; quorum 3
OLD_KEYS = ("node", "role", "chain_id", "height", "view", "primary", "last_block_hash", "history_size", "pending",
            "peers_connected", "version", "genesis_fingerprint")


def status_doc(**changes) -> dict:
    doc = {"node": "court-node", "role": "validator", "chain_id": GENESIS.chain_id, "height": 7, "view": 0,
           "primary": "court-node", "last_block_hash": "ab" * 32, "history_size": 8, "pending": 0,
           "peers_connected": ["bank-node", "carrier-node", "notary-node", "observer-node"], "version": "0.1.0",
           "genesis_fingerprint": GENESIS.fingerprint()}
    doc.update(changes)
    return doc


class FakeNode:
    """``GET /v1/status`` (each answer taken from ``statuses``, the last one repeated) and ``/v1/genesis.json``."""

    def __init__(self):
        self.statuses = [status_doc()]
        self.genesis = (200, GENESIS_PATH.read_text(encoding="utf-8"))
        self.status_calls = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path == "/v1/status":
                    fake.status_calls += 1
                    doc = fake.statuses[min(fake.status_calls, len(fake.statuses)) - 1]
                    self.answer(200, json.dumps(doc))
                elif self.path == "/v1/genesis.json":
                    self.answer(*fake.genesis)
                else:
                    self.answer(404, json.dumps({"error": {"code": "not_found", "message": self.path}}))

            def answer(self, status, text):
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]


@pytest.fixture
def node():
    fake = FakeNode()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(10)


def status(capsys, node, *extra) -> tuple[int, str, str]:
    code = cli.main(["status", "--node", node.url, "--timeout", "5", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_healthy_node_shows_height_view_primary_members_and_health(capsys, node):
    code, out, err = status(capsys, node)
    assert code == cli.EXIT_OK, err
    lines = out.splitlines()
    for key, value in (("height", "7"), ("view", "0"), ("primary", "court-node"), ("pending", "0")):
        assert "%-20s %s" % (key, value) in lines
    assert "members (%d):" % len(GENESIS.members) in lines
    assert any(line.split()[:2] == ["notary-node", "validator"] and "http://" in line for line in lines)
    assert "  %-18s %s" % ("court", "court,credit-source") in lines
    assert lines[-1] == "%-20s %s" % ("health", "healthy")


def test_json_keeps_every_status_key_and_adds_members_and_health(capsys, node):
    code, out, _ = status(capsys, node, "--json")
    assert code == cli.EXIT_OK
    doc = json.loads(out)
    assert {k: doc[k] for k in OLD_KEYS} == status_doc()
    assert doc["health"] == {"state": "healthy", "reasons": []}
    assert [m["name"] for m in doc["members"]] == [m.name for m in GENESIS.members]
    court = next(m for m in doc["members"] if m["name"] == "court")
    assert court == {"name": "court", "roles": ["court", "credit-source"], "api": None}


def test_a_node_cut_off_from_the_primary_and_a_quorum_is_degraded(capsys, node):
    node.statuses = [status_doc(node="bank-node", primary="notary-node", peers_connected=["carrier-node"])]
    code, out, _ = status(capsys, node)
    assert code == cli.EXIT_OK  # the node answered: health is reported, not an error
    assert out.splitlines()[-1] == "%-20s %s" % ("health", "degraded: not connected to the primary notary-node; "
                                                 "not connected to validator court-node; reaches 2 of 4 validators "
                                                 "(itself included), below the quorum of 3: it cannot help commit")


def test_pending_items_without_a_new_block_are_degraded(capsys, node, monkeypatch):
    monkeypatch.setattr(verbs, "PROGRESS_WINDOW_S", 0.3)
    node.statuses = [status_doc(pending=5)]
    code, out, _ = status(capsys, node, "--json")
    assert code == cli.EXIT_OK
    assert json.loads(out)["health"] == {"state": "degraded",
                                         "reasons": ["5 item(s) pending and no block committed in 0.3 s"]}
    assert node.status_calls >= 2


def test_pending_items_with_a_new_block_are_healthy(capsys, node, monkeypatch):
    monkeypatch.setattr(verbs, "PROGRESS_WINDOW_S", 5.0)
    node.statuses = [status_doc(pending=5), status_doc(pending=3), status_doc(pending=3, height=8)]
    code, out, _ = status(capsys, node, "--json")
    assert json.loads(out)["health"]["state"] == "healthy"
    assert json.loads(out)["height"] == 7  # the first answer is the one shown
    assert node.status_calls == 3


def test_a_node_that_cannot_serve_its_genesis_is_failing(capsys, node):
    node.genesis = (500, json.dumps({"error": {"code": "internal", "message": "boom"}}))
    code, out, err = status(capsys, node)
    assert code == cli.EXIT_UNAVAILABLE and out == ""
    assert "internal" in err


def test_an_invalid_genesis_is_failing(capsys, node):
    node.genesis = (200, json.dumps({"format": "evledger-genesis/1"}))
    code, out, err = status(capsys, node)
    assert code == cli.EXIT_UNAVAILABLE and out == ""
    assert err.startswith("evledger: the node's genesis is not valid:")


# --------------------------------------------------------------------------- the rule itself


def health(**changes) -> dict:
    return verbs.node_health(status_doc(**changes), GENESIS)


def test_connected_to_every_other_validator_is_healthy():
    assert health(peers_connected=["bank-node", "carrier-node", "notary-node"]) == {"state": "healthy",
                                                                                   "reasons": []}
    assert health(view=3, primary="bank-node")["state"] == "healthy"  # a past view change is not a fault


def test_one_validator_missing_still_reaches_a_quorum():
    assert health(peers_connected=["carrier-node", "notary-node"])["reasons"] == [
        "not connected to validator bank-node"]


def test_an_observer_needs_the_validators():
    assert health(node="observer-node", role="observer", peers_connected=[])["reasons"] == [
        "not connected to the primary court-node",
        "not connected to validators bank-node, carrier-node, notary-node",
        "connected to no validator: it cannot follow the chain"]
    assert health(node="observer-node", role="observer",
                  peers_connected=["bank-node", "carrier-node", "court-node", "notary-node"])["state"] == "healthy"


def test_inconsistent_status_is_degraded():
    assert health(chain_id="other")["reasons"] == [
        "its status names another chain or genesis than the genesis it serves"]
    assert health(genesis_fingerprint="00" * 32)["state"] == "degraded"
    assert health(primary="ecommerce")["reasons"] == ["its primary 'ecommerce' is not a validator"]
    doc = status_doc()
    del doc["peers_connected"]
    assert verbs.node_health(doc, GENESIS)["reasons"] == ["it does not report its connected peers"]
